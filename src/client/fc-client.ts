import { EventEmitter } from 'node:events'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { customAlphabet } from 'nanoid'
import { errorFromWire, FnbusError, FunctionError, invalidArgument } from '../errors.js'
import {
  checkContextArgument, checkEventFilter, checkEventTopic, checkIdempotencyKey, decodeMessage, encodeEventPayload, envelope, EnvelopeBatcher, functionAddress,
  inboxTopic, parseEnvelope, PROTOCOL_VERSION, parseFunctionId, parseFunctionName, Payload, topicMatches, UP_TOPIC,
  type Envelope, type EnvelopeFields, type FunctionAddress, type FunctionErrorKind, type InvocationType, type Invoke, type Result, type Welcome,
} from '../protocol/index.js'
import { errorMessage, invokeHandler, makeContext, type Handler, type HandlerOutcome } from '../runtime/handler.js'
import { clientIdStem, isValidIdentityName } from '../security/identity-names.js'
import { IdTable } from '../util/id-table.js'
import { readInbox } from './inbox-reader.js'
import { paddedDecimal } from '../util/decimal.js'
import { ClockOffset, systemClock, type Clock } from '../util/clock.js'
import { Deadlines, UNTIMED, type Timed } from '../util/deadlines.js'
import { VERSION } from '../version.js'
import type { GatewayStatus } from '../plugins.js'

export const DEFAULT_URL = 'mqtt://127.0.0.1:1883'
export const DEFAULT_TIMEOUT_MS = 30_000
const DEFAULT_CONCURRENCY = 8

/** CONNACK return codes of MQTT 3.1.1 that refuse who the client is: identifier rejected, bad credentials, not authorized. */
const REFUSED_CONNACK_CODES: ReadonlySet<number> = new Set([2, 4, 5])

const clientSuffix = customAlphabet('0123456789abcdefghijklmnopqrstuvwxyz', 16)
/** Digits of an automatic key's counter; past 10^12 calls a client takes a new random prefix. */
const AUTO_KEY_DIGITS = 12
const AUTO_KEY_LIMIT = 10 ** AUTO_KEY_DIGITS
const autoKeyNonce = customAlphabet('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz', 16)

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
  /** ms between reconnection attempts. Default 1000. */
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
  readonly fn: string
  readonly pending: number
  readonly inFlight: number
  readonly dead: number
}

export interface DeadLetter {
  readonly invocationId: string
  readonly fn: string
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

/** A request sent to the gateway (or waiting to be), answered by an envelope with its id. */
interface PendingRequest extends Timed {
  id: number
  /** Connection the request went out on; 0 while it waits for one. */
  epoch: number
  readonly build: (id: number, remainingMs: number) => Envelope
  /** On the client's monotonic clock. */
  readonly deadline: number
  /** Sync calls fail on disconnect (they may have run); Async calls (idempotent by key) and registrations are sent again. */
  readonly resend: boolean
  readonly resolve: (env: Envelope) => void
  readonly reject: (err: FnbusError) => void
}

interface Served {
  readonly fn: FunctionAddress
  readonly handler: Handler
  readonly concurrency: number
}

/**
 * The fnbus SDK: invoke functions (Link IoT Edge's `invokeFunction`, or promises), serve them, publish and
 * subscribe events. It connects at construction and reconnects by itself; calls made while disconnected wait
 * for the connection until their deadline, and a serving client registers its functions again on every
 * reconnection.
 *
 * Events: `connect`, `disconnect`, `warning` (an error the gateway could not tie to a request).
 */
export class FCClient extends EventEmitter {
  readonly clientId: string
  readonly url: string
  readonly #mqtt: MqttClient
  readonly #inbox: string
  readonly #outbox: EnvelopeBatcher
  readonly #timeout: number
  /**
   * The keys this client gives Async calls made without one: a random prefix of its own (95 bits) and a counter.
   * Ascending keys cost LevelDB less than random ones (its compactions rewrite fewer tables), measured here.
   */
  #autoKeyPrefix = `auto.${autoKeyNonce()}.`
  #autoKeys = 0
  #epoch = 0
  #welcome: Welcome | undefined
  /** Requests sent and not yet answered, by id (the table hands the ids out; see IdTable for why not a Map). */
  readonly #requests = new IdTable<PendingRequest>()
  /**
   * Every request's deadline on one timer (no timer per call). Unreferenced: while the client is open, MQTT.js' socket
   * or reconnection timer keeps the process alive.
   */
  readonly #deadlines: Deadlines<PendingRequest>
  readonly #clock: Clock
  /** Turns the epoch `dl` of an invocation into the client's monotonic time as it arrives. */
  readonly #epochs: ClockOffset
  /** Requests waiting for the session, in the order they were made. */
  readonly #waiting = new Set<PendingRequest>()
  readonly #served = new Map<string, Served>()
  /** Handlers running, with the deadline after which nobody waits for their answer. */
  readonly #running = new IdTable<RunningInvocation>()
  readonly #subscriptions = new Map<string, Set<ClientEventHandler>>()
  #readyWaiters: { resolve: () => void, reject: (err: FnbusError) => void }[] = []
  #closed: FnbusError | undefined

