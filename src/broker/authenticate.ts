import { Aedes, type AuthenticateError, type Client, type PublishPacket } from 'aedes'
import type { Duplex } from 'node:stream'
import type { Logger } from '../logger.js'
import { decodeMessage, UP_TOPIC } from '../protocol/index.js'
import { ConnackCode, type Authenticator, type AuthVerdict } from '../security/authenticate.js'
import type { ClientIdClaim } from '../security/client-ids.js'
import { bindIdentity } from '../security/identity.js'
import { sourceOf } from '../security/login-queue.js'
import { patchPointMissing } from './patch-points.js'

type AuthenticateCallback = (err: AuthenticateError | null, success: boolean | null) => void

/**
 * Puts the authenticator in aedes' authenticate hook, composed with the hook the host program set:
 *
 * - a username fnbus knows (configured, or issued to a supervised instance) is decided by fnbus alone, and the
 *   connection is bound to that identity ([identity.ts](../security/identity.ts));
 * - an anonymous connection must pass fnbus' rule (allowed at all? a well-formed client id nobody else holds?) and
 *   then the host's hook;
 * - a username fnbus does not know goes to the host's hook if the host set one (its users, bound to no fnbus
 *   identity), and is refused otherwise.
 *
 * Refusals happen before aedes registers the client, so a refused connection never takes over a session. An
 * accepted connection holds its client id until it closes, and beyond for a persistent session: the owner is
 * recorded before aedes is told to go on.
 *
 * Connections with read-only credentials (the dashboard's live view) may subscribe, and publish nothing but the
 * bus' `hello`; anything else closes them.
 */
export function installAuthentication (aedes: Aedes, authenticator: Authenticator, logger: Logger): void {
  const host = aedes.authenticate
  // aedes' own default accepts everyone; a hook of the host's has a name of its own (or none)
  const hostDecidesUnknown = host.name !== DEFAULT_AUTHENTICATE && !isAedesDefault(host, logger)
  const readOnly = new WeakSet<Client>()

  const refuse = (code: number, reason: string, callback: AuthenticateCallback): void => {
    const err = new Error(reason) as AuthenticateError
    err.returnCode = code
    callback(err, false)
  }

  /** Records the claim (a persistent session's owner is written first), then tells aedes the connection is in. */
  const admit = (client: Client, claim: ClientIdClaim | undefined, callback: AuthenticateCallback): void => {
    if (claim === undefined) {
      callback(null, true)
      return
    }
    const conn = client.conn as Duplex
    if (conn.destroyed) {
      claim.release()
      refuse(ConnackCode.ServerUnavailable, 'the connection closed', callback)
      return
    }
    conn.once('close', claim.release)
    claim.keep(client.clean === false).then(() => callback(null, true), (err: unknown) => {
      claim.release()
      logger.error({ err, clientId: client.id }, 'the owner of a client id could not be recorded')
      refuse(ConnackCode.ServerUnavailable, 'the gateway could not record the owner of the client id', callback)
    })
  }

  /** The host program's hook decides first: a connection it refuses records nothing. */
  const askHost = (client: Client, username: string | undefined, password: Buffer | undefined, claim: ClientIdClaim | undefined, callback: AuthenticateCallback): void => {
    host.call(aedes, client, username, password, (err, success) => {
      if (err != null || success !== true) {
        claim?.release()
        callback(err, success)
        return
      }
      admit(client, claim, callback)
    })
  }

  aedes.authenticate = (client, username, password, callback) => {
    const conn = client.conn as Duplex & { remoteAddress?: string }
    const attempt = {
      hostDecidesUnknown,
      source: sourceOf(conn.remoteAddress),
      gone: () => client.closed || conn.destroyed,
      claim: true,
    }
    authenticator.authenticate(client.id, username, password, attempt).then((verdict: AuthVerdict) => {
      switch (verdict.kind) {
        case 'refused':
          // a connection that left while its check waited hears nothing; nothing was checked either
          if (verdict.abandoned === true) logger.debug({ clientId: client.id, username, reason: verdict.reason }, 'login dropped')
          else logger.warn({ clientId: client.id, username, reason: verdict.reason }, 'connection refused')
          refuse(verdict.code, verdict.reason, callback)
          return
        case 'accepted':
          if (verdict.identity === undefined) {
            askHost(client, username, password, verdict.claim, callback)
            return
          }
          bindIdentity(client, verdict.identity)
          if (verdict.readOnly === true) readOnly.add(client)
          admit(client, verdict.claim, callback)
          return
        case 'delegated':
          askHost(client, username, password, verdict.claim, callback)
      }
    }, (err: unknown) => {
      logger.error({ err, clientId: client.id }, 'authentication failed')
      refuse(ConnackCode.ServerUnavailable, 'the gateway could not authenticate the connection', callback)
    })
  }

  const authorizePublish = aedes.authorizePublish
  aedes.authorizePublish = (client, packet, callback) => {
    if (client !== null && readOnly.has(client) && !onlyHello(packet)) {
      // in MQTT 3.1.1 an error here closes the connection: read-only credentials that publish are not the page they were issued to
      logger.warn({ clientId: client.id, topic: packet.topic }, 'connection closed: read-only credentials published')
      callback(new Error('read-only credentials may not publish'))
      return
    }
    authorizePublish.call(aedes, client, packet, callback)
  }
}

/** A bus message holding `hello` envelopes only: all a read-only connection may send (it opens the bus session). */
function onlyHello (packet: PublishPacket): boolean {
  if (packet.topic !== UP_TOPIC) return false
  try {
    const envelopes = decodeMessage(typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload)
    return envelopes.length > 0 && envelopes.every(envelope => envelope.t === 'hello')
  } catch {
    return false
  }
}

const DEFAULT_AUTHENTICATE = 'defaultAuthenticate'

/**
 * Whether `hook`, not named as aedes names its default authenticate hook, is that default all the same: a release
 * that renamed it (see patch-points.ts, `aedes.authenticate`) would have it taken for the host's, and the usernames
 * fnbus does not know accepted by it. A broker made without options (not started: no timers, no sockets) shows the
 * default; only a host that set a hook of its own pays for making one, once.
 */
function isAedesDefault (hook: Aedes['authenticate'], logger: Logger): boolean {
  let fallback: Aedes['authenticate']
  try {
    fallback = new Aedes().authenticate
  } catch {
    return false
  }
  if (fallback.name === DEFAULT_AUTHENTICATE) return false
  patchPointMissing(logger, 'aedes.authenticate', { name: fallback.name })
  return fallback === hook
}
