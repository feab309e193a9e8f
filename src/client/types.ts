import type { IClientOptions } from 'mqtt'
import type { FnbusError } from '../errors.js'
import type { FunctionErrorKind, InvocationType } from '../protocol/index.js'
import type { Clock } from '../util/clock.js'

// The SDK's public types: what FCClient's methods take and give.

export const DEFAULT_URL = 'mqtt://127.0.0.1:1883'
export const DEFAULT_TIMEOUT_MS = 30_000

export interface FCClientOptions {
  /** Gateway address. Default: `FNBUS_URL`, else `mqtt://127.0.0.1:1883`. */
  readonly url?: string
  /**
   * MQTT client id; it names the client's inbox. Default: with a username, the identity's own form (`alice.` or,
   * for a function's identity `S/f`, `S:f.`) and 16 random characters; without one, `fnbus-` and 16 of them.
   */
  readonly clientId?: string
  /** The identity to connect as. Default: `FNBUS_USERNAME` (the supervisor sets it for the functions it runs). */
  readonly username?: string
  /** Its secret. Default: `FNBUS_PASSWORD`. */
  readonly password?: string
  /**
   * CA certificate(s) (PEM) that signed the gateway's TLS certificate, for an `mqtts://` url. Default: the file
   * `FNBUS_CA` names.
   */
  readonly ca?: string | Buffer
  /** Default timeout of calls, ms. Default 30000. */
  readonly timeout?: number
  /**
   * ms a broker that accepted the MQTT connection has to answer the bus handshake; past it the client emits a
   * `warning` (FNBUS_PROTOCOL_MISMATCH: an MQTT broker that is not fnbus) and keeps waiting. Default 3000.
   */
  readonly handshakeTimeout?: number
  /** ms between reconnection attempts; 0: none. Default 1000. */
  readonly reconnectPeriod?: number
  /** Further MQTT.js options. */
  readonly mqtt?: IClientOptions
  /**
   * Where timeouts are measured (its monotonic time: the wall clock being set does not move them) and invocations'
   * deadlines read (its epoch time). Default: the system's; tests step its wall clock.
   */
  readonly clock?: Clock
}

export interface InvokeFunctionParams {
  readonly serviceName?: string
  readonly functionName?: string
  /** Link IoT Edge's `service:SERVICE:function:FUNCTION`, instead of the two names. */
  readonly functionId?: string
  /** `Sync` (default) or `Async`. */
  readonly invocationType?: InvocationType
  /** Base64 of a JSON object, as Link IoT Edge passes it, or the object itself. */
  readonly invokerContext?: string | Record<string, unknown>
  readonly payload?: unknown
  /** ms. Default: the client's `timeout`. */
  readonly timeout?: number
  /** ms to wait for a worker to appear instead of failing FNBUS_FUNCTION_NOT_FOUND at once (Sync). */
  readonly waitForWorker?: number
  /** Async: a second call with the same key (within the function's window) returns the first invocation's id. */
  readonly idempotencyKey?: string
}

export interface SyncInvocationResult {
  readonly statusCode: 200
  /** The function's return value, its type kept; the error message when `functionError` is set. */
  readonly payload: unknown
  readonly functionError?: FunctionErrorKind
}

export interface AsyncInvocationResult {
  readonly statusCode: 202
  readonly invocationId: string
}

export type InvocationResult = SyncInvocationResult | AsyncInvocationResult
export type InvokeCallback = (err: FnbusError | null, data?: InvocationResult) => void

export interface InvokeOptions {
  readonly timeout?: number
  readonly waitForWorker?: number
  /** The invoker context the function sees as `context.invokerContext`. */
  readonly context?: Record<string, unknown>
}

export interface InvokeAsyncOptions {
  /** A second call with the same key (within the function's window) returns the first invocation's id. */
  readonly idempotencyKey?: string
  readonly context?: Record<string, unknown>
  /** ms to wait for the gateway's acceptance. Default: the client's `timeout`. */
  readonly timeout?: number
}

/** Counts of a function's stored Async invocations. */
export interface QueueCounts {
  readonly function: string
  readonly pending: number
  readonly inFlight: number
  readonly dead: number
}

export interface DeadLetter {
  readonly invocationId: string
  readonly function: string
  readonly attempts: number
  readonly createdAt: number
  readonly diedAt: number
  readonly error: { readonly code: string, readonly message: string }
  readonly payloadBytes: number
}

export interface ClientServeOptions {
  /** Calls this process runs at once for this function. Default 8. */
  readonly concurrency?: number
}

export interface ClientPublishOptions {
  readonly qos?: 0 | 1 | 2
  readonly retain?: boolean
}

export interface EventMessage {
  readonly qos: number
  readonly retain: boolean
}
export type ClientEventHandler = (topic: string, payload: Buffer, message: EventMessage) => void

export interface ClientServedFunction {
  readonly name: string
  /** Stops taking calls for this function; calls in flight complete. */
  close (): Promise<void>
}
