import { configError } from '../errors.js'
import { isValidName, type FunctionAddress } from '../protocol/names.js'
import { filterContains, filterMatches, isValidFilter, levelsOf, type Levels } from './topic-filter.js'
import { GATEWAY_IDENTITY } from './identity.js'

/**
 * The `policy` of the configuration: which identity may do what. A list of rules; each names the identities it
 * applies to and what it allows and denies them:
 *
 *   { "identity": "sensor-*", "allow": { "publish": ["sensors/{identity}/#"], "invoke": ["Analytics/*"] },
 *     "deny": { "invoke": ["Analytics/admin"] } }
 *
 * Once a policy exists, everything not allowed is denied, and a deny of any rule that applies wins over every
 * allow. Without a policy everything is allowed (the gateway then trusts whoever can connect).
 */
export type Action = 'publish' | 'subscribe' | 'invoke' | 'serve' | 'manage'
export const ACTIONS: readonly Action[] = ['publish', 'subscribe', 'invoke', 'serve', 'manage']
const TOPIC_ACTIONS: ReadonlySet<Action> = new Set(['publish', 'subscribe'])

export type Grants = { readonly [A in Action]?: readonly string[] }

export interface PolicyRule {
  /** An identity name, or a pattern where `*` stands for any characters (`sensor-*`, `*`). */
  readonly identity: string
  readonly allow?: Grants
  readonly deny?: Grants
}

/** The identity an anonymous connection acts as: name it in a rule to give anonymous clients rights. */
export const ANONYMOUS_IDENTITY = '$anonymous'

/** In a topic grant, a level that stands for the identity's own name. */
export const IDENTITY_PLACEHOLDER = '{identity}'

/** A decision's subject: a topic (publish, receive), a topic filter (subscribe), or a function (invoke, serve, manage). */
interface CompiledGrants {
  readonly topics: { readonly [A in 'publish' | 'subscribe']: readonly Levels[] }
  readonly functions: { readonly [A in 'invoke' | 'serve' | 'manage']: readonly FunctionPattern[] }
}

interface FunctionPattern {
  /** undefined: any service (`*`). */
  readonly service: string | undefined
  readonly function: string | undefined
}

interface Rights { readonly allow: CompiledGrants, readonly deny: CompiledGrants }

interface CompiledRule {
  readonly matchesIdentity: (identity: string) => boolean
  readonly allow: Grants
  readonly deny: Grants
}

/** Identities whose rights are kept compiled; beyond it the cache starts over (identities are few in practice). */
const RIGHTS_CACHE_SIZE = 10_000

export class Policy {
  readonly rules: readonly PolicyRule[]
  readonly #compiled: readonly CompiledRule[]
  readonly #rights = new Map<string, Rights>()

