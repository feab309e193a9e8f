import { FnbusError, FunctionError } from '../errors.js'
import type { CallerPort, Delivery, Dispatcher, Outcome, WorkerPort } from '../dispatcher/index.js'
import { Payload } from '../protocol/index.js'
import { makeContext, runHandler, type Handler } from './handler.js'

/** A handler served inside the gateway process: calls reach it without a socket hop or a payload copy. */
export class InProcessWorker implements WorkerPort {
  readonly label = 'in-process'

  constructor (readonly dispatcher: Dispatcher, readonly handler: Handler) {}

  deliver (delivery: Delivery): void {
    void this.#run(delivery)
  }

  async #run (delivery: Delivery): Promise<void> {
    let event: unknown
    try {
      event = delivery.payload.value
    } catch (err) {
      this.dispatcher.complete(delivery.deliveryId, this, { ok: false, error: err as FnbusError })
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
    const outcome = await runHandler(this.handler, event, context)
    this.dispatcher.complete(delivery.deliveryId, this, { ok: true, functionError: outcome.functionError, payload: Payload.of(outcome.value) })
  }
}

/** An in-process call: the outcome resolves a promise. */
export class InProcessCaller implements CallerPort {
  readonly label = 'in-process'
  readonly alive = true
  readonly outcome: Promise<Outcome>
  #resolve!: (outcome: Outcome) => void

  constructor () {
    this.outcome = new Promise(resolve => { this.#resolve = resolve })
  }

  settle (outcome: Outcome): void {
    this.#resolve(outcome)
  }
}

/** The promise API's view of an outcome: the function's value, or a coded error. */
export function valueOf (outcome: Outcome): unknown {
  if (!outcome.ok) throw outcome.error
  if (outcome.functionError !== undefined) throw new FunctionError(outcome.functionError === 'Handled', outcome.payload.value)
  return outcome.payload.value
}
