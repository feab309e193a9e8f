import { EventEmitter } from 'node:events'
import { errorFromWire, FnbusError, FunctionError, invalidArgument } from '../errors.js'
import {
  checkEventFilter, checkEventTopic, decodeMessage, encodeEventPayload, envelope, functionAddress, parseEnvelope, parseFunctionId,
  parseFunctionName, Payload, topicMatches, type Envelope,
} from '../protocol/index.js'
import type { Handler } from '../runtime/handler.js'
import { systemClock, type Clock } from '../util/clock.js'
import type { GatewayStatus } from '../plugins.js'
import { Caller, checkTimeout, decodeInvokerContext } from './caller.js'
import { createTransport } from './choose-transport.js'
import type { Transport } from './transport.js'
import {
  DEFAULT_TIMEOUT_MS, type ClientEventHandler, type ClientPublishOptions, type ClientServedFunction, type ClientServeOptions, type DeadLetter,
  type FCClientOptions, type InvocationResult, type InvokeAsyncOptions, type InvokeCallback, type InvokeFunctionParams, type InvokeOptions,
  type QueueCounts,
} from './types.js'
import { Worker } from './worker.js'
import { DirectCaller } from './direct-caller.js'
import { DirectWorker } from './direct-worker.js'
import { gatewaySide } from '../protocol/lease.js'

/** How long a broker that accepted the connection has to answer `hello` before the client says it is not fnbus. */
const DEFAULT_HANDSHAKE_MS = 3000

export { decodeInvokerContext } from './caller.js'
export { DEFAULT_TIMEOUT_MS, DEFAULT_URL } from './types.js'
export type * from './types.js'

/**
 * The fnbus SDK: invoke functions (Link IoT Edge's `invokeFunction`, or promises), serve them, publish and
 * subscribe events. It connects at construction and reconnects by itself; calls made while disconnected wait
 * for the connection until their deadline, and a serving client registers its functions again on every
 * reconnection.
 *
 * Inside, three parts that change for different reasons: the transport (transport.ts: the connection, the session's
 * state, bus messages out and in; socket-transport.ts speaks MQTT on a socket itself, mqtt-transport.ts goes through
 * MQTT.js: choose-transport.ts picks one), the caller's side (caller.ts:
 * requests in flight and their deadlines) and the worker's side (worker.ts: functions served, handlers running).
 * This class holds the public surface, the events, and the session's steps that involve more than one of them.
 *
 * Events: `connect`, `disconnect`, `warning` (an error the gateway could not tie to a request).
 */
/** A Sync call's answer as `invoke` resolves it: the function's value, or its failure as a FunctionError. */
function replyValue (env: Envelope): unknown {
  if (env.t !== 'reply') throw new FnbusError('FNBUS_BAD_MESSAGE', `unexpected ${env.t} answer to a call`)
  const value = Payload.fromWire(env.pk, env.p).value
  if (env.fe !== undefined) throw new FunctionError(env.fe === 'Handled', value)
  return value
}

export class FCClient extends EventEmitter {
  readonly clientId: string
  readonly url: string
  readonly #connection: Transport
  readonly #caller: Caller
  readonly #worker: Worker
  readonly #timeout: number
  readonly #subscriptions = new Map<string, Set<ClientEventHandler>>()
  #readyWaiters: { resolve: () => void, reject: (err: FnbusError) => void }[] = []
  #closed: FnbusError | undefined
  /** The direct path's worker side, made on the first lease this client serves (a function thread's client only). */
  #directWorker: DirectWorker | undefined
  readonly #clock: Clock

