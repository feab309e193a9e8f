import type { FunctionErrorKind, InvocationType } from '../protocol/index.js'
import { systemClock, type Clock } from '../util/clock.js'

/** What a function's handler receives as its second argument (Link IoT Edge's and Greengrass' shape). */
export interface InvocationContext {
  /** The invocation's id; for Async calls, the `invocationId` the caller got. */
  readonly requestId: string
  /** The caller's invoker context, decoded; `{}` when none. */
  readonly invokerContext: Readonly<Record<string, unknown>>
  readonly serviceName: string
  readonly functionName: string
  readonly invocationType: InvocationType
  /** Epoch ms after which the caller no longer waits. */
  readonly deadline: number
  getRemainingTimeInMillis (): number
  /** The same as `invokerContext`: what Greengrass and Lambda functions read as `context.clientContext`. */
  readonly clientContext?: Readonly<Record<string, unknown>>
}

export type Callback = (err?: unknown, result?: unknown) => void
export type Handler = (event: any, context: InvocationContext, callback: Callback) => unknown

export interface HandlerOutcome {
  readonly functionError?: FunctionErrorKind
  /** The return value, or the error's message when the function failed. */
  readonly value: unknown
}

/**
 * The context a handler gets: its data as own enumerable fields (what a handler that returns or logs its context
 * shows) and `getRemainingTimeInMillis` on the prototype. A class, so every invocation's context has one shape and
 * costs one allocation. The time left is counted on a monotonic clock, from when the invocation arrived: a wall
 * clock set meanwhile does not change it.
 */
class Context implements InvocationContext {
  readonly requestId: string
  readonly invokerContext: Readonly<Record<string, unknown>>
  readonly serviceName: string
  readonly functionName: string
  readonly invocationType: InvocationType
  readonly deadline: number
  /** `deadline` on the monotonic clock of `#clock`. */
  readonly #expiresAt: number
  readonly #clock: Clock

  constructor (requestId: string, invokerContext: Readonly<Record<string, unknown>>, serviceName: string, functionName: string, invocationType: InvocationType,
    deadline: number, expiresAt: number, clock: Clock) {
    this.requestId = requestId
    this.invokerContext = invokerContext
    this.serviceName = serviceName
    this.functionName = functionName
    this.invocationType = invocationType
    this.deadline = deadline
    this.#expiresAt = expiresAt
    this.#clock = clock
  }

  getRemainingTimeInMillis (): number {
    return Math.max(Math.round(this.#expiresAt - this.#clock.now()), 0)
  }

  /** Greengrass' and Lambda's name for the caller's context (its `ClientContext`, decoded): the invoker context. */
  get clientContext (): Readonly<Record<string, unknown>> {
    return this.invokerContext
  }
}

/**
 * `expiry`: when the invocation expires on a monotonic clock (`fields.deadline` converted as it arrived). Without
 * it, converted now, on the system's.
 */
export function makeContext (fields: Omit<InvocationContext, 'getRemainingTimeInMillis'>, expiry?: { readonly expiresAt: number, readonly clock: Clock }): InvocationContext {
  const clock = expiry?.clock ?? systemClock
  const expiresAt = expiry?.expiresAt ?? clock.now() + (fields.deadline - clock.epoch())
  return new Context(fields.requestId, fields.invokerContext, fields.serviceName, fields.functionName, fields.invocationType, fields.deadline, expiresAt, clock)
}

/** `makeContext` without the object of fields, for the in-process path: `expiresAt` on `clock`'s monotonic time. */
export function newContext (requestId: string, invokerContext: Readonly<Record<string, unknown>>, serviceName: string, functionName: string, invocationType: InvocationType,
  deadline: number, expiresAt: number, clock: Clock): InvocationContext {
  return new Context(requestId, invokerContext, serviceName, functionName, invocationType, deadline, expiresAt, clock)
}

/**
 * Runs one invocation of a handler written either way: `handler(event, context, callback)` or
 * `async handler(event, context)`. Calling back with an error is a Handled function error; throwing or
 * rejecting is Unhandled. Both carry the error's message. Never rejects.
 */
export function runHandler (handler: Handler, event: unknown, context: InvocationContext): Promise<HandlerOutcome> {
  return new Promise<HandlerOutcome>(resolve => invokeHandler(handler, event, context, resolve))
}

/**
 * One invocation of a handler, for the hot paths: the object that receives its outcome, exactly once, through
 * `finished` (at once when the handler answered synchronously, never from inside a throw of `finished` itself).
 * A subclass carries what the caller needs to complete the call, so running a handler allocates no closures of
 * fnbus' own beyond the handler's callback (and, for a promise, its two reactions).
 */
export abstract class HandlerRun {
  settled = false

  /** The outcome: `functionError` undefined and the return value, or the kind of failure and the error's message. */
  protected abstract finished (functionError: FunctionErrorKind | undefined, value: unknown): void

  settle (functionError: FunctionErrorKind | undefined, value: unknown): void {
    if (this.settled) return
    this.settled = true
    this.finished(functionError, value)
  }

  /** Calls `handler` and arranges for its outcome to reach `finished`. */
  start (handler: Handler, event: unknown, context: InvocationContext): void {
    const callback: Callback = (err, result) => {
      if (err !== undefined && err !== null) this.settle('Handled', errorMessage(err))
      else this.settle(undefined, result)
    }
    let returned: unknown
    try {
      returned = handler(event, context, callback)
    } catch (err) {
      if (!this.settled) this.settle('Unhandled', errorMessage(err))
      return
    }
    if (isThenable(returned)) {
      returned.then(
        value => this.settle(undefined, value),
        (err: unknown) => this.settle('Unhandled', errorMessage(err))
      )
    } else if (handler.length < 3) {
      // a plain function that takes no callback answers with what it returns
      this.settle(undefined, returned)
    }
  }
}

/** A `HandlerRun` that hands its outcome to a function. */
class CallbackRun extends HandlerRun {
  constructor (readonly done: (outcome: HandlerOutcome) => void) {
    super()
  }

  protected finished (functionError: FunctionErrorKind | undefined, value: unknown): void {
    this.done(functionError === undefined ? { value } : { functionError, value })
  }
}

/**
 * `runHandler` without its promise: `done` is called exactly once with the outcome (at once when the handler
 * answered synchronously, never from inside a throw of `done` itself).
 */
export function invokeHandler (handler: Handler, event: unknown, context: InvocationContext, done: (outcome: HandlerOutcome) => void): void {
  new CallbackRun(done).start(handler, event, context)
}

export function errorMessage (err: unknown): string {
  if (err instanceof Error) return err.message
  if (typeof err === 'string') return err
  try {
    return JSON.stringify(err)
  } catch {
    return String(err)
  }
}

function isThenable (value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function'
}
