// The `out` and `in` rules of a bridge: which topics cross it and under what name (docs/bridge.md#topic-rules).
// A rule maps a filter to another filter with the same wildcards in the same order: the levels a wildcard matched
// on one side fill the same wildcard on the other, so `telemetry/#` → `sites/7/telemetry/#` keeps what follows.
import { isValidFilter } from '../security/topic-filter.js'

export interface TopicRuleConfig {
  readonly from: string
  readonly to: string
  /** QoS of the messages on the far side of the rule. Default 1. */
  readonly qos?: 0 | 1
}

export interface TopicRule {
  readonly from: string
  readonly to: string
  readonly qos: 0 | 1
  /** `from` split into levels. */
  readonly fromLevels: readonly string[]
  /** `to` split into levels. */
  readonly toLevels: readonly string[]
}

/** The wildcards of a filter, in order: `+` and `#`. */
function wildcardsOf (levels: readonly string[]): string {
  return levels.filter(level => level === '+' || level === '#').join('')
}

/** Validates one rule; throws an Error naming `where` for a malformed one. */
export function parseTopicRule (rule: TopicRuleConfig, where: string): TopicRule {
  const { from, to } = rule
  for (const [key, value] of [['from', from], ['to', to]] as const) {
    if (typeof value !== 'string' || value === '' || !isValidFilter(value)) throw new Error(`${where}.${key} must be a topic filter, got ${JSON.stringify(value)}`)
    if (value.startsWith('$')) throw new Error(`${where}.${key}: topics starting with $ are the brokers' own and are not bridged`)
  }
  const fromLevels = from.split('/')
  const toLevels = to.split('/')
  if (wildcardsOf(fromLevels) !== wildcardsOf(toLevels)) {
    throw new Error(`${where}: "from" and "to" must have the same wildcards in the same order (${from} → ${to})`)
  }
  return Object.freeze({ from, to, qos: rule.qos ?? 1, fromLevels, toLevels })
}

/**
 * `topic` renamed by `rule`, or undefined when the rule does not match it. A `#` that matched nothing (`a/#` matches
 * `a`) stands for no level on the other side either.
 */
export function rewriteTopic (rule: TopicRule, topic: string): string | undefined {
  const levels = topic.split('/')
  const captured: string[][] = []
  const from = rule.fromLevels
  // MQTT: a filter starting with a wildcard does not match a topic starting with $
  if ((from[0] === '#' || from[0] === '+') && topic.startsWith('$')) return undefined
  let i = 0
  for (; i < from.length; i++) {
    const level = from[i]
    if (level === '#') {
      captured.push(levels.slice(i))
      i = levels.length
      break
    }
    if (i >= levels.length) return undefined
    if (level === '+') captured.push([levels[i] as string])
    else if (level !== levels[i]) return undefined
  }
  if (i < levels.length) return undefined
  const out: string[] = []
  let next = 0
  for (const level of rule.toLevels) {
    if (level === '+' || level === '#') out.push(...captured[next++] as string[])
    else out.push(level)
  }
  const renamed = out.join('/')
  // `a/#` → `#` on the topic `a` names no topic at all
  return renamed === '' ? undefined : renamed
}

/** The first rule of `rules` that matches `topic`, with the topic it gives, or undefined. */
export function firstMatch (rules: readonly TopicRule[], topic: string): { rule: TopicRule, topic: string } | undefined {
  for (const rule of rules) {
    const renamed = rewriteTopic(rule, topic)
    if (renamed !== undefined) return { rule, topic: renamed }
  }
  return undefined
}
