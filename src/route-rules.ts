// Route rules (the configuration's `routes`, carried out by the routes plugin): validated once, when the
// configuration is read (or the plugin starts), never per event. The core owns their shape, as it owns every key of
// the configuration; the plugin takes the parsed rules through the public surface.
import { FnbusError } from './errors.js'
import { checkEventFilter, checkEventTopic, topicMatches } from './protocol/events.js'
import { parseFunctionName } from './protocol/names.js'
import { isValidIdentityName } from './security/identity-names.js'

/** How a routed event's bytes reach the function as its `event`. */
export const PAYLOAD_FORMATS = Object.freeze(['bytes', 'text', 'json'] as const)
export type PayloadFormat = typeof PAYLOAD_FORMATS[number]

/** The identity routes invoke as when neither the rule nor the plugin names one. */
export const DEFAULT_ROUTE_IDENTITY = 'routes'

/** One rule as the configuration writes it. */
export interface RouteRuleInput {
  readonly from: string
  readonly to: string
  readonly invocationType?: 'Sync' | 'Async'
  readonly identity?: string
  readonly payloadFormat?: PayloadFormat
  readonly replyTo?: string
  readonly timeoutMs?: number
}

/** One rule, validated: events on topics matching `from` become invocations of `to`. */
export interface RouteRule {
  /** Position in the configuration, for messages: `routes[2]`. */
  readonly index: number
  /** An MQTT topic filter (`+` and `#` allowed); never in the gateway's `$fn/` namespace. */
  readonly from: string
  /** `Service/function`. */
  readonly to: string
  /** Default Async: the event is stored durably before anything else happens to it. */
  readonly invocationType: 'Sync' | 'Async'
  /** Whom the invocation is made as: the security policy decides what it may invoke. */
  readonly identity: string
  /** Default `bytes`: the function gets a Buffer, as Link IoT Edge hands routed messages to functions. */
  readonly payloadFormat: PayloadFormat
  /** Sync only: the topic that receives the function's result as an event; undefined: the result is dropped. */
  readonly replyTo: string | undefined
  /** Sync only: ms; the function's or the gateway's default timeout when undefined. */
  readonly timeoutMs: number | undefined
}

const RULE_KEYS = new Set(['from', 'to', 'invocationType', 'identity', 'payloadFormat', 'replyTo', 'timeoutMs'])
const OPTION_KEYS = new Set(['rules', 'identity'])
/** Longest timeout a rule may name: the largest delay a Node.js timer takes. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1
/** What the security configuration calls an identity: `name` or `Service/function` (`isValidIdentityName`). */
const IDENTITY_RULE = 'a name ([a-zA-Z][\\w-]{0,127}) or a function\'s name (Service/function)'

/**
 * Validates the rules of the `routes` configuration key (`where` = `routes`) or of `plugins.routes.rules`. Every
 * problem is an FNBUS_CONFIG_INVALID error naming the rule, e.g.
 * `routes[1] (sensors/# → Analytics/ingest): unknown key "fromm"`.
 */
export function parseRouteRules (raw: unknown, where: string, defaultIdentity = DEFAULT_ROUTE_IDENTITY): RouteRule[] {
  if (!Array.isArray(raw)) throw invalid(`${where} must be an array of rules ({ "from": "topic/filter", "to": "Service/function" })`)
  return raw.map((entry: unknown, index) => parseRule(entry, index, where, defaultIdentity))
}

/** Validates the plugin's block: `{ rules: [...], identity?: "routes" }`. */
export function parseRoutesOptions (raw: unknown, where = 'plugins.routes'): { readonly rules: readonly RouteRule[] } {
  const block = raw ?? {}
  if (!isPlainObject(block)) throw invalid(`${where} must be an object { "rules": [...] }`)
  for (const key of Object.keys(block)) {
    if (!OPTION_KEYS.has(key)) throw invalid(`${where}: unknown key "${key}" (known: ${[...OPTION_KEYS].join(', ')})`)
  }
  const identity = block.identity ?? DEFAULT_ROUTE_IDENTITY
  if (!isValidIdentityName(identity)) {
    throw invalid(`${where}.identity must be an identity, ${IDENTITY_RULE}, got ${JSON.stringify(identity)}`)
  }
  return Object.freeze({ rules: Object.freeze(parseRouteRules(block.rules ?? [], `${where}.rules`, identity)) })
}

