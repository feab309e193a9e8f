import { FnbusError, FunctionError } from '../errors.js'
import type { CallerPort, Delivery, Dispatcher, Outcome, WorkerPort } from '../dispatcher/index.js'
import { Payload, type FunctionErrorKind } from '../protocol/index.js'
import { HandlerRun, makeContext, type Handler } from './handler.js'

/**
 * A handler served inside the gateway process: calls reach it without a socket hop, a payload copy, or a promise
 * of fnbus' own — the handler's answer goes straight back to the dispatcher.
 */
export class InProcessWorker implements WorkerPort {
  readonly label = 'in-process'

  constructor (readonly dispatcher: Dispatcher, readonly handler: Handler) {}

  deliver (delivery: Delivery): void {
    let event: unknown
    try {
      event = delivery.payload.value
    } catch (err) {
      queueMicrotask(() => this.dispatcher.complete(delivery.deliveryId, this, { ok: false, error: err as FnbusError }))
      return
    }
    const fn = delivery.fn
    const context = makeContext({
      requestId: delivery.requestId,
      invokerContext: delivery.context ?? {},
      serviceName: fn.serviceName,
      functionName: fn.functionName,
      invocationType: delivery.type,
      deadline: delivery.deadline,
    })
    const run = new InProcessRun(this, delivery)
    run.start(this.handler, event, context)
    run.delivering = false
  }
}

/** One delivery to an in-process handler: its outcome goes back to the dispatcher (see `HandlerRun`). */
class InProcessRun extends HandlerRun {
  delivering = true
  functionError: FunctionErrorKind | undefined = undefined
  value: unknown = undefined

  constructor (readonly worker: InProcessWorker, readonly delivery: Delivery) {
    super()
  }

  protected finished (functionError: FunctionErrorKind | undefined, value: unknown): void {
    this.functionError = functionError
    this.value = value
    // A handler that answers synchronously answers inside deliver(): completing there would start the next queued
    // call inside this one, and so on down the stack. It completes on the microtask queue instead.
    if (this.delivering) queueMicrotask(() => this.complete())
    else this.complete()
  }

  complete (): void {
    this.worker.dispatcher.complete(this.delivery.deliveryId, this.worker, { ok: true, functionError: this.functionError, payload: Payload.of(this.value) })
  }
}

/** An in-process call: its outcome goes to a callback (which resolves the caller's promise). */
export class InProcessCaller implements CallerPort {
  readonly label = 'in-process'
  readonly alive = true
  readonly settle: (outcome: Outcome) => void

  constructor (settle: (outcome: Outcome) => void) {
    this.settle = settle
  }
}

/** An in-process call of the promise API: resolves with the function's value, rejects with a coded error. */
export class InProcessValueCaller implements CallerPort {
  readonly alive = true

  constructor (readonly resolve: (value: unknown) => void, readonly reject: (err: unknown) => void) {}

  settle (outcome: Outcome): void {
    let value: unknown
    try {
      value = valueOf(outcome)
    } catch (err) {
      this.reject(err)
      return
    }
    this.resolve(value)
  }
}

/** The promise API's view of an outcome: the function's value, or a coded error. */
export function valueOf (outcome: Outcome): unknown {
  if (!outcome.ok) throw outcome.error
  if (outcome.functionError !== undefined) throw new FunctionError(outcome.functionError === 'Handled', outcome.payload.value)
  return outcome.payload.value
}