  /** `rules` as `parsePolicy` returns them: validated. */
  constructor (rules: readonly PolicyRule[]) {
    this.rules = rules
    this.#compiled = rules.map(rule => ({
      matchesIdentity: identityMatcher(rule.identity),
      allow: rule.allow ?? {},
      deny: rule.deny ?? {},
    }))
  }

  /** The name decisions use for a connection: its identity, or `$anonymous`. */
  static subjectOf (identity: string | undefined): string {
    return identity ?? ANONYMOUS_IDENTITY
  }

  mayPublish (identity: string, topic: string): boolean {
    if (identity === GATEWAY_IDENTITY) return true
    const rights = this.#rightsOf(identity)
    const levels = levelsOf(topic)
    return rights.allow.topics.publish.some(grant => filterMatches(grant, levels)) &&
      !rights.deny.topics.publish.some(grant => filterMatches(grant, levels))
  }

  /** A subscription is granted when an allowed filter contains it and no denied filter does (partly denied ones are filtered on delivery). */
  maySubscribe (identity: string, filter: string): boolean {
    if (identity === GATEWAY_IDENTITY) return true
    const rights = this.#rightsOf(identity)
    const levels = levelsOf(filter)
    return rights.allow.topics.subscribe.some(grant => filterContains(grant, levels)) &&
      !rights.deny.topics.subscribe.some(grant => filterContains(grant, levels))
  }

  /** May a message on `topic` be delivered to the identity (live, retained, or queued for its session)? */
  mayReceive (identity: string, topic: string): boolean {
    if (identity === GATEWAY_IDENTITY) return true
    const rights = this.#rightsOf(identity)
    const levels = levelsOf(topic)
    return rights.allow.topics.subscribe.some(grant => filterMatches(grant, levels)) &&
      !rights.deny.topics.subscribe.some(grant => filterMatches(grant, levels))
  }

  mayInvoke (identity: string, fn: FunctionAddress): boolean {
    return this.#mayCall(identity, 'invoke', fn)
  }

  /** A function's own identity (`Service/function`, as the supervisor issues them) may serve it unless denied. */
  mayServe (identity: string, fn: FunctionAddress): boolean {
    if (identity === fn.name) return !this.#rightsOf(identity).deny.functions.serve.some(pattern => functionMatches(pattern, fn))
    return this.#mayCall(identity, 'serve', fn)
  }

  /** Operator requests on a function's stored invocations (`fnbus queue`: counts, dead letters, retry, purge). */
  mayManage (identity: string, fn: FunctionAddress): boolean {
    return this.#mayCall(identity, 'manage', fn)
  }

  /**
   * Whether the identity may manage any function at all: the gateway's status (`fnbus status`) is for operators,
   * and shows each of them the functions they manage.
   */
  managesAny (identity: string): boolean {
    return identity === GATEWAY_IDENTITY || this.#rightsOf(identity).allow.functions.manage.length > 0
  }

  #mayCall (identity: string, action: 'invoke' | 'serve' | 'manage', fn: FunctionAddress): boolean {
    if (identity === GATEWAY_IDENTITY) return true
    const rights = this.#rightsOf(identity)
    const matches = (pattern: FunctionPattern): boolean => functionMatches(pattern, fn)
    return rights.allow.functions[action].some(matches) && !rights.deny.functions[action].some(matches)
  }

  #rightsOf (identity: string): Rights {
    let rights = this.#rights.get(identity)
    if (rights === undefined) {
      const applying = this.#compiled.filter(rule => rule.matchesIdentity(identity))
      rights = {
        allow: compileGrants(applying.map(rule => rule.allow), identity),
        deny: compileGrants(applying.map(rule => rule.deny), identity),
      }
      if (this.#rights.size >= RIGHTS_CACHE_SIZE) this.#rights.clear()
      this.#rights.set(identity, rights)
    }
    return rights
  }
}

function functionMatches (pattern: FunctionPattern, fn: FunctionAddress): boolean {
  return (pattern.service === undefined || pattern.service === fn.serviceName) &&
    (pattern.function === undefined || pattern.function === fn.functionName)
}

function compileGrants (grants: readonly Grants[], identity: string): CompiledGrants {
  const topics = (action: 'publish' | 'subscribe'): Levels[] => {
    const out: Levels[] = []
    for (const grant of grants) {
      for (const filter of grant[action] ?? []) {
        const levels = withIdentity(levelsOf(filter), identity)
        if (levels !== undefined) out.push(levels)
      }
    }
    return out
  }
  const functions = (action: 'invoke' | 'serve' | 'manage'): FunctionPattern[] =>
    grants.flatMap(grant => (grant[action] ?? []).map(parseFunctionPattern))
  return {
    topics: { publish: topics('publish'), subscribe: topics('subscribe') },
    functions: { invoke: functions('invoke'), serve: functions('serve'), manage: functions('manage') },
  }
}

/**
 * Puts the identity's name where a grant says `{identity}`: a function's identity (`Service/function`) becomes two
 * levels. A name holding `+` or `#`, or starting with `$` (`$anonymous`), would change what the filter means, so
 * such a grant grants it nothing.
 */
