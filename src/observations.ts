// What the gateway observes of its own work (invocations, connections, refusals, drops), as typed events: the
// dispatcher, the async engine and the broker emit them, plugins listen. Below every one of them: it imports none.
import { EventEmitter } from 'node:events'
import type { ErrorCode } from './errors.js'

/** How an invocation ended, as metrics count it: the function's answer, its error kind, or the bus error's code. */
export type InvocationOutcome = 'ok' | 'handled' | 'unhandled' | ErrorCode

/** One settled invocation (Sync call, or one delivery attempt of a stored Async invocation). */
export interface InvocationObservation {
  /** `context.requestId` of the function; the invocationId for Async. */
  readonly requestId: string
  /** `Service/function`. */
  readonly function: string
  readonly service: string
  readonly type: 'Sync' | 'Async'
  readonly outcome: InvocationOutcome
  /** From the dispatcher taking the call to its outcome (queueing for a worker included). */
  readonly durationMs: number
  /** The caller's identity, when the connection has one (security) or the caller named one (routes). */
  readonly identity?: string
}

export interface AcceptedObservation {
  /** The stored invocation's id. */
  readonly requestId: string
  readonly function: string
  readonly identity?: string
}

export interface RetryObservation {
  readonly requestId: string
  readonly function: string
  /** Attempts made so far (1 after the first failure). */
  readonly attempt: number
  readonly delayMs: number
  readonly error: { readonly code: string, readonly message: string }
}

export interface DeadLetterObservation {
  readonly requestId: string
  readonly function: string
  readonly attempts: number
  readonly error: { readonly code: string, readonly message: string }
}

export interface ClientObservation {
  readonly clientId: string
  readonly identity?: string
}

export interface WorkerObservation {
  readonly function: string
  /** The worker's client id, or `in-process`. */
  readonly worker: string
  readonly concurrency: number
}

/** A connection refused before it was accepted (bad CONNECT, refused credentials, …). */
export interface RejectedObservation {
  /** A short stable word: `protocol_error`, `bad_credentials`, `not_authorized`, `identifier_rejected`, … */
  readonly reason: string
  readonly clientId?: string
}

/** A frame or bus message dropped: the frame guard cut a connection, or the bus refused an envelope. */
export interface FrameDroppedObservation {
  /** `frame_too_large`, `malformed_frame`, or the bus error code of a refused envelope (`FNBUS_BAD_MESSAGE`, …). */
  readonly reason: string
  readonly clientId?: string
}

/** A bound of `limits` was reached: the connection or request it names was cut or refused. */
export interface LimitObservation {
  /** The `limits` key, e.g. `maxBufferedBytesPerClient`. */
  readonly limit: string
  readonly clientId?: string
}

/** An event message (ordinary MQTT topic, never the `$fn/` bus) entering the broker or leaving it to one subscriber. */
export interface EventMessageObservation {
  readonly direction: 'in' | 'out'
  readonly topic: string
}

/**
 * An event message the broker did not deliver to one subscriber, or did not keep: a subscriber's buffer over
 * `limits.maxEventBufferBytes` (QoS 0), a persistent session's queue at its bound, a retained message past the
 * retained bounds.
 */
export interface MessageDroppedObservation {
  /** `subscriber_buffer_full`, `session_queue_full`, `session_queues_full` (all sessions together), `retained_full`. */
  readonly reason: string
  readonly topic: string
  /** The subscriber or session that lost it; none for a retained message. */
  readonly clientId?: string
}

/** A connection the gateway cut after it was accepted, for what it did (or failed to do) since. */
export interface ConnectionCutObservation {
  /** `slow_subscriber`: over `limits.maxEventBufferBytes` for `limits.eventBufferTimeoutMs`, or for a QoS 1/2 message. */
  readonly reason: string
  readonly clientId: string
}

/** Every observation a gateway makes, by event name. */
export interface GatewayEventMap {
  invocation: [InvocationObservation]
  accepted: [AcceptedObservation]
  retry: [RetryObservation]
  deadLetter: [DeadLetterObservation]
  client: [ClientObservation]
  clientDisconnect: [ClientObservation]
  workerRegistered: [WorkerObservation]
  workerGone: [WorkerObservation]
  rejected: [RejectedObservation]
  frameDropped: [FrameDroppedObservation]
  eventMessage: [EventMessageObservation]
  limitReached: [LimitObservation]
  messageDropped: [MessageDroppedObservation]
  connectionCut: [ConnectionCutObservation]
}

export type GatewayEventName = keyof GatewayEventMap

/**
 * The gateway's observations. Emitters check `observed(name)` before building an observation, so the hot path
 * pays one property lookup when nobody listens. A listener that throws is logged, never breaks the gateway.
 */
export class GatewayEvents extends EventEmitter<GatewayEventMap> {
  readonly #onListenerError: (err: unknown, name: GatewayEventName) => void
  /** Listeners per event, kept as listeners come and go: `observed()` is asked on every invocation. */
  readonly #listening: Record<string, number> = Object.create(null) as Record<string, number>

  /** `onListenerError` hears of a listener that threw (the gateway logs it); default: ignored. */
  constructor (onListenerError: (err: unknown, name: GatewayEventName) => void = () => {}) {
    super()
    this.#onListenerError = onListenerError
    this.#track()
  }

  #track (): void {
    const emitter = this as EventEmitter
    emitter.on('newListener', (name: string | symbol) => { if (typeof name === 'string') this.#listening[name] = (this.#listening[name] ?? 0) + 1 })
    emitter.on('removeListener', (name: string | symbol) => { if (typeof name === 'string') this.#listening[name] = (this.#listening[name] ?? 1) - 1 })
  }

  /** Without a name this would also remove the bookkeeping of `observed()`: it is counted afresh. */
  override removeAllListeners (name?: GatewayEventName): this {
    super.removeAllListeners(name as GatewayEventName)
    if (name === undefined) {
      for (const key of Object.keys(this.#listening)) this.#listening[key] = 0
      this.#track()
    }
    return this
  }

  /** Whether anyone listens for `name`: emitters skip building the observation otherwise. */
  observed (name: GatewayEventName): boolean {
    return (this.#listening[name] ?? 0) > 0
  }

  /** Observations are emitted from the middle of the gateway's work: a listener that throws must not break it. */
  // Every observation is one object: no rest parameter, so emitting allocates nothing more.
  override emit<K extends GatewayEventName> (name: K, observation: GatewayEventMap[K][0]): boolean {
    try {
      return super.emit(name as GatewayEventName, observation as never)
    } catch (err) {
      this.#onListenerError(err, name)
      return true
    }
  }
}

// ---- HTTP ----