  constructor (options: FCClientOptions = {}) {
    super()
    const clock = this.#clock = options.clock ?? systemClock
    // checked before anything connects
    this.#timeout = checkTimeout(options.timeout, DEFAULT_TIMEOUT_MS, 'timeout')
    this.#handshakeMs = checkTimeout(options.handshakeTimeout, DEFAULT_HANDSHAKE_MS, 'handshakeTimeout')
    this.#connection = createTransport(options, {
      subscribed: epoch => this.#onSubscribed(epoch),
      closed: (epoch, wasUp) => this.#onClosed(epoch, wasUp),
      inbox: payload => this.#onInbox(payload),
      message: (topic, payload, packet) => this.#onMessage(topic, payload, packet),
      warning: err => this.emit('warning', err),
      refused: err => this.#onFatal(err),
      side: message => this.#onSide(message),
    })
    this.clientId = this.#connection.clientId
    this.url = this.#connection.url
    this.#caller = new Caller(this.#connection, clock, this.#timeout)
    this.#worker = new Worker(this.#connection, this.#caller, clock, this)
  }

  /** Resolves once the bus session is up (connected, and the gateway answered `hello`). */
  ready (): Promise<void> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed)
    if (this.#connection.welcome !== undefined) return Promise.resolve()
    return new Promise((resolve, reject) => this.#readyWaiters.push({ resolve, reject }))
  }

  /** The gateway's limits, once connected. */
  get limits (): { readonly maxPayloadBytes: number, readonly maxFrameBytes: number } | undefined {
    const welcome = this.#connection.welcome
    return welcome === undefined ? undefined : { maxPayloadBytes: welcome.maxPayload, maxFrameBytes: welcome.maxFrame }
  }

  get connected (): boolean {
    return this.#connection.welcome !== undefined
  }

  /**
   * Link IoT Edge's call: `data` is `{ statusCode: 200, payload, functionError? }` for Sync,
   * `{ statusCode: 202, invocationId }` for Async. Returns a promise of `data` when no callback is given.
   */
  invokeFunction (params: InvokeFunctionParams): Promise<InvocationResult>
  invokeFunction (params: InvokeFunctionParams, callback: InvokeCallback): void
  invokeFunction (params: InvokeFunctionParams, callback?: InvokeCallback): Promise<InvocationResult> | void {
    const result = this.#invokeFunction(params)
    if (callback === undefined) return result
    result.then(data => callback(null, data), (err: FnbusError) => callback(err))
  }

  async #invokeFunction (params: InvokeFunctionParams): Promise<InvocationResult> {
    if (params === null || typeof params !== 'object') throw invalidArgument('invokeFunction expects an object of parameters')
    const fn = params.functionId !== undefined ? parseFunctionId(params.functionId) : functionAddress(params.serviceName, params.functionName)
    const type = params.invocationType ?? 'Sync'
    if (type !== 'Sync' && type !== 'Async') throw invalidArgument(`invocationType must be "Sync" or "Async", got ${JSON.stringify(type)}`)
    const context = decodeInvokerContext(params.invokerContext)
    const env = await this.#caller.call(fn, type, Payload.of(params.payload), {
      timeout: params.timeout, waitForWorker: params.waitForWorker, context, idempotencyKey: params.idempotencyKey,
    })
    if (env.t === 'accepted') return { statusCode: 202, invocationId: env.iid }
    if (env.t !== 'reply') throw new FnbusError('FNBUS_BAD_MESSAGE', `unexpected ${env.t} answer to a call`)
    const payload = Payload.fromWire(env.pk, env.p).value
    return env.fe === undefined ? { statusCode: 200, payload } : { statusCode: 200, payload, functionError: env.fe }
  }

  /** Invokes `Service/function` and resolves with its return value; a failed function rejects with FNBUS_FUNCTION_ERROR. */
  invoke (name: string, payload?: unknown, options: InvokeOptions = {}): Promise<unknown> {
    // a promise chain, not an async function: one frame and one promise fewer per call (the hot path of every caller)
    let answer: Promise<Envelope>
    try {
      answer = this.#caller.call(parseFunctionName(name), 'Sync', Payload.of(payload), options)
    } catch (err) {
      return Promise.reject(err)
    }
    return answer.then(replyValue)
  }

  /** Stores an invocation of `Service/function` at the gateway; resolves with its id once it is durable there. */
  async invokeAsync (name: string, payload?: unknown, options: InvokeAsyncOptions = {}): Promise<{ invocationId: string }> {
    const env = await this.#caller.call(parseFunctionName(name), 'Async', Payload.of(payload), options)
    if (env.t !== 'accepted') throw new FnbusError('FNBUS_BAD_MESSAGE', `unexpected ${env.t} answer to an Async call`)
    return { invocationId: env.iid }
  }

  /** Cancels a stored Async invocation that has not started (FNBUS_INVOCATION_NOT_FOUND when none waits with that id). */
  async cancel (invocationId: string): Promise<void> {
    if (typeof invocationId !== 'string' || invocationId.length === 0) throw invalidArgument('invocationId must be a non-empty string')
    await this.#caller.request(false, id => envelope({ t: 'cancel', id, iid: invocationId }))
  }

  /** Operator view of stored Async invocations: counts per function (all functions, or one `Service/function`). */
  async queueCounts (fn?: string): Promise<QueueCounts[]> {
    return await this.#queue({ op: 'ls', fn }) as QueueCounts[]
  }

  /** Dead-lettered invocations with their last error, oldest first. */
  async deadLetters (fn?: string, limit = 100): Promise<DeadLetter[]> {
    return await this.#queue({ op: 'dead', fn, limit }) as DeadLetter[]
  }

  /** Sends dead-lettered invocations back to their queue: one by id, or all (of one function). Resolves with how many. */
  async retryDead (selector: { readonly invocationId: string } | { readonly fn?: string }): Promise<number> {
    const args = 'invocationId' in selector ? { op: 'retry' as const, iid: selector.invocationId } : { op: 'retry' as const, fn: selector.fn }
    return (await this.#queue(args) as { revived: number }).revived
  }

  /** Deletes dead-lettered invocations (of one function, or all). Resolves with how many. */
  async purgeDead (fn?: string): Promise<number> {
    return (await this.#queue({ op: 'purge', fn }) as { purged: number }).purged
  }

  /**
   * The gateway's status: functions with their workers and supervised instances, stored invocation counts, dead
   * letters, connections, health and uptime (a `GatewayStatus` from a gateway started by `createGateway`).
   */
  async status (): Promise<GatewayStatus> {
    const env = await this.#caller.request(false, id => envelope({ t: 'status', id }))
    if (env.t !== 'reply') throw new FnbusError('FNBUS_BAD_MESSAGE', `unexpected ${env.t} answer to a status request`)
    return Payload.fromWire(env.pk, env.p).value as GatewayStatus
  }

  /**
   * Starts new processes of a function the gateway supervises (after its module changed): each instance drains and
   * starts again. Resolves with how many instances. An operator's request (`manage` under a policy).
   */
  async restartFunction (name: string): Promise<{ restarted: number }> {
    parseFunctionName(name)
    const env = await this.#caller.request(false, id => envelope({ t: 'restart', id, fn: name }))
    if (env.t !== 'reply') throw new FnbusError('FNBUS_BAD_MESSAGE', `unexpected ${env.t} answer to a restart request`)
    return Payload.fromWire(env.pk, env.p).value as { restarted: number }
  }

  async #queue (args: { op: 'ls' | 'dead' | 'retry' | 'purge', fn?: string, iid?: string, limit?: number }): Promise<unknown> {
    if (args.fn !== undefined) parseFunctionName(args.fn)
    const env = await this.#caller.request(false, id => envelope({ t: 'queue', id, ...args }))
    if (env.t !== 'reply') throw new FnbusError('FNBUS_BAD_MESSAGE', `unexpected ${env.t} answer to a queue request`)
    return Payload.fromWire(env.pk, env.p).value
  }

  /** Serves `Service/function` from this process until `close()`. Resolves once the gateway routes calls here. */
  serve (name: string, handler: Handler, options: ClientServeOptions = {}): Promise<ClientServedFunction> {
    return this.#worker.serve(name, handler, options)
  }

  /** Publishes an event: strings as UTF-8, Buffers as they are, other values as JSON. */
  async publish (topic: string, payload: unknown, options: ClientPublishOptions = {}): Promise<void> {
    checkEventTopic(topic)
    const bytes = encodeEventPayload(payload)
    await this.#readyWithin(this.#timeout)
    const limit = this.#connection.welcome?.maxPayload ?? Infinity
    if (bytes.length > limit) throw new FnbusError('FNBUS_PAYLOAD_TOO_LARGE', `event payload of ${bytes.length} bytes exceeds the gateway's limit of ${limit}`)
    await this.#connection.publish(topic, bytes, { qos: options.qos ?? 0, retain: options.retain ?? false })
  }

  /** Subscribes to events matching `filter` (`+`, `#`). Resolves with a function that ends this subscription. */
  async subscribe (filter: string, handler: ClientEventHandler, options: { readonly qos?: 0 | 1 | 2 } = {}): Promise<() => Promise<void>> {
    checkEventFilter(filter)
    if (typeof handler !== 'function') throw invalidArgument('handler must be a function')
    let handlers = this.#subscriptions.get(filter)
    if (handlers === undefined) {
      handlers = new Set()
      this.#subscriptions.set(filter, handlers)
    }
    handlers.add(handler)
    if (handlers.size === 1) {
      try {
        await this.#readyWithin(this.#timeout)
        await this.#connection.subscribe(filter, options.qos ?? 0)
      } catch (err) {
        handlers.delete(handler)
        if (handlers.size < 1) this.#subscriptions.delete(filter)
        throw err
      }
    }
    return async () => {
      const current = this.#subscriptions.get(filter)
      if (current === undefined || !current.delete(handler) || current.size > 0) return
      this.#subscriptions.delete(filter)
      await this.#connection.unsubscribe(filter)
    }
  }

  /**
   * Stops serving (calls in flight finish and answer), fails calls still waiting with FNBUS_CLIENT_CLOSED, and
   * disconnects.
   */
  async close (): Promise<void> {
    if (this.#closed !== undefined) return
    await this.#worker.stopServing()
    await this.#worker.settleRunning()
    // answers of the last handlers may still wait for the end of the tick: they go out before the connection ends
    this.#connection.flush()
    this.#shutdown(new FnbusError('FNBUS_CLIENT_CLOSED', 'the client was closed'))
    await this.#connection.end(false)
  }

  #shutdown (reason: FnbusError): void {
    this.#closed = reason
    clearTimeout(this.#handshakeTimer)
    this.#connection.shutdown()
    this.#caller.shutdown(reason)
    this.#caller.direct?.shutdown(reason)
    this.#directWorker?.close()
    for (const waiter of this.#readyWaiters) waiter.reject(reason)
    this.#readyWaiters = []
  }

  async #readyWithin (ms: number): Promise<void> {
    if (this.#connection.welcome !== undefined) return
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        this.ready(),
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => reject(new FnbusError('FNBUS_TIMEOUT', `no connection to the gateway at ${this.url} within ${ms} ms`)), ms)
        }),
      ])
    } finally {
      clearTimeout(timer)
    }
  }

  // ---- the session: steps that involve the connection, the caller's side and the worker's side -----------------

  #onSubscribed (epoch: number): void {
    this.#caller.hello(epoch, env => this.#onWelcome(env, epoch), err => this.#onFatal(err))
    // An MQTT broker that is not fnbus (Mosquitto on 1883, where the default URL points) accepts the connection and
    // the inbox subscription and never answers: say so, rather than let every call wait out its deadline.
    clearTimeout(this.#handshakeTimer)
    const handshakeMs = this.#handshakeMs
    this.#handshakeTimer = setTimeout(() => {
      if (this.#connection.welcome !== undefined || this.#closed !== undefined) return
      this.emit('warning', new FnbusError('FNBUS_PROTOCOL_MISMATCH', `${this.url} accepted the MQTT connection but did not answer the fnbus handshake ` +
        `within ${handshakeMs} ms: it is an MQTT broker, not an fnbus gateway. Check the address (FNBUS_URL, --url): another broker ` +
        '(Mosquitto, say) often holds port 1883; start fnbus on another port (fnbus start --port 18830) and point FNBUS_URL at it'))
    }, handshakeMs)
    this.#handshakeTimer.unref?.()
  }

  #handshakeTimer: ReturnType<typeof setTimeout> | undefined
  readonly #handshakeMs: number

  #onWelcome (env: Envelope, epoch: number): void {
    if (env.t !== 'welcome' || !this.#connection.welcomed(env, epoch)) return
    clearTimeout(this.#handshakeTimer)
    // a thread's client says it knows the direct path (src/protocol/lease.ts); on a socket there is no side channel
    this.#connection.postSide?.({ t: 'lease-ready' })
    this.#worker.registerAll()
    this.#caller.sessionUp()
    for (const waiter of this.#readyWaiters) waiter.resolve()
    this.#readyWaiters = []
    this.emit('connect')
  }

  /** The gateway refused the session itself (protocol mismatch, refused credentials): nothing will work, so stop. */
  #onFatal (err: FnbusError): void {
    if (this.#closed !== undefined) return
    this.#shutdown(err)
    this.#connection.end(true).catch(noop)
  }

  #onClosed (epoch: number, wasUp: boolean): void {
    this.#caller.disconnected(epoch)
    this.#caller.direct?.disconnected()
    if (wasUp) this.emit('disconnect')
  }

  /** The gateway's word on the direct path (src/protocol/lease.ts): a lease granted, grown, revoked, or to serve. */
  #onSide (message: object): void {
    if (this.#closed !== undefined) return
    const grant = gatewaySide(message, process.getBuiltinModule('node:worker_threads').MessagePort)
    if (grant === undefined) {
      this.emit('warning', new FnbusError('FNBUS_BAD_MESSAGE', 'the gateway sent a side message this client does not know'))
      return
    }
    if (grant.t === 'lease-serve') {
      (this.#directWorker ??= new DirectWorker(this.#worker, () => this.#connection.welcome?.maxPayload ?? Infinity)).serve(grant)
      return
    }
    const direct = this.#caller.direct ??= new DirectCaller({
      clock: this.#clock,
      epoch: () => this.#connection.epoch,
      postSide: side => this.#connection.postSide?.(side),
      maxPayload: () => this.#connection.welcome?.maxPayload ?? Infinity,
    })
    if (grant.t === 'lease') direct.granted(grant)
    else if (grant.t === 'lease-grow') direct.grown(grant.id, grant.slots)
    else direct.revoked(grant.id)
  }

  #onMessage (topic: string, payload: Buffer, packet: { readonly qos: number, readonly retain: boolean }): void {
    for (const [filter, handlers] of this.#subscriptions) {
      if (!topicMatches(filter, topic)) continue
      for (const handler of handlers) {
        try {
          handler(topic, payload, { qos: packet.qos, retain: packet.retain })
        } catch (err) {
          this.emit('warning', err)
        }
      }
    }
  }

  #onInbox (bytes: Buffer): void {
    let raws: Record<string, unknown>[]
    try {
      raws = decodeMessage(bytes)
    } catch (err) {
      this.emit('warning', err)
      return
    }
    for (const raw of raws) {
      let env: Envelope
      try {
        env = parseEnvelope(raw)
      } catch (err) {
        this.emit('warning', err)
        continue
      }
      switch (env.t) {
        case 'invoke':
          this.#worker.invoke(env)
          break
        case 'error': {
          const error = errorFromWire(env.code, env.msg)
          if (!this.#caller.failed(env.id, error)) this.emit('warning', error)
          break
        }
        case 'welcome':
        case 'reply':
        case 'accepted':
        case 'ack':
          this.#caller.answered(env.id, env)
          break
        default:
          this.emit('warning', new FnbusError('FNBUS_BAD_MESSAGE', `the gateway sent an unexpected ${env.t} envelope`))
      }
    }
  }
}

function noop (): void {}
