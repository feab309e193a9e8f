import { configError } from './errors.js'
import { DEFAULT_LIMITS, type Limits } from './limits.js'
import type { Logger } from './logger.js'
import { silentLogger } from './logger.js'
import type { InvocationStore } from './store/types.js'
import { Policy, parsePolicy, type PolicyRule } from './security/policy.js'
import type { IdentitySource } from './security/authenticate.js'
import type { ClientIdOwnerStore } from './security/client-ids.js'
import { systemClock, type Clock } from './util/clock.js'

/** aedes' topic router (qlobber) throws beyond this many levels. */
const ROUTER_MAX_LEVELS = 100

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
  const given = options.limits ?? {}
  for (const key of Object.keys(given)) {
    if (!Object.hasOwn(DEFAULT_LIMITS, key)) throw configError(`limits.${key} is not a known limit`)
  }
  const maxPayloadBytes = positiveInteger(given.maxPayloadBytes, DEFAULT_LIMITS.maxPayloadBytes, 'limits.maxPayloadBytes')
  const maxFrameBytes = positiveInteger(given.maxFrameBytes, maxPayloadBytes + FRAME_OVERHEAD, 'limits.maxFrameBytes')
  // byte bounds that must hold a few of the largest messages grow with them when they are not given
  const atLeast = (fallback: number, floor: number): number => Math.max(fallback, floor)
  const limits: Limits = Object.freeze({
    maxPayloadBytes,
    maxFrameBytes,
    maxQueuedCalls: positiveInteger(given.maxQueuedCalls, DEFAULT_LIMITS.maxQueuedCalls, 'limits.maxQueuedCalls', 0),
    maxConcurrency: positiveInteger(given.maxConcurrency, DEFAULT_LIMITS.maxConcurrency, 'limits.maxConcurrency'),
    defaultTimeoutMs: positiveInteger(given.defaultTimeoutMs, DEFAULT_LIMITS.defaultTimeoutMs, 'limits.defaultTimeoutMs'),
    maxTimeoutMs: positiveInteger(given.maxTimeoutMs, DEFAULT_LIMITS.maxTimeoutMs, 'limits.maxTimeoutMs'),
    maxTopicBytes: positiveInteger(given.maxTopicBytes, DEFAULT_LIMITS.maxTopicBytes, 'limits.maxTopicBytes'),
    maxTopicLevels: positiveInteger(given.maxTopicLevels, DEFAULT_LIMITS.maxTopicLevels, 'limits.maxTopicLevels'),
    maxSubscriptionsPerClient: positiveInteger(given.maxSubscriptionsPerClient, DEFAULT_LIMITS.maxSubscriptionsPerClient, 'limits.maxSubscriptionsPerClient'),
    maxConnections: positiveInteger(given.maxConnections, DEFAULT_LIMITS.maxConnections, 'limits.maxConnections'),
    connectTimeoutMs: positiveInteger(given.connectTimeoutMs, DEFAULT_LIMITS.connectTimeoutMs, 'limits.connectTimeoutMs'),
    maxPendingConnections: positiveInteger(given.maxPendingConnections, DEFAULT_LIMITS.maxPendingConnections, 'limits.maxPendingConnections'),
    maxPendingLoginsPerAddress: positiveInteger(given.maxPendingLoginsPerAddress, DEFAULT_LIMITS.maxPendingLoginsPerAddress, 'limits.maxPendingLoginsPerAddress'),
    maxInFlightPerClient: positiveInteger(given.maxInFlightPerClient, DEFAULT_LIMITS.maxInFlightPerClient, 'limits.maxInFlightPerClient'),
    invokeRatePerSec: positiveInteger(given.invokeRatePerSec, DEFAULT_LIMITS.invokeRatePerSec, 'limits.invokeRatePerSec', 0),
    invokeBurst: positiveInteger(given.invokeBurst, given.invokeRatePerSec ?? DEFAULT_LIMITS.invokeBurst, 'limits.invokeBurst', 0),
    maxBufferedBytesPerClient: positiveInteger(given.maxBufferedBytesPerClient, atLeast(DEFAULT_LIMITS.maxBufferedBytesPerClient, 4 * maxFrameBytes), 'limits.maxBufferedBytesPerClient'),
    maxQueuedBytes: positiveInteger(given.maxQueuedBytes, atLeast(DEFAULT_LIMITS.maxQueuedBytes, 8 * maxPayloadBytes), 'limits.maxQueuedBytes'),
    maxQueuedBytesPerClient: positiveInteger(given.maxQueuedBytesPerClient, atLeast(DEFAULT_LIMITS.maxQueuedBytesPerClient, 4 * maxPayloadBytes), 'limits.maxQueuedBytesPerClient'),
    maxRegistrationsPerClient: positiveInteger(given.maxRegistrationsPerClient, DEFAULT_LIMITS.maxRegistrationsPerClient, 'limits.maxRegistrationsPerClient'),
    maxFunctions: positiveInteger(given.maxFunctions, DEFAULT_LIMITS.maxFunctions, 'limits.maxFunctions'),
    maxStoredTotal: positiveInteger(given.maxStoredTotal, DEFAULT_LIMITS.maxStoredTotal, 'limits.maxStoredTotal'),
    maxContextBytes: positiveInteger(given.maxContextBytes, DEFAULT_LIMITS.maxContextBytes, 'limits.maxContextBytes'),
    minFreeDiskBytes: positiveInteger(given.minFreeDiskBytes, DEFAULT_LIMITS.minFreeDiskBytes, 'limits.minFreeDiskBytes', 0),
    maxEventBufferBytes: positiveInteger(given.maxEventBufferBytes, DEFAULT_LIMITS.maxEventBufferBytes, 'limits.maxEventBufferBytes'),
    eventBufferTimeoutMs: positiveInteger(given.eventBufferTimeoutMs, DEFAULT_LIMITS.eventBufferTimeoutMs, 'limits.eventBufferTimeoutMs'),
    maxSessionQueueMessages: positiveInteger(given.maxSessionQueueMessages, DEFAULT_LIMITS.maxSessionQueueMessages, 'limits.maxSessionQueueMessages'),
    maxSessionQueueBytes: positiveInteger(given.maxSessionQueueBytes, DEFAULT_LIMITS.maxSessionQueueBytes, 'limits.maxSessionQueueBytes'),
    maxSessionQueueBytesTotal: positiveInteger(given.maxSessionQueueBytesTotal, DEFAULT_LIMITS.maxSessionQueueBytesTotal, 'limits.maxSessionQueueBytesTotal'),
    maxRetainedMessages: positiveInteger(given.maxRetainedMessages, DEFAULT_LIMITS.maxRetainedMessages, 'limits.maxRetainedMessages', 0),
    maxRetainedBytes: positiveInteger(given.maxRetainedBytes, DEFAULT_LIMITS.maxRetainedBytes, 'limits.maxRetainedBytes', 0),
  })
  if (limits.maxFrameBytes <= limits.maxPayloadBytes) {
    throw configError('limits.maxFrameBytes must exceed limits.maxPayloadBytes (a frame carries the payload and its envelope)')
  }
  // MQTT's remaining length field cannot express more
  if (limits.maxFrameBytes > 268_435_455) throw configError('limits.maxFrameBytes cannot exceed 268435455 (MQTT maximum)')
  if (limits.maxTopicBytes > 65_535) throw configError('limits.maxTopicBytes cannot exceed 65535 (MQTT maximum)')
  if (limits.maxTopicLevels > ROUTER_MAX_LEVELS) throw configError(`limits.maxTopicLevels cannot exceed ${ROUTER_MAX_LEVELS} (aedes' topic router)`)
  if (limits.invokeRatePerSec > 0 && limits.invokeBurst < 1) throw configError('limits.invokeBurst must be ≥ 1 when limits.invokeRatePerSec is set')
  // one answer of the largest size must fit, with room for the next
  if (limits.maxBufferedBytesPerClient < 2 * limits.maxFrameBytes) throw configError(`limits.maxBufferedBytesPerClient must be at least twice limits.maxFrameBytes (${2 * limits.maxFrameBytes})`)
  return Object.freeze({
    limits,
    shutdownGraceMs: positiveInteger(options.shutdownGraceMs, 10_000, 'shutdownGraceMs', 0),
    logger: options.logger ?? silentLogger,
    logPayloads: options.logPayloads === true,
    store: options.store,
    diskSpace: options.diskSpace,
    policy: options.policy === undefined || options.policy instanceof Policy ? options.policy : parsePolicy(options.policy),
    clock: options.clock ?? systemClock,
  })
}

export function positiveInteger (value: unknown, fallback: number, name: string, min = 1): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw configError(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(value)}`)
  }
  return value
}

// what the rest of the code and the public surface import from here
export { configError } from './errors.js'
export { DEFAULT_LIMITS, type Limits } from './limits.js'
export { logsAt, silentLogger, type Logger } from './logger.js'
