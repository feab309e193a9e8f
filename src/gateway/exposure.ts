import type { FunctionBus } from '../broker/function-bus.js'
import { configError } from '../errors.js'
import type { Logger } from '../logger.js'
import { isLoopback } from '../util/loopback.js'

/** What the exposure rule reads of the gateway's options. */
export interface ExposureOptions {
  /** Said at all (true or false), the operator chose: the rule stands aside. */
  readonly allowAnonymous?: boolean
  /** Present when MQTT listens with TLS; beyond loopback without it, a warning. */
  readonly tls?: object
}

/**
 * The gateway refuses to listen beyond loopback while anyone may connect anonymously by default (no identity
 * configured): a function bus open to the network lets every host on it invoke every function. Saying
 * `allowAnonymous: true` is the operator's explicit choice to do that anyway.
 */
export function checkExposure (host: string, options: ExposureOptions, bus: FunctionBus, logger: Logger | undefined): void {
  if (isLoopback(host)) return
  refuseAnonymousExposure(host, 'host', 'invoke every function', options, bus)
  if (options.tls === undefined) logger?.warn({ host }, 'listening beyond loopback without TLS: passwords and payloads cross the network in clear')
}

/**
 * The rule of every listener (MQTT, the HTTP port, a plugin's WebSocket port): none listens beyond loopback while
 * anonymous clients are accepted by default. `key` names the setting, `consequence` what anyone could then do.
 */
export function refuseAnonymousExposure (host: string, key: string, consequence: string, options: ExposureOptions, bus: FunctionBus): void {
  if (isLoopback(host)) return
  if (options.allowAnonymous === undefined && bus.authenticator.anonymousAllowed) {
    throw configError(`${key} ${host} is reachable beyond this machine, and no identity is configured: anyone who can reach it could ${consequence}. ` +
      'Create one with "fnbus identity add NAME" (or give identities), or set allowAnonymous: true (fnbus start --allow-anonymous) to accept anonymous clients on purpose')
  }
}