  constructor (options: FCClientOptions = {}) {
    super()
    this.#clock = options.clock ?? systemClock
    this.#epochs = new ClockOffset(this.#clock)
    this.#deadlines = new Deadlines<PendingRequest>(request => this.#expired(request), { unref: true, clock: this.#clock })
    this.url = options.url ?? process.env.FNBUS_URL ?? DEFAULT_URL
    const username = options.username ?? options.mqtt?.username ?? nonEmpty(process.env.FNBUS_USERNAME)
    const password = options.password ?? options.mqtt?.password ?? nonEmpty(process.env.FNBUS_PASSWORD)
    // the gateway accepts an identity only on client ids of its own form: pick one by default
    const stem = username !== undefined && isValidIdentityName(username) ? clientIdStem(username) + '.' : 'fnbus-'
    this.clientId = options.clientId ?? stem + clientSuffix()
    this.#inbox = inboxTopic(this.clientId)
    this.#timeout = checkTimeout(options.timeout, DEFAULT_TIMEOUT_MS, 'timeout')
    this.#mqtt = mqtt.connect(this.url, {
      protocolVersion: 4,
      clean: true,
      keepalive: 30,
      reconnectPeriod: options.reconnectPeriod ?? 1000,
      connectTimeout: 10_000,
      // our own queue holds calls while disconnected, each with its deadline
      queueQoSZero: false,
      // the page's own timers for the keep-alive: MQTT.js' default in a browser runs them in a Worker made from a
      // blob: URL, which a page's Content Security Policy (the dashboard's default-src 'self') refuses; in Node the
      // default is these already
      timerVariant: 'native',
      ...options.mqtt,
      ...tlsOptions(options),
      clientId: this.clientId,
      username,
      password,
    })
    // Every connection's socket is read from its first byte, so that the inbox's frames can be taken off it
    // (inbox-reader.ts): the first one was just built and has read nothing yet; reconnections build new ones.
    const onInbox = (payload: Buffer): void => { this.#onInbox(payload) }
    readInbox(this.#mqtt.stream, this.#inbox, onInbox)
    const internals = this.#mqtt as unknown as { streamBuilder: (client: MqttClient) => unknown }
    const buildStream = internals.streamBuilder
    internals.streamBuilder = client => {
      const stream = buildStream(client)
      readInbox(stream, this.#inbox, onInbox)
      return stream
    }
    // leave room under the gateway's frame limit for the topic and MQTT header
    this.#outbox = new EnvelopeBatcher(UP_TOPIC, frame => this.#writeFrame(frame),
      () => (this.#welcome?.maxFrame ?? 64 * 1024) - 1024)
    this.#mqtt.on('connect', () => this.#onConnect())
    this.#mqtt.on('close', () => this.#onClose())
    this.#mqtt.on('message', (topic, payload, packet) => this.#onMessage(topic, payload, packet))
    // MQTT.js reports refused and dropped connections here; it keeps reconnecting, and calls keep waiting
    this.#mqtt.on('error', err => this.#onConnectionError(err))
  }

  /** Resolves once the bus session is up (connected, and the gateway answered `hello`). */
  ready (): Promise<void> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed)
    if (this.#welcome !== undefined) return Promise.resolve()
    return new Promise((resolve, reject) => this.#readyWaiters.push({ resolve, reject }))
  }

  /** The gateway's limits, once connected. */
  get limits (): { readonly maxPayloadBytes: number, readonly maxFrameBytes: number } | undefined {
    const welcome = this.#welcome
    return welcome === undefined ? undefined : { maxPayloadBytes: welcome.maxPayload, maxFrameBytes: welcome.maxFrame }
  }

  get connected (): boolean {
    return this.#welcome !== undefined
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
    const env = await this.#call(fn, type, Payload.of(params.payload), {
      timeout: params.timeout, waitForWorker: params.waitForWorker, context, idempotencyKey: params.idempotencyKey,
    })
    if (env.t === 'accepted') return { statusCode: 202, invocationId: env.iid }
    if (env.t !== 'reply') throw new FnbusError('FNBUS_BAD_MESSAGE', `unexpected ${env.t} answer to a call`)
    const payload = Payload.fromWire(env.pk, env.p).value
    return env.fe === undefined ? { statusCode: 200, payload } : { statusCode: 200, payload, functionError: env.fe }
  }

  /** Invokes `Service/function` and resolves with its return value; a failed function rejects with FNBUS_FUNCTION_ERROR. */
  async invoke (name: string, payload?: unknown, options: InvokeOptions = {}): Promise<unknown> {
    const env = await this.#call(parseFunctionName(name), 'Sync', Payload.of(payload), options)
    if (env.t !== 'reply') throw new FnbusError('FNBUS_BAD_MESSAGE', `unexpected ${env.t} answer to a call`)
    const value = Payload.fromWire(env.pk, env.p).value
    if (env.fe !== undefined) throw new FunctionError(env.fe === 'Handled', value)
    return value
  }

  /** Stores an invocation of `Service/function` at the gateway; resolves with its id once it is durable there. */
  async invokeAsync (name: string, payload?: unknown, options: InvokeAsyncOptions = {}): Promise<{ invocationId: string }> {
    const env = await this.#call(parseFunctionName(name), 'Async', Payload.of(payload), options)
    if (env.t !== 'accepted') throw new FnbusError('FNBUS_BAD_MESSAGE', `unexpected ${env.t} answer to an Async call`)
    return { invocationId: env.iid }
  }

  /** Cancels a stored Async invocation that has not started (FNBUS_INVOCATION_NOT_FOUND when none waits with that id). */
  async cancel (invocationId: string): Promise<void> {
    if (typeof invocationId !== 'string' || invocationId.length === 0) throw invalidArgument('invocationId must be a non-empty string')
    await this.#request(this.#clock.now() + this.#timeout, false, id => envelope({ t: 'cancel', id, iid: invocationId }))
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
    const env = await this.#request(this.#clock.now() + this.#timeout, false, id => envelope({ t: 'status', id }))
    if (env.t !== 'reply') throw new FnbusError('FNBUS_BAD_MESSAGE', `unexpected ${env.t} answer to a status request`)
    return Payload.fromWire(env.pk, env.p).value as GatewayStatus
  }

  async #queue (args: { op: 'ls' | 'dead' | 'retry' | 'purge', fn?: string, iid?: string, limit?: number }): Promise<unknown> {
    if (args.fn !== undefined) parseFunctionName(args.fn)
    const env = await this.#request(this.#clock.now() + this.#timeout, false, id => envelope({ t: 'queue', id, ...args }))
    if (env.t !== 'reply') throw new FnbusError('FNBUS_BAD_MESSAGE', `unexpected ${env.t} answer to a queue request`)
    return Payload.fromWire(env.pk, env.p).value
  }