function parseRule (entry: unknown, index: number, where: string, defaultIdentity: string): RouteRule {
  if (!isPlainObject(entry)) throw invalid(`${where}[${index}] must be an object { "from": "topic/filter", "to": "Service/function" }`)
  // name the rule by what it says, as far as it says it: `routes[1] (sensors/# → Analytics/ingest)`
  const label = typeof entry.from === 'string' && typeof entry.to === 'string' ? ` (${entry.from} → ${entry.to})` : ''
  const fail = (message: string): FnbusError => invalid(`${where}[${index}]${label}: ${message}`)
  for (const key of Object.keys(entry)) {
    if (!RULE_KEYS.has(key)) throw fail(`unknown key "${key}" (known: ${[...RULE_KEYS].join(', ')})`)
  }
  if (entry.from === undefined) throw fail('"from" (a topic filter) is required')
  if (entry.to === undefined) throw fail('"to" ("Service/function") is required')
  const from = check(() => checkEventFilter(entry.from), 'from', fail)
  const to = check(() => parseFunctionName(entry.to, 'to').name, 'to', fail)

  const invocationType = entry.invocationType ?? 'Async'
  if (invocationType !== 'Sync' && invocationType !== 'Async') throw fail(`invocationType must be "Sync" or "Async", got ${JSON.stringify(invocationType)}`)
  const identity = entry.identity ?? defaultIdentity
  if (!isValidIdentityName(identity)) {
    throw fail(`identity must be an identity, ${IDENTITY_RULE}, got ${JSON.stringify(identity)}`)
  }
  const payloadFormat = entry.payloadFormat ?? 'bytes'
  if (!(PAYLOAD_FORMATS as readonly unknown[]).includes(payloadFormat)) {
    throw fail(`payloadFormat must be one of ${PAYLOAD_FORMATS.join(', ')}, got ${JSON.stringify(payloadFormat)}`)
  }

  let replyTo: string | undefined
  if (entry.replyTo !== undefined) {
    if (invocationType !== 'Sync') throw fail('replyTo is for Sync routes (an Async invocation\'s result goes to its function\'s async.onSuccess topic)')
    replyTo = check(() => checkEventTopic(entry.replyTo), 'replyTo', fail)
    // the result would be routed back into the same function, for ever
    if (topicMatches(from, replyTo)) throw fail(`replyTo ${JSON.stringify(replyTo)} matches the rule's own "from": every result would be routed again`)
  }
  let timeoutMs: number | undefined
  if (entry.timeoutMs !== undefined) {
    if (invocationType !== 'Sync') throw fail('timeoutMs is for Sync routes (an Async invocation takes its function\'s timeoutMs)')
    const value = entry.timeoutMs
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_TIMEOUT_MS) {
      throw fail(`timeoutMs must be an integer between 1 and ${MAX_TIMEOUT_MS}, got ${JSON.stringify(value)}`)
    }
    timeoutMs = value
  }
  return Object.freeze({ index, from, to, invocationType, identity, payloadFormat: payloadFormat as PayloadFormat, replyTo, timeoutMs })
}

/** Runs a check of the public surface and turns its FNBUS_INVALID_ARGUMENT into this rule's configuration error. */
function check<T> (run: () => T, key: string, fail: (message: string) => FnbusError): T {
  try {
    return run()
  } catch (err) {
    const message = (err as Error).message
    throw fail(message.startsWith(`${key}`) ? message : `${key}: ${message}`)
  }
}

function invalid (message: string): FnbusError {
  return new FnbusError('FNBUS_CONFIG_INVALID', message)
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}
