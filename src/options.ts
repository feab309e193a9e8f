import { FnbusError } from './errors.js'
import type { InvocationStore } from './store/types.js'
import { Policy, parsePolicy, type PolicyRule } from './security/policy.js'
import type { IdentitySource } from './security/authenticate.js'
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
  /** Calls one connection may have in flight (Sync awaiting their answer, Async awaiting storage); then FNBUS_RATE_LIMITED. */
  readonly maxInFlightPerClient: number
  /** Calls per second one identity may make, all its connections together; 0: no limit. Then FNBUS_RATE_LIMITED. */
  readonly invokeRatePerSec: number
  /** Calls an identity may make at once above its rate (the token bucket's size). Default: one second's worth. */
  readonly invokeBurst: number
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
  connectTimeoutMs: 10_000,
  maxInFlightPerClient: 10_000,
  invokeRatePerSec: 0,
  invokeBurst: 0,
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
  const limits: Limits = Object.freeze({
    maxPayloadBytes,
    maxFrameBytes: positiveInteger(given.maxFrameBytes, maxPayloadBytes + FRAME_OVERHEAD, 'limits.maxFrameBytes'),
    maxQueuedCalls: positiveInteger(given.maxQueuedCalls, DEFAULT_LIMITS.maxQueuedCalls, 'limits.maxQueuedCalls', 0),
    maxConcurrency: positiveInteger(given.maxConcurrency, DEFAULT_LIMITS.maxConcurrency, 'limits.maxConcurrency'),
    defaultTimeoutMs: positiveInteger(given.defaultTimeoutMs, DEFAULT_LIMITS.defaultTimeoutMs, 'limits.defaultTimeoutMs'),
    maxTimeoutMs: positiveInteger(given.maxTimeoutMs, DEFAULT_LIMITS.maxTimeoutMs, 'limits.maxTimeoutMs'),
    maxTopicBytes: positiveInteger(given.maxTopicBytes, DEFAULT_LIMITS.maxTopicBytes, 'limits.maxTopicBytes'),
    maxTopicLevels: positiveInteger(given.maxTopicLevels, DEFAULT_LIMITS.maxTopicLevels, 'limits.maxTopicLevels'),
    maxSubscriptionsPerClient: positiveInteger(given.maxSubscriptionsPerClient, DEFAULT_LIMITS.maxSubscriptionsPerClient, 'limits.maxSubscriptionsPerClient'),
    maxConnections: positiveInteger(given.maxConnections, DEFAULT_LIMITS.maxConnections, 'limits.maxConnections'),
    connectTimeoutMs: positiveInteger(given.connectTimeoutMs, DEFAULT_LIMITS.connectTimeoutMs, 'limits.connectTimeoutMs'),
    maxInFlightPerClient: positiveInteger(given.maxInFlightPerClient, DEFAULT_LIMITS.maxInFlightPerClient, 'limits.maxInFlightPerClient'),
    invokeRatePerSec: positiveInteger(given.invokeRatePerSec, DEFAULT_LIMITS.invokeRatePerSec, 'limits.invokeRatePerSec', 0),
    invokeBurst: positiveInteger(given.invokeBurst, given.invokeRatePerSec ?? DEFAULT_LIMITS.invokeBurst, 'limits.invokeBurst', 0),
  })
  if (limits.maxFrameBytes <= limits.maxPayloadBytes) {
    throw configError('limits.maxFrameBytes must exceed limits.maxPayloadBytes (a frame carries the payload and its envelope)')
  }
  // MQTT's remaining length field cannot express more
  if (limits.maxFrameBytes > 268_435_455) throw configError('limits.maxFrameBytes cannot exceed 268435455 (MQTT maximum)')
  if (limits.maxTopicBytes > 65_535) throw configError('limits.maxTopicBytes cannot exceed 65535 (MQTT maximum)')
  if (limits.maxTopicLevels > ROUTER_MAX_LEVELS) throw configError(`limits.maxTopicLevels cannot exceed ${ROUTER_MAX_LEVELS} (aedes' topic router)`)
  if (limits.invokeRatePerSec > 0 && limits.invokeBurst < 1) throw configError('limits.invokeBurst must be ≥ 1 when limits.invokeRatePerSec is set')
  return Object.freeze({
    limits,
    shutdownGraceMs: positiveInteger(options.shutdownGraceMs, 10_000, 'shutdownGraceMs', 0),
    logger: options.logger ?? silentLogger,
    logPayloads: options.logPayloads === true,
    store: options.store,
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
