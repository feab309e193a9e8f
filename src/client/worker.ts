import type { EventEmitter } from 'node:events'
import { FnbusError, invalidArgument } from '../errors.js'
import { envelope, parseFunctionName, Payload, PROTOCOL_VERSION, type Envelope, type FunctionAddress, type Invoke, type Result } from '../protocol/index.js'
import { errorMessage, invokeHandler, makeContext, type Handler, type HandlerOutcome } from '../runtime/handler.js'
import { ClockOffset, type Clock } from '../util/clock.js'
import { IdTable } from '../util/id-table.js'
import type { Caller } from './caller.js'
import type { Transport } from './transport.js'
import type { ClientServedFunction, ClientServeOptions } from './types.js'

const DEFAULT_CONCURRENCY = 8

interface Served {
  readonly fn: FunctionAddress
  readonly handler: Handler
  readonly concurrency: number
}

/** A handler running in this client; `done` is set by whoever waits for it to finish (close()). */
interface RunningInvocation {
  /** On the client's monotonic clock. */
  readonly expiresAt: number
  done: (() => void) | undefined
}

/** What a `result` envelope says besides its id: a value (with `fe` when the function failed) or a bus error. */
export type ResultFields = Omit<Result, 'v' | 't' | 'id'>

/**
 * The worker's side of the client: the functions it serves (registered again on every session), the invocations
 * the gateway hands it, their handlers' runs, and the answers.
 */
export class Worker {
  readonly #connection: Transport
  readonly #caller: Caller
  readonly #clock: Clock
  /** Turns the epoch `dl` of an invocation into the client's monotonic time as it arrives. */
  readonly #epochs: ClockOffset
  /** The client: warnings go out as its events, and it tells when the session drops. */
  readonly #events: EventEmitter
  readonly #served = new Map<string, Served>()
  /** Handlers running, with the deadline after which nobody waits for their answer. */
  readonly #running = new IdTable<RunningInvocation>()

  constructor (connection: Transport, caller: Caller, clock: Clock, events: EventEmitter) {
    this.#connection = connection
    this.#caller = caller
    this.#clock = clock
    this.#epochs = new ClockOffset(clock)
    this.#events = events
  }

