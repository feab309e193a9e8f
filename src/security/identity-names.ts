/**
 * Identity names and the client ids they may use: pure functions, with no Node module behind them, so the SDK's
 * browser bundle picks its client id by the same rule the gateway checks.
 */

const NAME = /^[a-zA-Z][\w-]{0,127}$/
/** What may follow an identity's stem in its client ids: legal in a topic level, no `/`, `+`, `#`. */
const CLIENT_ID_SUFFIX = /^[\w.:-]{1,64}$/

/** True for `name` and `Service/function` identities. */
export function isValidIdentityName (value: unknown): value is string {
  if (typeof value !== 'string') return false
  const slash = value.indexOf('/')
  if (slash < 0) return NAME.test(value)
  return NAME.test(value.slice(0, slash)) && NAME.test(value.slice(slash + 1))
}

export function identityNameError (value: unknown): string {
  return `an identity is a name ([a-zA-Z][\\w-]{0,127}) or a function's name (Service/function), got ${JSON.stringify(value)}`
}

/**
 * The client ids every client may use: 1–128 characters of letters, digits and `_ . : @ -`. A client id names one
 * topic level (the client's inbox, `$fn/in/{clientId}`), so it holds no `/`, `+`, `#`, space or control character;
 * the default ids of common clients fit (MQTT.js' `mqttjs_1a2b3c4d`, `paho…`, `auto-XXXXXXXX-…`, UUIDs), and so do
 * the ids the gateway assigns to a client that sends none (`aedes_` and a UUID).
 */
const CLIENT_ID = /^[A-Za-z0-9_.:@-]{1,128}$/

export function isWellFormedClientId (value: string): boolean {
  return CLIENT_ID.test(value)
}

export const CLIENT_ID_RULE = '1–128 characters of A–Z a–z 0–9 _ . : @ -'

/**
 * The client ids of an identity's own namespace: `alice` and `alice.ANYTHING` are alice's alone, whoever asks first
 * (`EdgeFC/helloworld` has `EdgeFC:helloworld` and `EdgeFC:helloworld.ANYTHING`: client ids name a topic level,
 * `$fn/in/{clientId}`, so the `/` becomes `:`). The SDK picks its ids there. Names contain neither `.` nor `:`, so
 * each client id lies in the namespace of one identity at most.
 */
export function clientIdStem (identity: string): string {
  return identity.replace('/', ':')
}

/** The identity whose namespace `clientId` lies in, or undefined when it follows the rule of none. */
export function identityOfClientId (clientId: string): string | undefined {
  const dot = clientId.indexOf('.')
  const stem = dot < 0 ? clientId : clientId.slice(0, dot)
  if (dot >= 0 && !CLIENT_ID_SUFFIX.test(clientId.slice(dot + 1))) return undefined
  // a client id names one topic level: a '/' in it is no identity's form
  if (stem.includes('/')) return undefined
  const identity = stem.replace(':', '/')
  return isValidIdentityName(identity) ? identity : undefined
}

/** True when `clientId` is one the identity may use. */
export function clientIdBelongsTo (clientId: string, identity: string): boolean {
  return identityOfClientId(clientId) === identity
}
