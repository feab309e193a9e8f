import { FnbusError, FunctionError } from '../errors.js'
import type { CallerPort, CallRequest, Delivery, Dispatcher, Outcome, WorkerPort } from '../dispatcher/index.js'
import { Payload, type FunctionAddress, type FunctionErrorKind } from '../protocol/index.js'
import { HandlerRun, newContext, type Handler } from './handler.js'

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
      // a copy where the value could be changed: the handler cannot reach into the caller's object (Payload.ownValue)
      event = delivery.payload.ownValue
    } catch (err) {
      void RESOLVED.then(() => this.dispatcher.complete(delivery.deliveryId, this, { ok: false, error: err as FnbusError }))
      return
    }
    const fn = delivery.fn
    const context = newContext(delivery.requestId, delivery.context ?? {}, fn.serviceName, fn.functionName, delivery.type, delivery.deadline,
      delivery.expiresAt, this.dispatcher.clock)
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
    // call inside this one, and so on down the stack. It completes on the microtask queue instead (through a resolved
    // promise: Node's queueMicrotask makes an AsyncResource per call, measured ~85 ns more).
    // (complete() does not throw: the dispatcher keeps a port's failures in)
    if (this.delivering) void RESOLVED.then(() => this.complete())
    else this.complete()
  }

  complete (): void {
    this.worker.dispatcher.complete(this.delivery.deliveryId, this.worker, new ValueOutcome(this.functionError, this.value))
  }
}

/**
 * An in-process handler's answer: the value itself, wrapped as a Payload only when something asks for one (an
 * in-process caller reads the value, a remote one or the store the payload's bytes).
 */
class ValueOutcome {
  readonly ok = true
  #payload: Payload | undefined = undefined

  constructor (readonly functionError: FunctionErrorKind | undefined, readonly value: unknown) {}

  get payload (): Payload {
    if (this.#payload === undefined) this.#payload = Payload.of(this.value)
    return this.#payload
  }
}

/**
 * An in-process call: both the request the dispatcher takes and the caller it settles, one object per call. The
 * bus fills in the request's fields (`prepare`) once the name parsed and the policy admitted the call.
 */
abstract class InProcessCall implements CallRequest, CallerPort {
  readonly alive = true
  fn: FunctionAddress = NO_FUNCTION
  readonly type = 'Sync'
  payload: Payload = NO_PAYLOAD
  context: Readonly<Record<string, unknown>> | undefined = undefined
  timeoutMs: number | undefined = undefined
  waitForWorkerMs: number | undefined = undefined
  identity: string | undefined = undefined

  prepare (fn: FunctionAddress, payload: unknown, options: InProcessCallOptions): this {
    this.fn = fn
    this.payload = Payload.of(payload)
    this.context = options.context
    this.timeoutMs = options.timeout
    this.waitForWorkerMs = options.waitForWorker
    this.identity = options.identity
    return this
  }

  abstract settle (outcome: Outcome): void
}

/** What an in-process caller may ask for (the bus' InvokeOptions). */
export interface InProcessCallOptions {
  readonly context?: Record<string, unknown>
  readonly timeout?: number
  readonly waitForWorker?: number
  readonly identity?: string
}

/** Runs a function on the microtask queue, as queueMicrotask does, without its per-call AsyncResource. */
const RESOLVED = Promise.resolve()

const NO_FUNCTION: FunctionAddress = Object.freeze({ serviceName: '', functionName: '', name: '' })
const NO_PAYLOAD = Payload.of(undefined)

/** An in-process call whose outcome goes to a callback (which resolves the caller's promise). */
export class InProcessCaller extends InProcessCall {
  readonly label = 'in-process'

  constructor (readonly settle: (outcome: Outcome) => void) {
    super()
  }
}

/** An in-process call of the promise API: resolves with the function's value, rejects with a coded error. */
export class InProcessValueCaller extends InProcessCall {
  constructor (readonly resolve: (value: unknown) => void, readonly reject: (err: unknown) => void) {
    super()
  }

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
  const value = outcome instanceof ValueOutcome ? outcome.value : outcome.payload.value
  if (outcome.functionError !== undefined) throw new FunctionError(outcome.functionError === 'Handled', value)
  return value
}
