// HTTP Basic against the gateway's identities: `http.auth: "basic"`. Operators sign in with the identities and
// secrets MQTT clients use (`fnbus identity add`), verified by the same scrypt Authenticator; the policy's `manage`
// grants say what they may change.
import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { HttpAuthorizer } from '../plugins.js'
import type { Authenticator } from '../security/authenticate.js'
import { LoginAbandoned, LoginQueueFull, sourceOf } from '../security/login-queue.js'
import type { Policy } from '../security/policy.js'

/** The ways `http.auth` may name; `basic`: HTTP Basic with the gateway's identities. */
export const HTTP_AUTH_MODES: readonly string[] = Object.freeze(['basic'])
export type HttpAuthMode = 'basic'

/** What a 401 carries, so that a browser asks for a user name and password. */
export const WWW_AUTHENTICATE = 'Basic realm="fnbus"'

/**
 * A verified user name and password are remembered this long, by a hash of both: the dashboard polls every 2 s,
 * and one scrypt derivation per request would cost 0.1 s of CPU each. A changed or removed secret stops working
 * within this time.
 */
const VERIFIED_TTL_MS = 10_000
const MAX_REMEMBERED = 1000

/**
 * Requests without credentials may read from this machine (as without `http.auth`); everything else needs an
 * identity's user name and secret: reads from elsewhere, and actions from anywhere. Actions under a policy need a
 * `manage` grant besides (the route checks it for its function: `bus.authorizeManage`). Wrong credentials are a 401
 * wherever the request comes from.
 */
export function identityAuthorizer (authenticator: Authenticator, policy: Policy | undefined): HttpAuthorizer {
  const verified = new Map<string, number>()
  const verify = async (username: string, password: string, req: IncomingMessage | undefined, remoteAddress: string): Promise<boolean> => {
    const key = createHash('sha256').update(username).update('\0').update(password).digest('base64')
    const until = verified.get(key)
    // monotonic: a wall clock set back must not keep a credential verified for longer
    if (until !== undefined && until > performance.now()) return true
    verified.delete(key)
    // in the same queue as MQTT logins, per source address; a request whose client left is not checked at all
    const attempt = { source: sourceOf(remoteAddress), gone: () => req?.socket.destroyed === true }
    if (!await authenticator.verifyPassword(username, password, attempt)) return false
    if (verified.size >= MAX_REMEMBERED) verified.clear()
    verified.set(key, performance.now() + VERIFIED_TTL_MS)
    return true
  }
  return async (request, req) => {
    const credentials = basicCredentials(request.headers.authorization)
    if (credentials === undefined) {
      if (request.loopback && !request.action) return { allowed: true }
      return { allowed: false, status: 401, reason: request.action ? 'actions need an operator identity (HTTP Basic)' : 'this HTTP port needs an operator identity (HTTP Basic) beyond this machine' }
    }
    let valid = false
    try {
      valid = credentials !== null && await verify(credentials.username, credentials.password, req, request.remoteAddress)
    } catch (err) {
      if (err instanceof LoginQueueFull) return { allowed: false, status: 403, reason: 'too many sign-ins from this address are waiting; try again' }
      if (err instanceof LoginAbandoned) return { allowed: false, status: 403, reason: 'the request was gone before its check' }
      throw err
    }
    if (!valid || credentials === null) return { allowed: false, status: 401, reason: 'unknown identity or wrong password' }
    const identity = credentials.username
    if (request.action && policy !== undefined && !policy.managesAny(identity)) {
      return { allowed: false, status: 403, reason: `${identity} may manage no function (policy)` }
    }
    return { allowed: true, identity }
  }
}

/** The user name and password of an `Authorization: Basic` header; undefined without one, null when it is malformed. */
function basicCredentials (header: string | undefined): { readonly username: string, readonly password: string } | null | undefined {
  if (header === undefined) return undefined
  const match = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header)
  if (match === null) return null
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon <= 0) return null
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}