  /** Serves `Service/function` until its close() or stopServing(); resolves once the gateway routes calls here. */
  async serve (name: string, handler: Handler, options: ClientServeOptions = {}): Promise<ClientServedFunction> {
    const fn = parseFunctionName(name)
    if (typeof handler !== 'function') throw invalidArgument('handler must be a function')
    const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw invalidArgument(`concurrency must be a positive integer, got ${concurrency}`)
    if (this.#served.has(fn.name)) throw invalidArgument(`${fn.name} is already served by this client`)
    const served: Served = { fn, handler, concurrency }
    this.#served.set(fn.name, served)
    try {
      await this.#register(served)
    } catch (err) {
      this.#served.delete(fn.name)
      throw err
    }
    return { name: fn.name, close: () => this.#unserve(served) }
  }

  /** A new session: every function served is registered on it. */
  registerAll (): void {
    for (const served of this.#served.values()) {
      this.#register(served).catch(err => this.#events.emit('warning', err))
    }
  }

  /** Stops serving every function (calls in flight go on). */
  async stopServing (): Promise<void> {
    const served = [...this.#served.values()]
    await Promise.allSettled(served.map(s => this.#unserve(s)))
  }

  /**
   * Waits for running handlers to answer, while their answers can still reach the gateway: at most until the
   * last deadline, and not past a disconnection (the gateway has failed those calls already).
   */
  async settleRunning (): Promise<void> {
    if (this.#running.size === 0 || this.#connection.welcome === undefined) return
    let lastDeadline = 0
    for (const running of this.#running.values()) lastDeadline = Math.max(lastDeadline, running.expiresAt)
    const finished = Promise.all(this.#running.values().map(running => new Promise<void>(resolve => { running.done = resolve })))
    let timer: NodeJS.Timeout | undefined
    let onDisconnect: (() => void) | undefined
    await Promise.race([
      finished,
      new Promise<void>(resolve => { timer = setTimeout(resolve, Math.max(lastDeadline - this.#clock.now(), 0)) }),
      new Promise<void>(resolve => { onDisconnect = resolve; this.#events.once('disconnect', resolve) }),
    ])
    clearTimeout(timer)
    if (onDisconnect !== undefined) this.#events.off('disconnect', onDisconnect)
  }

  /** An invocation from the gateway: runs its handler, and answers with its outcome. */
  invoke (invoke: Invoke): void {
    const epoch = this.#connection.epoch
    this.run(invoke, fields => this.#answer(epoch, invoke.id, fields))
  }

  /** Whether this client serves `name` (a direct-path lease for it is taken only then). */
  serves (name: string): boolean {
    return this.#served.has(name)
  }

  /**
   * Runs an invocation, from the gateway or from a caller's thread on the direct path (direct-worker.ts), and hands
   * `answer` what the gateway would be sent: the function's answer or a bus error.
   */
  run (invoke: Pick<Invoke, 'fn' | 'rid' | 'dl' | 'it' | 'ctx' | 'pk' | 'p'>, answer: (fields: ResultFields) => void): void {
    const served = this.#served.get(invoke.fn)
    if (served === undefined) {
      answer({ code: 'FNBUS_FUNCTION_NOT_FOUND', msg: `${invoke.fn} is not served by ${this.#connection.clientId}` })
      return
    }
    let event: unknown
    try {
      event = Payload.fromWire(invoke.pk, invoke.p).value
    } catch (err) {
      answer({ code: (err as FnbusError).code, msg: (err as FnbusError).message })
      return
    }
    // the gateway's epoch deadline, into this client's monotonic time as it arrives
    const expiresAt = this.#epochs.toMonotonic(invoke.dl, this.#clock.now())
    const context = makeContext({
      requestId: invoke.rid,
      invokerContext: invoke.ctx ?? {},
      serviceName: served.fn.serviceName,
      functionName: served.fn.functionName,
      invocationType: invoke.it,
      deadline: invoke.dl,
    }, { expiresAt, clock: this.#clock })
    const running: RunningInvocation = { expiresAt, done: undefined }
    const runningId = this.#running.add(running)
    invokeHandler(served.handler, event, context, outcome => {
      this.#running.delete(runningId)
      running.done?.()
      answer(this.#outcomeFields(outcome))
    })
  }

  #register (served: Served): Promise<Envelope> {
    return this.#caller.request(true, id => envelope({ t: 'reg', id, fn: served.fn.name, conc: served.concurrency }))
  }

  async #unserve (served: Served): Promise<void> {
    if (this.#served.get(served.fn.name) !== served) return
    this.#served.delete(served.fn.name)
    if (this.#connection.welcome === undefined) return // not registered on any live session
    // not resent after a disconnection: the new session never had the registration
    await this.#caller.request(false, id => envelope({ t: 'unreg', id, fn: served.fn.name }))
  }

  #outcomeFields (outcome: HandlerOutcome): ResultFields {
    let result: Payload
    try {
      result = Payload.of(outcome.value)
      const limit = this.#connection.welcome?.maxPayload ?? Infinity
      if (result.byteLength > limit) {
        return { code: 'FNBUS_PAYLOAD_TOO_LARGE', msg: `the function's answer of ${result.byteLength} bytes exceeds the gateway's limit of ${limit}` }
      }
    } catch (err) {
      return { fe: 'Unhandled', pk: Payload.of('').kind, p: Buffer.from(`the function's answer cannot be encoded: ${errorMessage(err)}`) }
    }
    return { fe: outcome.functionError, pk: result.kind, p: result.bytes }
  }

  #answer (epoch: number, id: number, fields: ResultFields): void {
    // a result for a session that has since dropped would be ignored by the gateway: it failed the call already
    if (epoch !== this.#connection.epoch || this.#connection.welcome === undefined) return
    this.#connection.send({ v: PROTOCOL_VERSION, t: 'result', id, fe: fields.fe, pk: fields.pk, p: fields.p, code: fields.code, msg: fields.msg })
  }
}
