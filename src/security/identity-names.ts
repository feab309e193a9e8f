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
 * Client ids are derived from the identity so that one identity can never take over another's session: a
 * connection authenticated as `alice` may use `alice` or `alice.ANYTHING`; one authenticated as
 * `EdgeFC/helloworld` uses `EdgeFC:helloworld` or `EdgeFC:helloworld.ANYTHING` (client ids name a topic level,
 * `$fn/in/{clientId}`, so the `/` becomes `:`). Names contain neither `.` nor `:`, so each client id belongs to
 * at most one identity.
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
