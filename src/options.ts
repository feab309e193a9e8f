import { configError } from './errors.js'
import { DEFAULT_LIMITS, MQTT_MAX_FRAME_BYTES, type Limits } from './limits.js'
import { checkGatewayOptions } from './config/check.js'
import type { Logger } from './logger.js'
import { silentLogger } from './logger.js'
import type { InvocationStore } from './store/types.js'
import { Policy, parsePolicy, type PolicyRule } from './security/policy.js'
import type { IdentitySource } from './security/authenticate.js'
import type { ClientIdOwnerStore } from './security/client-ids.js'
import { systemClock, type Clock } from './util/clock.js'

/** Room a frame needs around its payload: topic, envelope fields, invoker context. */
const FRAME_OVERHEAD = 64 * 1024

export interface BusOptions {
  readonly limits?: Partial<Limits>
  /** How long `close()` lets calls in flight finish before failing them with FNBUS_SHUTTING_DOWN. */
  readonly shutdownGraceMs?: number
  readonly logger?: Logger
  /**
   * Put invocation payloads in the logger's debug lines (text as it is, bytes as base64, both cut at 1 KiB).
   * Default false: payloads can hold anything a user sends, so they are never logged unless asked for.
   */
  readonly logPayloads?: boolean
  /** Where Async invocations are stored, opened already. Default: in memory. */
  readonly store?: InvocationStore
  /** Says when the disk under the store is too full to take new stored invocations (the gateway's data directory). */
  readonly diskSpace?: { refusal (): string | undefined }
  /** Who may do what (the configuration's `policy`); without one everything is allowed. */
  readonly policy?: Policy | readonly PolicyRule[]
  /**
   * Who may connect: a table of identities (`{ NAME: { hash } }`, as `fnbus identity add` writes them), or the
   * path of an identities file, read again whenever it changes. Without any, every client is anonymous.
   */
  readonly identities?: IdentitySource
  /** Accept clients without a username. Default: only while no identity is configured. */
  readonly allowAnonymous?: boolean
  /**
   * Where the owners of persistent sessions' client ids are kept, beside the broker's own persistence; the gateway
   * keeps them in its data directory. Default: in memory (right for a broker whose sessions are in memory too).
   */
  readonly clientIdStore?: ClientIdOwnerStore
  /**
   * Where timeouts, waits and backoff are measured (its monotonic time) and stored times read (its epoch time).
   * Default: the system's; tests step its wall clock.
   */
  readonly clock?: Clock
}

export interface NormalizedBusOptions {
  readonly limits: Limits
  readonly shutdownGraceMs: number
  readonly logger: Logger
  readonly logPayloads: boolean
  readonly store: InvocationStore | undefined
  readonly diskSpace: { refusal (): string | undefined } | undefined
  readonly policy: Policy | undefined
  readonly clock: Clock
}

export function normalizeBusOptions (options: BusOptions = {}): NormalizedBusOptions {
  // the options' types and bounds are the configuration schema's (config/schema.ts); what follows checks what a
  // schema cannot: one limit against another
  checkGatewayOptions({ limits: options.limits, shutdownGraceMs: options.shutdownGraceMs, logPayloads: options.logPayloads })
  const given = Object.fromEntries(Object.entries(options.limits ?? {}).filter(([, value]) => value !== undefined)) as Partial<Limits>
  const maxPayloadBytes = given.maxPayloadBytes ?? DEFAULT_LIMITS.maxPayloadBytes
  const maxFrameBytes = given.maxFrameBytes ?? maxPayloadBytes + FRAME_OVERHEAD
  // byte bounds that must hold a few of the largest messages grow with them when they are not given
  const atLeast = (fallback: number, floor: number): number => Math.max(fallback, floor)
  const limits: Limits = Object.freeze({
    ...DEFAULT_LIMITS,
    maxFrameBytes,
    invokeBurst: given.invokeRatePerSec ?? DEFAULT_LIMITS.invokeBurst,
    maxBufferedBytesPerClient: atLeast(DEFAULT_LIMITS.maxBufferedBytesPerClient, 4 * maxFrameBytes),
    maxQueuedBytes: atLeast(DEFAULT_LIMITS.maxQueuedBytes, 8 * maxPayloadBytes),
    maxQueuedBytesPerClient: atLeast(DEFAULT_LIMITS.maxQueuedBytesPerClient, 4 * maxPayloadBytes),
    ...given,
  })
  if (limits.maxFrameBytes <= limits.maxPayloadBytes) {
    throw configError('limits.maxFrameBytes must exceed limits.maxPayloadBytes (a frame carries the payload and its envelope)')
  }
  // reachable only by the default frame size, which follows maxPayloadBytes
  if (limits.maxFrameBytes > MQTT_MAX_FRAME_BYTES) throw configError(`limits.maxPayloadBytes leaves no room for its envelope in an MQTT frame (at most ${MQTT_MAX_FRAME_BYTES} bytes): give limits.maxFrameBytes`)
  if (limits.invokeRatePerSec > 0 && limits.invokeBurst < 1) throw configError('limits.invokeBurst must be ≥ 1 when limits.invokeRatePerSec is set')
  // one answer of the largest size must fit, with room for the next
  if (limits.maxBufferedBytesPerClient < 2 * limits.maxFrameBytes) throw configError(`limits.maxBufferedBytesPerClient must be at least twice limits.maxFrameBytes (${2 * limits.maxFrameBytes})`)
  return Object.freeze({
    limits,
    shutdownGraceMs: options.shutdownGraceMs ?? 10_000,
    logger: options.logger ?? silentLogger,
    logPayloads: options.logPayloads === true,
    store: options.store,
    diskSpace: options.diskSpace,
    policy: options.policy === undefined || options.policy instanceof Policy ? options.policy : parsePolicy(options.policy),
    clock: options.clock ?? systemClock,
  })
}

// what the rest of the code and the public surface import from here
export { configError } from './errors.js'
export { DEFAULT_LIMITS, type Limits } from './limits.js'
export { logsAt, silentLogger, type Logger } from './logger.js'