  #call (fn: FunctionAddress, type: InvocationType, payload: Payload, options: InvokeOptions & { readonly idempotencyKey?: string }): Promise<Envelope> {
    const timeout = checkTimeout(options.timeout, this.#timeout, 'timeout')
    const waitForWorker = options.waitForWorker === undefined ? undefined : checkTimeout(options.waitForWorker, 0, 'waitForWorker', 0)
    // the gateway's rules, checked here so that a bad argument fails its own call (the size is the gateway's to judge)
    checkContextArgument(options.context)
    checkIdempotencyKey(options.idempotencyKey)
    const bytes = payload.bytes
    // An Async call always carries a key, so sending it again after a dropped connection cannot store it twice.
    const async = type === 'Async'
    const idempotencyKey = async ? options.idempotencyKey ?? this.#autoKey() : undefined
    return this.#request(this.#clock.now() + timeout, async, (id, remainingMs) => {
      const limit = this.#welcome?.maxPayload ?? Infinity
      if (bytes.length > limit) {
        throw new FnbusError('FNBUS_PAYLOAD_TOO_LARGE', `payload of ${bytes.length} bytes exceeds the gateway's limit of ${limit}`)
      }
      // a literal envelope on the hot path: one object of a fixed shape, no spread
      return { v: PROTOCOL_VERSION, t: 'call', id, fn: fn.name, it: type, to: remainingMs, ww: waitForWorker, ctx: options.context, ik: idempotencyKey, pk: payload.kind, p: bytes }
    })
  }

  #autoKey (): string {
    if (++this.#autoKeys === AUTO_KEY_LIMIT) {
      this.#autoKeyPrefix = `auto.${autoKeyNonce()}.`
      this.#autoKeys = 1
    }
    return this.#autoKeyPrefix + paddedDecimal(this.#autoKeys, AUTO_KEY_DIGITS)
  }

  /** Serves `Service/function` from this process until `close()`. Resolves once the gateway routes calls here. */
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

  #register (served: Served): Promise<Envelope> {
    return this.#request(this.#clock.now() + this.#timeout, true, id => envelope({ t: 'reg', id, fn: served.fn.name, conc: served.concurrency }))
  }

  async #unserve (served: Served): Promise<void> {
    if (this.#served.get(served.fn.name) !== served) return
    this.#served.delete(served.fn.name)
    if (this.#welcome === undefined) return // not registered on any live session
    // not resent after a disconnection: the new session never had the registration
    await this.#request(this.#clock.now() + this.#timeout, false, id => envelope({ t: 'unreg', id, fn: served.fn.name }))
  }

  /** Publishes an event: strings as UTF-8, Buffers as they are, other values as JSON. */
  async publish (topic: string, payload: unknown, options: ClientPublishOptions = {}): Promise<void> {
    checkEventTopic(topic)
    const bytes = encodeEventPayload(payload)
    await this.#readyWithin(this.#timeout)
    const limit = this.#welcome?.maxPayload ?? Infinity
    if (bytes.length > limit) throw new FnbusError('FNBUS_PAYLOAD_TOO_LARGE', `event payload of ${bytes.length} bytes exceeds the gateway's limit of ${limit}`)
    await new Promise<void>((resolve, reject) => {
      this.#mqtt.publish(topic, bytes, { qos: options.qos ?? 0, retain: options.retain ?? false }, err => {
        if (err) reject(new FnbusError('FNBUS_DISCONNECTED', `publish failed: ${err.message}`, { cause: err }))
        else resolve()
      })
    })
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
        await this.#subscribeFilter(filter, options.qos ?? 0)
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
      await new Promise<void>(resolve => this.#mqtt.unsubscribe(filter, () => resolve()))
    }
  }

  async #subscribeFilter (filter: string, qos: 0 | 1 | 2): Promise<void> {
    await this.#readyWithin(this.#timeout)
    await new Promise<void>((resolve, reject) => {
      this.#mqtt.subscribe(filter, { qos }, (err, granted) => {
        // MQTT.js reports a refused subscription (SUBACK 0x80) as an error carrying the SUBACK
        const refused = (granted?.[0]?.qos as number | undefined) === 128 || (err as { packet?: { cmd?: string } } | null)?.packet?.cmd === 'suback'
        if (refused) reject(new FnbusError('FNBUS_NOT_AUTHORIZED', `the gateway refused the subscription to ${filter}`))
        else if (err) reject(new FnbusError('FNBUS_DISCONNECTED', `subscribe failed: ${err.message}`, { cause: err }))
        else resolve()
      })
    })
  }

  /**
   * Stops serving (calls in flight finish and answer), fails calls still waiting with FNBUS_CLIENT_CLOSED, and
   * disconnects.
   */
  async close (): Promise<void> {
    if (this.#closed !== undefined) return
    const served = [...this.#served.values()]
    await Promise.allSettled(served.map(s => this.#unserve(s)))
    await this.#settleRunning()
    // answers of the last handlers may still wait for the end of the tick: they go out before the connection ends
    this.#outbox.flush()
    this.#shutdown(new FnbusError('FNBUS_CLIENT_CLOSED', 'the client was closed'))
    await new Promise<void>(resolve => this.#mqtt.end(false, {}, () => resolve()))
  }

  /**
   * Waits for running handlers to answer, while their answers can still reach the gateway: at most until the
   * last deadline, and not past a disconnection (the gateway has failed those calls already).
   */
  async #settleRunning (): Promise<void> {
    if (this.#running.size === 0 || this.#welcome === undefined) return
    let lastDeadline = 0
    for (const running of this.#running.values()) lastDeadline = Math.max(lastDeadline, running.expiresAt)
    const finished = Promise.all(this.#running.values().map(running => new Promise<void>(resolve => { running.done = resolve })))
    let timer: NodeJS.Timeout | undefined
    let onDisconnect: (() => void) | undefined
    await Promise.race([
      finished,
      new Promise<void>(resolve => { timer = setTimeout(resolve, Math.max(lastDeadline - this.#clock.now(), 0)) }),
      new Promise<void>(resolve => { onDisconnect = resolve; this.once('disconnect', resolve) }),
    ])
    clearTimeout(timer)
    if (onDisconnect !== undefined) this.off('disconnect', onDisconnect)
  }

  #shutdown (reason: FnbusError): void {
    this.#closed = reason
    this.#welcome = undefined
    for (const request of [...this.#requests.values(), ...this.#waiting]) this.#fail(request, reason)
    for (const waiter of this.#readyWaiters) waiter.reject(reason)
    this.#readyWaiters = []
  }

  async #readyWithin (ms: number): Promise<void> {
    if (this.#welcome !== undefined) return
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

  /** Sends a request now if the session is up, else when it is, as long as its deadline allows. */
  #request (deadline: number, resend: boolean, build: PendingRequest['build']): Promise<Envelope> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed)
    return new Promise<Envelope>((resolve, reject) => {
      // the Timed fields written out: one object literal of a fixed shape per call, no spread
      const request: PendingRequest = {
        id: 0, epoch: 0, build, deadline, resend, resolve, reject,
        deadlineAt: 0, deadlinePrev: undefined, deadlineNext: undefined, deadlineLane: undefined,
      }
      this.#deadlines.set(request, deadline)
      if (this.#welcome !== undefined) this.#send(request)
      else this.#waiting.add(request)
    })
  }

  #send (request: PendingRequest): void {
    const id = this.#requests.add(request)
    let env: Envelope
    try {
      env = request.build(id, Math.max(Math.round(request.deadline - this.#clock.now()), 1))
    } catch (err) {
      this.#requests.delete(id)
      this.#fail(request, err as FnbusError)
      return
    }
    request.id = id
    request.epoch = this.#epoch
    this.#publishEnvelope(env)
  }

  #expired (request: PendingRequest): void {
    this.#fail(request, new FnbusError('FNBUS_TIMEOUT', request.epoch === 0
      ? `no connection to the gateway at ${this.url} before the deadline`
      : 'the gateway did not answer before the deadline'))
  }

  #fail (request: PendingRequest, err: FnbusError): void {
    this.#deadlines.clear(request)
    this.#waiting.delete(request)
    if (request.id !== 0) this.#requests.delete(request.id)
    request.reject(err)
  }

  #publishEnvelope (env: Envelope): void {
    this.#outbox.add(env)
  }

  /**
   * Writes a finished QoS 0 PUBLISH to `$fn/up` on MQTT.js' socket, past its publish machinery (packet object,
   * generation in pieces, its outgoing store): a QoS 0 message needs none of it. MQTT.js writes each packet of its
   * own synchronously, so the frames cannot interleave with its own. Envelopes are only sent while the session is up;
   * a frame flushed after the connection dropped is dropped, as MQTT.js drops QoS 0 messages (`queueQoSZero: false`),
   * and the requests it carried are failed or sent again by #onClose.
   */
  #writeFrame (frame: Buffer): void {
    const stream = this.#mqtt.stream as { writable?: boolean, destroyed?: boolean, write: (chunk: Buffer) => boolean } | undefined
    if (!this.#mqtt.connected || stream === undefined || stream.destroyed === true || stream.writable === false) return
    stream.write(frame)
  }

  #onConnect (): void {
    const epoch = ++this.#epoch
    // MQTT.js opens its socket with Nagle's algorithm on: small calls and answers would wait for it
    const stream = this.#mqtt.stream as { setNoDelay?: (noDelay: boolean) => void } | undefined
    stream?.setNoDelay?.(true)
    this.#mqtt.subscribe(this.#inbox, { qos: 0 }, (err) => {
      if (err !== null && err !== undefined) return // the connection dropped; the next 'connect' starts again
      if (epoch !== this.#epoch) return
      const hello: PendingRequest = {
        id: 0,
        epoch,
        build: id => envelope({ t: 'hello', id, sdk: `fnbus-js/${VERSION}` }),
        deadline: Infinity,
        resend: true,
        resolve: env => this.#onWelcome(env, epoch),
        reject: err => this.#onFatal(err),
        ...UNTIMED,
      }
      const id = hello.id = this.#requests.add(hello)
      this.#publishEnvelope(envelope({ t: 'hello', id, sdk: `fnbus-js/${VERSION}` }))
    })
  }

  #onWelcome (env: Envelope, epoch: number): void {
    if (env.t !== 'welcome' || epoch !== this.#epoch) return
    this.#welcome = env
    for (const served of this.#served.values()) {
      this.#register(served).catch(err => this.emit('warning', err))
    }
    const waiting = [...this.#waiting]
    this.#waiting.clear()
    for (const request of waiting) this.#send(request)
    for (const waiter of this.#readyWaiters) waiter.resolve()
    this.#readyWaiters = []
    this.emit('connect')
  }

  /**
   * A refused CONNECT (bad credentials, a client id that is not the identity's, anonymous not allowed) is final:
   * MQTT.js stops reconnecting, so every call fails now with FNBUS_NOT_AUTHORIZED instead of waiting for nothing.
   */
  #onConnectionError (err: Error & { code?: unknown }): void {
    if (typeof err.code === 'number' && REFUSED_CONNACK_CODES.has(err.code)) {
      const refusal = new FnbusError('FNBUS_NOT_AUTHORIZED', `the gateway at ${this.url} refused the connection: ${err.message.replace(/^Connection refused: /, '')}`, { cause: err })
      this.emit('warning', refusal)
      this.#onFatal(refusal)
      return
    }
    this.emit('warning', err)
  }

  /** The gateway refused the session itself (protocol mismatch): nothing will work, so stop. */
  #onFatal (err: FnbusError): void {
    if (this.#closed !== undefined) return
    this.#shutdown(err)
    this.#mqtt.end(true)
  }

  #onClose (): void {
    this.#outbox.clear()
    const wasUp = this.#welcome !== undefined
    this.#welcome = undefined
    const epoch = this.#epoch
    for (const request of this.#requests.values()) {
      if (request.epoch !== epoch) continue
      this.#requests.delete(request.id)
      if (request.deadline === Infinity) continue // the session's hello: the next connection sends its own
      if (request.resend) {
        request.id = 0
        request.epoch = 0
        this.#waiting.add(request)
      } else {
        this.#fail(request, new FnbusError('FNBUS_DISCONNECTED', 'the connection to the gateway dropped while the call was in flight; it may or may not have run'))
      }
    }
    if (wasUp) this.emit('disconnect')
  }

  #onMessage (topic: string, payload: Buffer, packet: { qos: number, retain: boolean }): void {
    if (topic === this.#inbox) {
      this.#onInbox(payload)
      return
    }
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
          this.#onInvoke(env)
          break
        case 'error': {
          const error = errorFromWire(env.code, env.msg)
          const request = this.#requests.get(env.id)
          if (request !== undefined) this.#fail(request, error)
          else this.emit('warning', error)
          break
        }
        case 'welcome':
        case 'reply':
        case 'accepted':
        case 'ack': {
          const request = this.#requests.get(env.id)
          if (request === undefined) break // answered after its deadline
          this.#requests.delete(env.id)
          this.#deadlines.clear(request)
          request.resolve(env)
          break
        }
        default:
          this.emit('warning', new FnbusError('FNBUS_BAD_MESSAGE', `the gateway sent an unexpected ${env.t} envelope`))
      }
    }
  }

  #onInvoke (invoke: Invoke): void {
    const epoch = this.#epoch
    const served = this.#served.get(invoke.fn)
    if (served === undefined) {
      this.#answer(epoch, invoke.id, { code: 'FNBUS_FUNCTION_NOT_FOUND', msg: `${invoke.fn} is not served by ${this.clientId}` })
      return
    }
    let event: unknown
    try {
      event = Payload.fromWire(invoke.pk, invoke.p).value
    } catch (err) {
      this.#answer(epoch, invoke.id, { code: (err as FnbusError).code, msg: (err as FnbusError).message })
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
      this.#answerOutcome(epoch, invoke.id, outcome)
    })
  }

  #answerOutcome (epoch: number, id: number, outcome: HandlerOutcome): void {
    let result: Payload
    try {
      result = Payload.of(outcome.value)
      const limit = this.#welcome?.maxPayload ?? Infinity
      if (result.byteLength > limit) {
        this.#answer(epoch, id, { code: 'FNBUS_PAYLOAD_TOO_LARGE', msg: `the function's answer of ${result.byteLength} bytes exceeds the gateway's limit of ${limit}` })
        return
      }
    } catch (err) {
      this.#answer(epoch, id, { fe: 'Unhandled', pk: Payload.of('').kind, p: Buffer.from(`the function's answer cannot be encoded: ${errorMessage(err)}`) })
      return
    }
    this.#answer(epoch, id, { fe: outcome.functionError, pk: result.kind, p: result.bytes })
  }

  #answer (epoch: number, id: number, fields: ResultFields): void {
    // a result for a session that has since dropped would be ignored by the gateway: it failed the call already
    if (epoch !== this.#epoch || this.#welcome === undefined) return
    this.#publishEnvelope({ v: PROTOCOL_VERSION, t: 'result', id, fe: fields.fe, pk: fields.pk, p: fields.p, code: fields.code, msg: fields.msg })
  }
}

/** What a `result` envelope says besides its id: a value (with `fe` when the function failed) or a bus error. */
type ResultFields = Omit<Result, 'v' | 't' | 'id'>

/** A handler running in this client; `done` is set by whoever waits for it to finish (close()). */
interface RunningInvocation {
  /** On the client's monotonic clock. */
  readonly expiresAt: number
  done: (() => void) | undefined
}

function checkTimeout (value: unknown, fallback: number, name: string, min = 1): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) throw invalidArgument(`${name} must be a number of ms ≥ ${min}, got ${JSON.stringify(value)}`)
  return Math.min(Math.floor(value), 2_147_483_647)
}

