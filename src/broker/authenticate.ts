import type { Aedes, AuthenticateError } from 'aedes'
import type { Logger } from '../options.js'
import type { Authenticator } from '../security/authenticate.js'
import { bindIdentity } from '../security/identity.js'

/** MQTT 3.1.1 CONNACK "server unavailable" ([MQTT-3.2.2-3]): the authenticator itself failed. */
const SERVER_UNAVAILABLE = 3

/**
 * Puts the authenticator in aedes' authenticate hook, composed with the hook the host program set:
 *
 * - a username fnbus knows (configured, or issued to a supervised instance) is decided by fnbus alone, and the
 *   connection is bound to that identity ([identity.ts](../security/identity.ts));
 * - an anonymous connection must pass fnbus' rule (allowed at all? a client id no identity owns?) and then the
 *   host's hook;
 * - a username fnbus does not know goes to the host's hook if the host set one (its users, bound to no fnbus
 *   identity), and is refused otherwise.
 *
 * Refusals happen before aedes registers the client, so a refused connection never takes over a session.
 */
export function installAuthentication (aedes: Aedes, authenticator: Authenticator, logger: Logger): void {
  const host = aedes.authenticate
  // aedes' own default accepts everyone; a hook of the host's has a name of its own (or none)
  const hostDecidesUnknown = host.name !== 'defaultAuthenticate'

  aedes.authenticate = (client, username, password, callback) => {
    authenticator.authenticate(client.id, username, password, hostDecidesUnknown).then(verdict => {
      switch (verdict.kind) {
        case 'refused': {
          logger.warn({ clientId: client.id, username, reason: verdict.reason }, 'connection refused')
          const err = new Error(verdict.reason) as AuthenticateError
          err.returnCode = verdict.code
          callback(err, false)
          return
        }
        case 'accepted':
          if (verdict.identity !== undefined) {
            bindIdentity(client, verdict.identity)
            callback(null, true)
            return
          }
          host.call(aedes, client, username, password, callback)
          return
        case 'delegated':
          host.call(aedes, client, username, password, callback)
      }
    }, (err: unknown) => {
      logger.error({ err, clientId: client.id }, 'authentication failed')
      const refusal = new Error('the gateway could not authenticate the connection') as AuthenticateError
      refusal.returnCode = SERVER_UNAVAILABLE
      callback(refusal, false)
    })
  }
}
