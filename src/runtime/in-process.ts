import { FnbusError, FunctionError } from '../errors.js'
import type { CallerPort, Delivery, Dispatcher, Outcome, WorkerPort } from '../dispatcher/index.js'
import { Payload } from '../protocol/index.js'
import { invokeHandler, makeContext, type Handler, type HandlerOutcome } from './handler.js'

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
    const context = makeContext({
      requestId: delivery.requestId,
      invokerContext: delivery.context ?? {},
      serviceName: delivery.fn.serviceName,
      functionName: delivery.fn.functionName,
      invocationType: delivery.type,
      deadline: delivery.deadline,
    })
    let delivering = true
    invokeHandler(this.handler, event, context, outcome => {
      // A handler that answers synchronously answers inside deliver(): completing there would start the next queued
      // call inside this one, and so on down the stack. It completes on the microtask queue instead.
      if (delivering) queueMicrotask(() => this.#complete(delivery, outcome))
      else this.#complete(delivery, outcome)
    })
    delivering = false
  }

  #complete (delivery: Delivery, outcome: HandlerOutcome): void {
    this.dispatcher.complete(delivery.deliveryId, this, { ok: true, functionError: outcome.functionError, payload: Payload.of(outcome.value) })
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
