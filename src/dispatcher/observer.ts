import type { FnbusError } from '../errors.js'
import { logsAt, type Logger } from '../logger.js'
import type { GatewayEvents } from '../observations.js'
import type { Clock } from '../util/clock.js'
import { outcomeOf } from './outcome.js'
import type { PendingCall, Slot } from './pending-call.js'
import type { InvocationTally } from './tally.js'
import { traceFinished, traceReceived } from './trace.js'
import type { CallerPort, CallRequest, Outcome } from './types.js'

/**
 * What the dispatcher tells of its calls and workers: the tallies of settled calls, the log (info for workers
 * coming and going, a warning per timeout, a debug line per step of a call when debug is on) and the observations
 * plugins listen to (`invocation`, `workerRegistered`, `workerGone`). Nothing is built for a listener nobody added.
 */
export class CallObserver {
  readonly #logger: Logger
  /** The logger when it writes debug lines, else undefined: one check per step when tracing is off. */
  readonly #trace: Logger | undefined
  readonly #logPayloads: boolean
  readonly #events: GatewayEvents | undefined
  readonly #clock: Clock

  constructor (logger: Logger, events: GatewayEvents | undefined, logPayloads: boolean, clock: Clock) {
    this.#logger = logger
    this.#trace = logsAt(logger, 'debug') ? logger : undefined
    this.#logPayloads = logPayloads
    this.#events = events
    this.#clock = clock
  }

  /** Whether a call's duration is wanted: by an observer of invocations, or by the debug log. */
  get timed (): boolean {
    return this.#trace !== undefined || this.#events?.observed('invocation') === true
  }

  received (request: CallRequest, caller: CallerPort, requestId: string): void {
    if (this.#trace !== undefined) traceReceived(this.#trace, this.#logPayloads, request, caller, requestId)
  }

  dispatched (call: PendingCall, slot: Slot): void {
    if (this.#trace === undefined) return
    this.#trace.debug({ requestId: call.requestId, fn: call.entry.address.name, type: call.request.type, worker: slot.worker.label, deliveryId: call.deliveryId }, 'invocation dispatched')
  }

  /** Counts a settled call, and when it was timed, tells the debug log and the `invocation` listeners. */
  settled (request: CallRequest, requestId: string, tally: InvocationTally, takenAt: number, outcome: Outcome, worker: string | undefined): void {
    if (takenAt === 0) {
      tally.record(outcome, -1)
      return
    }
    const durationMs = this.#clock.now() - takenAt
    tally.record(outcome, durationMs / 1000)
    if (this.#trace !== undefined) traceFinished(this.#trace, this.#logPayloads, request, requestId, outcome, worker, durationMs)
    const events = this.#events
    if (events === undefined || !events.observed('invocation')) return
    events.emit('invocation', {
      requestId,
      function: request.fn.name,
      service: request.fn.serviceName,
      type: request.type,
      outcome: outcomeOf(outcome),
      durationMs,
      identity: request.identity,
    })
  }

  /** A timeout is worth a warning at the default level: the function, or its workers' capacity, is not keeping up. */
  timedOut (call: PendingCall, error: FnbusError, worker: string | undefined): void {
    this.#logger.warn({ requestId: call.requestId, fn: call.entry.address.name, type: call.request.type, worker }, error.message)
  }

  workerRegistered (fn: string, worker: string, concurrency: number): void {
    this.#logger.info({ fn, worker, concurrency }, `${worker} serves ${fn}`)
    if (this.#events?.observed('workerRegistered') === true) this.#events.emit('workerRegistered', { function: fn, worker, concurrency })
  }

  workerGone (fn: string, worker: string, concurrency: number): void {
    this.#logger.info({ fn, worker }, `${worker} no longer serves ${fn}`)
    if (this.#events?.observed('workerGone') === true) this.#events.emit('workerGone', { function: fn, worker, concurrency })
  }
}
