import { FnbusError } from './errors.js'
import type { InvocationStore } from './store/types.js'

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
}

export const DEFAULT_LIMITS: Limits = Object.freeze({
  maxPayloadBytes: 1024 * 1024,
  maxFrameBytes: 1024 * 1024 + 64 * 1024,
  maxQueuedCalls: 1000,
  maxConcurrency: 1024,
  defaultTimeoutMs: 30_000,
  maxTimeoutMs: 15 * 60_000,
})

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
}

export interface NormalizedBusOptions {
  readonly limits: Limits
  readonly shutdownGraceMs: number
  readonly logger: Logger
  readonly logPayloads: boolean
  readonly store: InvocationStore | undefined
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
  })
  if (limits.maxFrameBytes <= limits.maxPayloadBytes) {
    throw configError('limits.maxFrameBytes must exceed limits.maxPayloadBytes (a frame carries the payload and its envelope)')
  }
  // MQTT's remaining length field cannot express more
  if (limits.maxFrameBytes > 268_435_455) throw configError('limits.maxFrameBytes cannot exceed 268435455 (MQTT maximum)')
  return Object.freeze({
    limits,
    shutdownGraceMs: positiveInteger(options.shutdownGraceMs, 10_000, 'shutdownGraceMs', 0),
    logger: options.logger ?? silentLogger,
    logPayloads: options.logPayloads === true,
    store: options.store,
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