/** Link IoT Edge passes the invoker context as base64 of JSON; fnbus also takes the object. */
export function decodeInvokerContext (value: unknown): Record<string, unknown> | undefined {
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value === 'object' && !Array.isArray(value) && !Buffer.isBuffer(value)) return value as Record<string, unknown>
  if (typeof value === 'string') {
    let decoded: unknown
    try {
      decoded = JSON.parse(Buffer.from(value, 'base64').toString('utf8'))
    } catch {
      throw invalidArgument('invokerContext must be base64 of a JSON object (or the object itself)')
    }
    if (decoded !== null && typeof decoded === 'object' && !Array.isArray(decoded)) return decoded as Record<string, unknown>
  }
  throw invalidArgument('invokerContext must be base64 of a JSON object (or the object itself)')
}

function nonEmpty (value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}

/** The CA to trust for `mqtts://`: the option, else the file `FNBUS_CA` names (read once, at construction). */
function tlsOptions (options: FCClientOptions): { ca?: string | Buffer } {
  if (options.ca !== undefined) return { ca: options.ca }
  if (options.mqtt?.ca !== undefined) return {}
  const file = nonEmpty(process.env.FNBUS_CA)
  if (file === undefined) return {}
  try {
    // fetched here, not imported: the SDK's browser bundle has no node:fs, and a page never has FNBUS_CA
    return { ca: process.getBuiltinModule('node:fs').readFileSync(file) }
  } catch (err) {
    throw invalidArgument(`FNBUS_CA: cannot read ${file}: ${(err as Error).message}`)
  }
}
