import { FnbusError } from './errors.js'
import type { InvocationStore } from './store/types.js'
import { Policy, parsePolicy, type PolicyRule } from './security/policy.js'
import type { IdentitySource } from './security/authenticate.js'
import type { ClientIdOwnerStore } from './security/client-ids.js'
import { systemClock, type Clock } from './util/clock.js'

export interface Limits {
  /** Largest invocation or event payload, in bytes. */
  readonly maxPayloadBytes: number
  /** Largest MQTT frame; a connection that declares a larger one is cut. Default: maxPayloadBytes + 64 KiB. */
  readonly maxFrameBytes: number
  /** Calls waiting for a free worker, per function. */
  readonly maxQueuedCalls: number
  /** Calls one worker may declare it runs at once. */
  readonly maxConcurrency: number
  /** Timeout of a call that names none. */
  readonly defaultTimeoutMs: number
  /** Longest timeout a call may ask for. */
  readonly maxTimeoutMs: number
  /** Longest topic or topic filter a client may publish or subscribe, in UTF-8 bytes. */
  readonly maxTopicBytes: number
  /** Most levels (`/`-separated) in a topic or filter; aedes' router cannot go beyond 100. */
  readonly maxTopicLevels: number
  /** Subscriptions one connection may hold; one more is refused (SUBACK 0x80). */
  readonly maxSubscriptionsPerClient: number
  /** Open client connections, all listeners together; one more is closed at once. */
  readonly maxConnections: number
  /** How long a new connection may take to deliver its whole CONNECT packet before it is cut. */
  readonly connectTimeoutMs: number
  /**
   * Connections not yet authenticated, all listeners together: one more takes the place of the oldest that has not
   * sent its CONNECT yet, or is closed at once when all of them are logging in.
   */
  readonly maxPendingConnections: number
  /** Logins from one source address (IPv6: one /64) waiting for their secret check; one more is refused (CONNACK 3, HTTP 403). */
  readonly maxPendingLoginsPerAddress: number
  /** Calls one connection may have in flight (Sync awaiting their answer, Async awaiting storage); then FNBUS_RATE_LIMITED. */
  readonly maxInFlightPerClient: number
  /** Calls per second one identity may make, all its connections together; 0: no limit. Then FNBUS_RATE_LIMITED. */
  readonly invokeRatePerSec: number
  /** Calls an identity may make at once above its rate (the token bucket's size). Default: one second's worth. */
  readonly invokeBurst: number
  /**
   * Bytes the gateway has written to one connection that its peer has not read yet. From half of it the connection
   * gets no invocations and its new calls are refused (FNBUS_RATE_LIMITED); past it, the connection is cut.
   */
  readonly maxBufferedBytesPerClient: number
  /** Payload bytes of the calls waiting for a worker of one function; then FNBUS_QUEUE_FULL. */
  readonly maxQueuedBytes: number
  /** Payload bytes of the calls one connection has waiting for workers, all functions together; then FNBUS_QUEUE_FULL. */
  readonly maxQueuedBytesPerClient: number
  /** Functions one connection may serve; one more registration is FNBUS_INVALID_ARGUMENT. */
  readonly maxRegistrationsPerClient: number
  /** Function names the gateway tracks at once (served, or with calls waiting for a first worker); then FNBUS_QUEUE_FULL. */
  readonly maxFunctions: number
  /** Stored (Async) invocations waiting, all functions together; one more is FNBUS_QUEUE_FULL. */
  readonly maxStoredTotal: number
  /** Largest invoker context a call may carry, as MessagePack bytes; then FNBUS_PAYLOAD_TOO_LARGE. */
  readonly maxContextBytes: number
  /** Free bytes the data directory's filesystem keeps: below it new Async invocations are FNBUS_QUEUE_FULL; 0: no check. */
  readonly minFreeDiskBytes: number
  /**
   * Bytes of event messages waiting to be written to one subscriber's connection. Past it the subscriber's QoS 0
   * messages are dropped and a QoS 1/2 delivery cuts its connection: a slow subscriber never holds others back.
   */
  readonly maxEventBufferBytes: number
  /** How long a subscriber may stay over maxEventBufferBytes before its connection is cut. */
  readonly eventBufferTimeoutMs: number
  /** QoS 1/2 messages queued for one persistent session (clean = 0), offline or not yet acknowledged; newer ones are dropped. */
  readonly maxSessionQueueMessages: number
  /** Bytes (payload and topic) queued for one persistent session; newer messages are dropped. */
  readonly maxSessionQueueBytes: number
  /** Bytes queued for all persistent sessions together; newer messages are dropped. */
  readonly maxSessionQueueBytesTotal: number
  /** Retained messages stored; a retained message on one topic more is routed but not retained. */
  readonly maxRetainedMessages: number
  /** Bytes (payload and topic) of all retained messages together; same consequence. */
  readonly maxRetainedBytes: number
}

export const DEFAULT_LIMITS: Limits = Object.freeze({
  maxPayloadBytes: 1024 * 1024,
  maxFrameBytes: 1024 * 1024 + 64 * 1024,
  maxQueuedCalls: 1000,
  maxConcurrency: 1024,
  defaultTimeoutMs: 30_000,
  maxTimeoutMs: 15 * 60_000,
  maxTopicBytes: 1024,
  maxTopicLevels: 32,
  maxSubscriptionsPerClient: 100,
  maxConnections: 1000,
  connectTimeoutMs: 5_000,
  maxPendingConnections: 128,
  maxPendingLoginsPerAddress: 32,
  maxInFlightPerClient: 10_000,
  invokeRatePerSec: 0,
  invokeBurst: 0,
  maxBufferedBytesPerClient: 32 * 1024 * 1024,
  maxQueuedBytes: 64 * 1024 * 1024,
  maxQueuedBytesPerClient: 16 * 1024 * 1024,
  maxRegistrationsPerClient: 1024,
  maxFunctions: 10_000,
  maxStoredTotal: 1_000_000,
  // with the largest payload, still well inside a frame's 64 KiB allowance for everything but the payload
  maxContextBytes: 16 * 1024,
  minFreeDiskBytes: 64 * 1024 * 1024,
  maxEventBufferBytes: 8 * 1024 * 1024,
  eventBufferTimeoutMs: 30_000,
  maxSessionQueueMessages: 1000,
  maxSessionQueueBytes: 8 * 1024 * 1024,
  maxSessionQueueBytesTotal: 64 * 1024 * 1024,
  maxRetainedMessages: 10_000,
  maxRetainedBytes: 16 * 1024 * 1024,
})

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

/** pino's calling convention, so a pino logger can be passed as it is. */
export interface Logger {
  debug (obj: object, msg?: string): void
  info (obj: object, msg?: string): void
  warn (obj: object, msg?: string): void
  error (obj: object, msg?: string): void
  /** pino's: lets the bus skip building debug entries nobody will see. Without it every level counts as enabled. */
  isLevelEnabled? (level: string): boolean
}

const noop = (): void => {}
export const silentLogger: Logger = Object.freeze({ debug: noop, info: noop, warn: noop, error: noop, isLevelEnabled: () => false })

/** Whether `logger` writes `level` entries: a logger that cannot tell is taken at its word that it does. */
export function logsAt (logger: Logger, level: 'debug' | 'info' | 'warn' | 'error'): boolean {
  return typeof logger.isLevelEnabled === 'function' ? logger.isLevelEnabled(level) : true
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

export function configError (message: string): FnbusError {
  return new FnbusError('FNBUS_CONFIG_INVALID', message)
}