function withIdentity (levels: Levels, identity: string): Levels | undefined {
  if (!levels.includes(IDENTITY_PLACEHOLDER)) return levels
  if (identity.length === 0 || /[+#]/.test(identity) || identity.charCodeAt(0) === 36) return undefined
  return levels.flatMap(level => level === IDENTITY_PLACEHOLDER ? levelsOf(identity) : [level])
}

function parseFunctionPattern (pattern: string): FunctionPattern {
  if (pattern === '*') return { service: undefined, function: undefined }
  const [service, fn] = pattern.split('/') as [string, string]
  return { service: service === '*' ? undefined : service, function: fn === '*' ? undefined : fn }
}

/**
 * `*` stands for any run of characters, but never matches a name starting with `$`: the pseudo-identities
 * (`$anonymous`) are given rights only by rules that name them.
 */
function identityMatcher (pattern: string): (identity: string) => boolean {
  if (!pattern.includes('*')) return identity => identity === pattern
  const source = pattern.split('*').map(part => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')
  const regex = new RegExp(`^${source}$`, 's')
  return identity => identity.charCodeAt(0) !== 36 && regex.test(identity)
}

const RULE_KEYS = new Set(['identity', 'allow', 'deny'])

/**
 * Validates the `policy` key of the configuration. Every problem is an FNBUS_CONFIG_INVALID error naming the
 * entry (`policy[1].allow.publish[0]`).
 */
export function parsePolicy (raw: unknown, where = 'policy'): Policy {
  if (!Array.isArray(raw)) throw configError(`${where} must be an array of rules`)
  const rules = raw.map((entry: unknown, index: number): PolicyRule => {
    const at = `${where}[${index}]`
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw configError(`${at} must be an object`)
    const rule = entry as Record<string, unknown>
    for (const key of Object.keys(rule)) {
      if (!RULE_KEYS.has(key)) throw configError(`${at}: unknown key "${key}" (known: ${[...RULE_KEYS].join(', ')})`)
    }
    const identity = rule.identity
    if (typeof identity !== 'string' || !isIdentityPattern(identity)) {
      throw configError(`${at}.identity must be an identity name or a pattern with * (printable, up to 128 characters), got ${JSON.stringify(identity)}`)
    }
    if (identity === GATEWAY_IDENTITY) {
      throw configError(`${at}.identity: ${GATEWAY_IDENTITY} (the gateway's own in-process calls) is not restricted by the policy`)
    }
    if (rule.allow === undefined && rule.deny === undefined) throw configError(`${at} needs "allow" or "deny"`)
    return Object.freeze({
      identity,
      allow: parseGrants(rule.allow, `${at}.allow`),
      deny: parseGrants(rule.deny, `${at}.deny`),
    })
  })
  return new Policy(Object.freeze(rules))
}

function parseGrants (raw: unknown, at: string): Grants {
  if (raw === undefined) return {}
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw configError(`${at} must be an object`)
  const grants: Record<string, readonly string[]> = {}
  for (const [key, list] of Object.entries(raw as Record<string, unknown>)) {
    if (!(ACTIONS as readonly string[]).includes(key)) throw configError(`${at}: unknown action "${key}" (known: ${ACTIONS.join(', ')})`)
    const action = key as Action
    if (!Array.isArray(list)) throw configError(`${at}.${action} must be an array of ${TOPIC_ACTIONS.has(action) ? 'topic filters' : 'function patterns'}`)
    list.forEach((item: unknown, i: number) => {
      const valid = typeof item === 'string' && (TOPIC_ACTIONS.has(action) ? isGrantFilter(item) : isFunctionPattern(item))
      if (!valid) {
        throw configError(TOPIC_ACTIONS.has(action)
          ? `${at}.${action}[${i}] must be an MQTT topic filter (wildcards + and # as whole levels), got ${JSON.stringify(item)}`
          : `${at}.${action}[${i}] must be "Service/function", "Service/*", "*/function" or "*", got ${JSON.stringify(item)}`)
      }
    })
    grants[action] = Object.freeze([...list as string[]])
  }
  return Object.freeze(grants)
}

function isGrantFilter (filter: string): boolean {
  // eslint-disable-next-line no-control-regex
  return filter.length <= 65535 && !/[\u0000-\u001f\u007f-\u009f]/.test(filter) && isValidFilter(filter)
}

function isFunctionPattern (pattern: string): boolean {
  if (pattern === '*') return true
  const parts = pattern.split('/')
  return parts.length === 2 && parts.every(part => part === '*' || isValidName(part))
}

function isIdentityPattern (pattern: string): boolean {
  // eslint-disable-next-line no-control-regex
  return pattern.length > 0 && pattern.length <= 128 && !/[\u0000-\u001f\u007f-\u009f]/.test(pattern)
}
