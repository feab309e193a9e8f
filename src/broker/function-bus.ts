import type { Aedes, AedesPublishPacket, Client as AedesClient, Connection, PublishPacket } from 'aedes'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { errorFromWire, FnbusError, invalidArgument, type ErrorCode } from '../errors.js'
import { Dispatcher, failure, type CallerPort, type FunctionStats, type Outcome } from '../dispatcher/index.js'
import { AsyncEngine, type AsyncFunctionOptions, type QueueStats } from '../dispatcher/async-engine.js'
import { MemoryInvocationStore } from '../store/memory-store.js'
import type { DeadInvocation } from '../store/types.js'
import {
  checkEventFilter, checkEventTopic, decodeMessage, encodeEventPayload, envelope, EnvelopeError, inboxTopic,
  isBusTopic, parseEnvelope, parseFunctionName, Payload, PayloadKind, UP_TOPIC,
  type Call, type Cancel, type Envelope, type FunctionAddress, type QueueRequest, type Register, type Result, type Unregister,
  type InvocationType,
} from '../protocol/index.js'
import { checkContextArgument, checkIdempotencyKey } from '../protocol/index.js'
import { normalizeBusOptions, type BusOptions, type NormalizedBusOptions } from '../options.js'
import { InProcessCaller, InProcessValueCaller, InProcessWorker } from '../runtime/in-process.js'
import type { Handler } from '../runtime/handler.js'
import { guardFrames } from './frame-guard.js'
import { Admission } from './admission.js'
import { installAuthentication } from './authenticate.js'
import { Authenticator } from '../security/authenticate.js'
import { Session } from './session.js'
import { AccessControl, RateLimiter } from './access.js'
import { Policy } from '../security/policy.js'
import { GATEWAY_IDENTITY, identityOf } from '../security/identity.js'
import { isPrototypeName } from '../protocol/names.js'
import { VERSION } from '../version.js'
import { GatewayEvents } from '../observations.js'

export interface ServeOptions {
  /** Calls this worker runs at once. Default 8. */
  readonly concurrency?: number
}

export interface InvokeOptions {
  /** ms; default `limits.defaultTimeoutMs` (30 s). */
  readonly timeout?: number
  /** ms to wait for a worker to appear instead of failing FNBUS_FUNCTION_NOT_FOUND at once. */
  readonly waitForWorker?: number
  /** The invoker context the function sees as `context.invokerContext`. */
  readonly context?: Record<string, unknown>
  /** The identity the call is made as (the policy and rate limit apply to it). Default: the gateway's own, unrestricted. */
  readonly identity?: string
}

/** An in-process call's options when it gives none: one object for all of them. */
const NO_OPTIONS: InvokeOptions = Object.freeze({})

export interface FunctionOptions {
  /** ms; calls to the function default to it and may not ask for more. `undefined`: the gateway's limits apply. */
  readonly timeoutMs?: number
  /** Options of its stored (Async) invocations. */
  readonly async?: AsyncOptions
}

/** `functions[].async` of the config: durations in seconds, as the config writes them. */
export interface AsyncOptions {
  readonly maxRetries?: number
  readonly maxEventAgeSec?: number
  readonly maxStored?: number
  /** First retry delay in ms (doubling per retry, with jitter). Default 1000. */
  readonly retryDelayMs?: number
  readonly idempotencyWindowSec?: number
  readonly onSuccess?: string
  readonly onFailure?: string
}

export interface PublishOptions {
  readonly qos?: 0 | 1 | 2
  readonly retain?: boolean
}

export type EventHandler = (topic: string, payload: Buffer, packet: { readonly qos: number, readonly retain: boolean }) => void

export interface ServedFunction {
  readonly name: string
  /** Stops taking calls; those in flight complete. */
  close (): Promise<void>
}

export const DEFAULT_CONCURRENCY = 8

/** An operator's request on stored invocations: a `queue` envelope's fields (`fnbus queue`), or a dashboard action. */
export type OperatorRequest = Pick<QueueRequest, 'op' | 'fn' | 'iid' | 'limit'>

/** What answers a `status` envelope; `visible`, when given, says which functions the asker may see. */
export type StatusSource = (visible?: (fn: string) => boolean) => Promise<unknown>

/**
 * The function bus on an aedes instance: it takes the `$fn/` namespace out of aedes' routing, answers bus
 * envelopes, and feeds the dispatcher. Hooks the application already set on aedes keep working for every other
 * topic: the bus wraps them, it does not replace them.
 */
export class FunctionBus {
  readonly aedes: Aedes
  readonly dispatcher: Dispatcher
  readonly options: NormalizedBusOptions
  /** Who a connecting client is; `issue()` gives a supervised instance its credentials. */
  readonly authenticator: Authenticator
  /** Observations of the bus's work, for plugins; nothing is built for an event nobody listens to. */
  readonly events: GatewayEvents
  readonly #sessions = new Map<AedesClient, Session>()
  #statusSource: StatusSource | undefined
  readonly #async: AsyncEngine
  readonly #access: AccessControl
  readonly #invokeRate: RateLimiter
  /** Packets a hook let through only to be acknowledged: the publish wrapper routes them nowhere. */
  readonly #dropped = new WeakSet<object>()
  #connections = 0
  #closed = false

  constructor (aedes: Aedes, options?: BusOptions) {
    this.aedes = aedes
    this.options = normalizeBusOptions(options)
    this.events = new GatewayEvents((err, name) => this.options.logger.error({ err, event: name }, 'a plugin failed handling an observation'))
    this.authenticator = new Authenticator({
      identities: options?.identities,
      allowAnonymous: options?.allowAnonymous,
      logger: this.options.logger,
      maxPendingLoginsPerAddress: this.options.limits.maxPendingLoginsPerAddress,
      clientIdStore: options?.clientIdStore,
    })
    const { limits } = this.options
    this.#access = new AccessControl(this.options.policy, limits, this.options.logger)
    this.#invokeRate = new RateLimiter(limits.invokeRatePerSec, limits.invokeBurst)
    this.dispatcher = new Dispatcher({
      maxQueuedCalls: limits.maxQueuedCalls,
      maxQueuedBytes: limits.maxQueuedBytes,
      maxQueuedBytesPerClient: limits.maxQueuedBytesPerClient,
      maxFunctions: limits.maxFunctions,
      defaultTimeoutMs: limits.defaultTimeoutMs,
      maxTimeoutMs: limits.maxTimeoutMs,
      events: this.events,
      logger: this.options.logger,
      logPayloads: this.options.logPayloads,
      clock: this.options.clock,
    })
    const store = this.options.store ?? new MemoryInvocationStore()
    this.#async = new AsyncEngine(store, this.dispatcher, {
      publish: (topic, payload) => this.#publishEvent(topic, payload, 0),
      maxStoredTotal: limits.maxStoredTotal,
      storeRoom: () => this.options.diskSpace?.refusal(),
      logger: this.options.logger,
      logPayloads: this.options.logPayloads,
      events: this.events,
      clock: this.options.clock,
    })
    // a store passed in is open already (the gateway opens its own); the default one opens at once
    const opened = this.options.store === undefined ? store.open() : Promise.resolve()
    this.#storeReady = opened.then(() => this.#async.start(name => parseFunctionName(name)))
    this.#storeReady.catch((err: unknown) => this.options.logger.error({ err }, 'the invocation store failed to open'))
    this.#installHooks()
    this.#installObservers()
    installAuthentication(aedes, this.authenticator, this.options.logger)
    this.#admission = new Admission(this.options.limits.maxPendingConnections, this.options.logger, () => {
      if (this.events.observed('rejected')) this.events.emit('rejected', { reason: 'max_pending_connections' })
    })
    aedes.on('client', client => this.#admission.admitted(client.conn as Duplex))
  }

  /** Connections that have not logged in yet, within limits.maxPendingConnections. */
  readonly #admission: Admission

  readonly #storeReady: Promise<void>

  /** Use in place of `aedes.handle`: applies the frame guard, then hands the connection to aedes. */
  readonly handle = (stream: Connection, request?: IncomingMessage): AedesClient | undefined => {
    const { limits, logger } = this.options
    if (this.#connections >= limits.maxConnections) {
      // before aedes sees it: a connection over the bound costs nothing but its socket, closed at once
      logger.warn({ limit: limits.maxConnections }, 'connection refused: limits.maxConnections reached')
      if (this.events.observed('rejected')) this.events.emit('rejected', { reason: 'max_connections' })
      stream.destroy()
      return undefined
    }
    // until it has logged in, a connection counts against a smaller budget of its own as well
    if (!this.#admission.enter(stream as Duplex)) return undefined
    this.#connections++
    let counted = true
    const release = (): void => {
      if (counted) { counted = false; this.#connections-- }
    }
    stream.once('close', release)
    guardFrames(stream, {
      maxFrameBytes: limits.maxFrameBytes,
      connectTimeoutMs: limits.connectTimeoutMs,
      onConnect: () => this.#admission.connected(stream as Duplex),
      onViolation: (reason, kind) => {
        logger.warn({ reason }, 'connection cut by the frame guard')
        // a CONNECT refused (CONNACK 1 or 2) or never complete is a refused connection, as the authenticator's refusals are
        if (kind === 'identifier_rejected' || kind === 'unacceptable_protocol_version' || kind === 'connect_timeout') {
          if (this.events.observed('rejected')) this.events.emit('rejected', { reason: kind })
        } else if (this.events.observed('frameDropped')) {
          this.events.emit('frameDropped', { reason: kind })
        }
      },
    })
    return this.aedes.handle(stream, request)
  }

  /** Open client connections (those `handle` took). */
  get connections (): number {
    return this.#connections
  }

  #installHooks (): void {
    const aedes = this.aedes
    const hostAuthorizePublish = aedes.authorizePublish
    const hostAuthorizeSubscribe = aedes.authorizeSubscribe
    const hostAuthorizeForward = aedes.authorizeForward
    const route = aedes.publish
    const access = this.#access
    const dropped = this.#dropped
    const warnedDrops = new WeakSet<AedesClient>()
    const logger = this.options.logger

    aedes.authorizePublish = (client, packet, callback) => {
      if (!isBusTopic(packet.topic)) {
        const verdict = access.publish(client, packet)
        if (verdict.kind === 'close') {
          logger.warn({ client: client?.id, reason: verdict.error.message }, 'connection closed: PUBLISH over a limit')
          callback(verdict.error)
          return
        }
        if (verdict.kind === 'drop') {
          // once per connection at warn level: a client that keeps publishing where it may not must not flood the log
          const first = client === null || !warnedDrops.has(client)
          if (client !== null) warnedDrops.add(client)
          logger[first ? 'warn' : 'debug']({ client: client?.id, reason: verdict.reason }, 'PUBLISH not authorized: acknowledged, not routed')
          dropped.add(packet)
          callback(null)
          return
        }
        hostAuthorizePublish.call(aedes, client, packet, callback)
        return
      }
      // A will on a $fn/ topic is published by a connection that is gone: there is no one to answer.
      if (client !== null && !client.closed) this.#onBusMessage(client, packet)
      // Never an error here: in MQTT 3.1.1 that closes the sender's connection (docs/design.md, pitfall 9).
      callback(null)
    }

    aedes.authorizeSubscribe = (client, subscription, callback) => {
      const topic = subscription.topic
      if (isBusTopic(topic) || topic.startsWith('$fn/')) {
        // a client may read its own inbox and nothing else of the bus; null answers SUBACK 0x80
        const own = topic === inboxTopic(client.id) && access.subscribe(client, topic).granted
        callback(null, own ? subscription : null)
        return
      }
      const decision = access.subscribe(client, topic)
      if (!decision.granted) {
        logger.warn({ client: client.id, reason: decision.reason }, 'subscription refused')
        callback(null, null)
        return
      }
      hostAuthorizeSubscribe.call(aedes, client, subscription, (err, granted) => {
        if (err != null || granted == null) access.released(client, [topic])
        callback(err, granted)
      })
    }
    aedes.on('unsubscribe', (filters: string[], client: AedesClient) => access.released(client, filters))

    // Every delivery, live, retained or queued for a persistent session, passes here: today's policy decides.
    aedes.authorizeForward = (client, packet) => {
      if (!access.mayDeliver(client, packet)) return null
      return hostAuthorizeForward.call(aedes, client, packet)
    }

    // Bus messages were answered in authorizePublish; they never reach topic matching, retained storage or
    // offline queues, so no subscriber (`#`, a persistent session) can ever see one.
    aedes.publish = function publish (this: Aedes, packet: PublishPacket, client: unknown, done?: unknown) {
      if (isBusTopic(packet.topic) || dropped.has(packet)) {
        const callback = typeof client === 'function' ? client : done
        if (typeof callback === 'function') callback()
        return
      }
      return (route as (...args: unknown[]) => void).call(this, packet, client, done)
    } as Aedes['publish']
  }

  #onBusMessage (client: AedesClient, packet: PublishPacket): void {
    const session = this.#session(client)
    if (packet.topic !== UP_TOPIC) {
      this.#observeDrop('wrong_bus_topic', client)
      session.send(envelope({ t: 'error', id: 0, code: 'FNBUS_NOT_AUTHORIZED', msg: `bus envelopes go to ${UP_TOPIC}, not ${packet.topic}` }))
      return
    }
    const bytes = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
    let raws: Record<string, unknown>[]
    try {
      raws = decodeMessage(bytes)
    } catch (err) {
      this.#observeDrop((err as EnvelopeError).code, client)
      this.#answerError(session, err, 0)
      return
    }
    for (const raw of raws) {
      let env: Envelope
      try {
        env = parseEnvelope(raw, this.options.limits)
      } catch (err) {
        this.#observeDrop((err as EnvelopeError).code, client)
        this.#answerError(session, err, err instanceof EnvelopeError ? err.requestId : 0)
        continue
      }
      try {
        this.#handleEnvelope(session, env)
      } catch (err) {
        this.#answerError(session, err, env.id)
      }
    }
  }

  /** One handler per envelope type a client may send; anything else is refused. */
  #handleEnvelope (session: Session, env: Envelope): void {
    switch (env.t) {
      case 'hello':
        session.send(envelope({
          t: 'welcome',
          id: env.id,
          gw: VERSION,
          maxPayload: this.options.limits.maxPayloadBytes,
          maxFrame: this.options.limits.maxFrameBytes,
        }))
        return
      case 'call': return this.#onCall(session, env)
      case 'reg': return this.#onRegister(session, env)
      case 'unreg': return this.#onUnregister(session, env)
      case 'result': return this.#onResult(session, env)
      case 'cancel': return this.#onCancel(session, env)
      case 'queue': return this.#onQueue(session, env)
      case 'status': return this.#onStatus(session, env.id)
      default:
        throw new EnvelopeError('FNBUS_BAD_MESSAGE', `a client does not send ${env.t} envelopes`, env.id)
    }
  }

  /** Throws FNBUS_NOT_AUTHORIZED or FNBUS_RATE_LIMITED when `subject` may not call `fn` now. */
  #admitCall (subject: string, fn: FunctionAddress, type: InvocationType): void {
    const policy = this.options.policy
    if (policy !== undefined && !policy.mayInvoke(subject, fn)) {
      throw this.#refused(fn, type, new FnbusError('FNBUS_NOT_AUTHORIZED', `${subject} may not invoke ${fn.name}`))
    }
    if (subject !== GATEWAY_IDENTITY && !this.#invokeRate.take(subject)) {
      throw this.#refused(fn, type, new FnbusError('FNBUS_RATE_LIMITED', `${subject} is over its rate of ${this.options.limits.invokeRatePerSec} calls/s (limits.invokeRatePerSec)`))
    }
  }

  /**
   * Counts an invocation of `name` that a plugin gave up on before invoking, on the gateway's behalf (the routes
   * plugin: an event it could not turn into a payload), with the calls the bus refuses itself: it appears in
   * `gateway.invocations()` and in the metrics under `code`.
   */
  countRefused (name: string, type: InvocationType, code: ErrorCode): void {
    this.dispatcher.refused(parseFunctionName(name), type, code)
  }

  /** A call refused before the dispatcher took it still counts (its tally, what metrics export); returns `err`. */
  #refused (fn: FunctionAddress, type: InvocationType, err: FnbusError): FnbusError {
    this.dispatcher.refused(fn, type, err.code)
    return err
  }

  #onCall (session: Session, call: Call): void {
    const fn = parseFunctionName(call.fn, 'fn')
    if (call.p.length > this.options.limits.maxPayloadBytes) {
      throw this.#refused(fn, call.it, new FnbusError('FNBUS_PAYLOAD_TOO_LARGE', `payload of ${call.p.length} bytes exceeds limits.maxPayloadBytes (${this.options.limits.maxPayloadBytes})`))
    }
    if (call.ik !== undefined && isPrototypeName(call.ik)) throw invalidArgument(`idempotency key ${call.ik} is reserved`)
    const maxInFlight = this.options.limits.maxInFlightPerClient
    if (session.inFlight >= maxInFlight) {
      throw this.#refused(fn, call.it, new FnbusError('FNBUS_RATE_LIMITED', `the connection has ${maxInFlight} calls in flight (limits.maxInFlightPerClient)`))
    }
    if (session.congested) {
      // its answers would only pile up behind the ones it has not read
      throw this.#refused(fn, call.it, new FnbusError('FNBUS_RATE_LIMITED', `the connection has ${session.buffered} bytes of answers it has not read (limits.maxBufferedBytesPerClient)`))
    }
    this.#admitCall(session.subject, fn, call.it)
    session.inFlight++
    if (call.it === 'Async') {
      // accepted only once durable: the answer waits for the store's write (docs/design.md, pitfall 1)
      this.#accept(fn, Payload.fromWire(call.pk, call.p), call.ctx, call.ik, session.subject).then(
        ({ invocationId }) => {
          session.inFlight--
          session.send(envelope({ t: 'accepted', id: call.id, iid: invocationId }))
        },
        (err: unknown) => {
          session.inFlight--
          this.#answerError(session, err, call.id)
        },
      )
      return
    }
    try {
      this.dispatcher.call({
        fn,
        type: call.it,
        payload: Payload.fromWire(call.pk, call.p),
        context: call.ctx,
        timeoutMs: call.to,
        waitForWorkerMs: call.ww,
        identity: session.identity,
      }, session.caller(call.id))
    } catch (err) {
      session.inFlight--
      throw err
    }
  }

  #onRegister (session: Session, reg: Register): void {
    const fn = parseFunctionName(reg.fn, 'fn')
    const max = this.options.limits.maxConcurrency
    if (reg.conc < 1 || reg.conc > max) throw invalidArgument(`concurrency must be between 1 and ${max} (limits.maxConcurrency), got ${reg.conc}`)
    if (this.#closed) throw new FnbusError('FNBUS_SHUTTING_DOWN', 'the gateway is shutting down')
    const policy = this.options.policy
    if (policy !== undefined && !policy.mayServe(session.subject, fn)) {
      throw new FnbusError('FNBUS_NOT_AUTHORIZED', `${session.subject} may not serve ${fn.name}`)
    }
    const maxRegistrations = this.options.limits.maxRegistrationsPerClient
    if (session.registrations.size >= maxRegistrations && !session.registrations.has(fn.name)) {
      this.#limitReached('maxRegistrationsPerClient', session.label)
      throw invalidArgument(`the connection serves ${maxRegistrations} functions already (limits.maxRegistrationsPerClient)`)
    }
    this.dispatcher.register(fn, session, reg.conc)
    session.registrations.set(fn.name, fn)
    this.#async.served(fn)
    session.send(envelope({ t: 'ack', id: reg.id }))
  }

  #onUnregister (session: Session, unreg: Unregister): void {
    const fn = parseFunctionName(unreg.fn, 'fn')
    this.dispatcher.unregister(fn, session)
    session.registrations.delete(fn.name)
    session.send(envelope({ t: 'ack', id: unreg.id }))
  }

  #onResult (session: Session, result: Result): void {
    let outcome: Outcome
    if (result.code !== undefined) {
      outcome = { ok: false, error: errorFromWire(result.code, result.msg) }
    } else if (result.p !== undefined && result.p.length > this.options.limits.maxPayloadBytes) {
      outcome = failure('FNBUS_PAYLOAD_TOO_LARGE', `the function's answer of ${result.p.length} bytes exceeds limits.maxPayloadBytes`)
    } else {
      const payload = result.p === undefined ? Payload.of(null) : Payload.fromWire(result.pk ?? PayloadKind.Bytes, result.p)
      outcome = { ok: true, functionError: result.fe, payload }
    }
    // false: a late answer (the call timed out) or one from a worker that was not given the call; both ignored
    this.dispatcher.complete(result.id, session, outcome)
  }

  /**
   * `subject`: who calls (an identity, `$anonymous`, or `$gateway` in process). Idempotency keys are its own: another
   * identity's key neither matches nor reveals its invocation. Anonymous callers share one scope (the SDK re-sends
   * its calls on a new connection after a reconnection, and they must still match).
   */
  async #accept (fn: FunctionAddress, payload: Payload, context: Record<string, unknown> | undefined, idempotencyKey: string | undefined,
    subject: string): Promise<{ invocationId: string }> {
    try {
      if (this.#closed) throw new FnbusError('FNBUS_SHUTTING_DOWN', 'the gateway is shutting down')
      await this.#storeReady
      return await this.#async.accept(fn, payload, context, idempotencyKey, subject)
    } catch (err) {
      // not stored (queue full, store failure, shutting down): a refused invocation, counted as one
      if (err instanceof FnbusError) this.#refused(fn, 'Async', err)
      throw err
    }
  }

  #onCancel (session: Session, cancel: Cancel): void {
    this.#authorizeCancel(session.subject, cancel.iid).then(() => this.cancel(cancel.iid)).then(
      () => session.send(envelope({ t: 'ack', id: cancel.id })),
      (err: unknown) => this.#answerError(session, err, cancel.id),
    )
  }

  /**
   * A caller may cancel the waiting invocations it made itself; an operator (a `manage` grant), any of the functions
   * it manages. Without a policy every identity manages everything, as it may do everything else.
   */
  async #authorizeCancel (subject: string, invocationId: string): Promise<void> {
    const policy = this.options.policy
    if (policy === undefined) return
    await this.#storeReady
    const found = await this.#async.ownerOf(invocationId)
    if (found === undefined) return // cancel answers FNBUS_INVOCATION_NOT_FOUND
    const fn = parseFunctionName(found.fn)
    if (policy.mayManage(subject, fn)) return
    if (found.caller === subject && policy.mayInvoke(subject, fn)) return
    throw new FnbusError('FNBUS_NOT_AUTHORIZED', `${subject} may not cancel ${invocationId}: only the identity that made it, or one that manages ${fn.name}, may`)
  }

  #onQueue (session: Session, request: QueueRequest): void {
    this.#queueAs(session.subject, request).then(
      value => {
        const payload = Payload.of(value)
        session.send(envelope({ t: 'reply', id: request.id, pk: payload.kind, p: payload.bytes }))
      },
      (err: unknown) => this.#answerError(session, err, request.id),
    )
  }

  /**
   * An operator's request on stored invocations, as `identity`: a `queue` envelope, or a dashboard action. Under a
   * policy it sees and acts on the functions the identity may manage and no others.
   */
  async queueAs (identity: string, request: OperatorRequest): Promise<unknown> {
    return await this.#queueAs(identity, request)
  }

  /**
   * Which functions an operator sees in the status: under a policy, those `identity` may manage; undefined (all)
   * without a policy or without an identity (the HTTP port's loopback reads).
   */
  manageableBy (identity: string | undefined): ((fn: string) => boolean) | undefined {
    const policy = this.options.policy
    if (policy === undefined || identity === undefined) return undefined
    return name => policy.mayManage(identity, parseFunctionName(name))
  }

  /** FNBUS_NOT_AUTHORIZED unless `identity` may manage the function, or the function of the stored invocation. */
  async authorizeManage (identity: string, target: { readonly fn: string } | { readonly invocationId: string }): Promise<void> {
    const policy = this.options.policy
    if (policy === undefined) return
    let name: string | undefined
    if ('fn' in target) {
      name = parseFunctionName(target.fn, 'fn').name
    } else {
      await this.#storeReady
      name = await this.#async.functionOf(target.invocationId)
      if (name === undefined) return // the operation itself answers FNBUS_INVOCATION_NOT_FOUND
    }
    if (!policy.mayManage(identity, parseFunctionName(name))) throw new FnbusError('FNBUS_NOT_AUTHORIZED', `${identity} may not manage ${name}`)
  }

  async #queueAs (subject: string, request: OperatorRequest): Promise<unknown> {
    const fn = request.fn === undefined ? undefined : parseFunctionName(request.fn, 'fn')
    const policy = this.options.policy
    if (policy === undefined) return await this.#queueOperation(request, fn?.name)
    if (fn !== undefined && !policy.mayManage(subject, fn)) {
      throw new FnbusError('FNBUS_NOT_AUTHORIZED', `${subject} may not manage the queue of ${fn.name}`)
    }
    return await this.#managedQueueOperation(request, fn, subject, policy)
  }

  #queueOperation (request: OperatorRequest, fn: string | undefined): Promise<unknown> {
    switch (request.op) {
      case 'ls': return Promise.resolve(this.queueStats(fn))
      case 'dead': return this.listDead(fn, request.limit ?? 100).then(dead => dead.map(describeDead))
      case 'retry': return this.retryDead(request.iid !== undefined ? { id: request.iid } : { fn }).then(revived => ({ revived }))
      case 'purge': return this.purgeDead(fn).then(purged => ({ purged }))
    }
  }

  /** A queue request under a policy: it sees and acts on the functions the identity may manage, and no others. */
  async #managedQueueOperation (request: OperatorRequest, fn: FunctionAddress | undefined, subject: string, policy: Policy): Promise<unknown> {
    await this.#storeReady
    if (request.op === 'retry' && request.iid !== undefined) {
      const name = await this.#async.functionOf(request.iid)
      if (name !== undefined && !policy.mayManage(subject, parseFunctionName(name))) {
        throw new FnbusError('FNBUS_NOT_AUTHORIZED', `${subject} may not manage the queue of ${name}`)
      }
      return await this.#queueOperation(request, undefined)
    }
    if (fn !== undefined) return await this.#queueOperation(request, fn.name)
    const managed = this.queueStats().map(stats => stats.fn).filter(name => policy.mayManage(subject, parseFunctionName(name)))
    switch (request.op) {
      case 'ls': return this.queueStats().filter(stats => managed.includes(stats.fn))
      case 'dead': {
        const limit = request.limit ?? 100
        const lists = await Promise.all(managed.map(name => this.listDead(name, limit)))
        return lists.flat().sort((a, b) => a.diedAt - b.diedAt).slice(0, limit).map(describeDead)
      }
      case 'retry': {
        let revived = 0
        for (const name of managed) revived += await this.retryDead({ fn: name })
        return { revived }
      }
      case 'purge': {
        let purged = 0
        for (const name of managed) purged += await this.purgeDead(name)
        return { purged }
      }
    }
  }

  /**
   * Without a policy anyone on the bus may read the status. Under one it is an operator's request like `queue`: an
   * identity with no `manage` grant is refused, and the others see the functions they may manage and no others.
   */
  #onStatus (session: Session, id: number): void {
    const policy = this.options.policy
    let visible: ((fn: string) => boolean) | undefined
    if (policy !== undefined) {
      const subject = session.subject
      if (!policy.managesAny(subject)) throw new FnbusError('FNBUS_NOT_AUTHORIZED', `${subject} may not read the gateway's status (it needs a manage grant)`)
      visible = name => policy.mayManage(subject, parseFunctionName(name))
    }
    const source = this.#statusSource ?? (async (only?: (fn: string) => boolean) => this.describe(only))
    source(visible).then(
      value => {
        const payload = Payload.of(value)
        session.send(envelope({ t: 'reply', id, pk: payload.kind, p: payload.bytes }))
      },
      (err: unknown) => this.#answerError(session, err, id),
    )
  }

  /**
   * What a `status` envelope is answered with. The gateway provides its full status (supervised instances,
   * health, uptime); a bus attached to an application's own aedes answers with `describe()`.
   */
  provideStatus (source: StatusSource): void {
    this.#statusSource = source
  }

  /** The bus's own view: functions with their workers, stored invocation counts, connections. */
  describe (visible?: (fn: string) => boolean): { readonly sessions: number, readonly inFlight: number, readonly functions: FunctionStats[], readonly queues: QueueStats[] } {
    const stats = this.stats()
    if (visible === undefined) return { ...stats, queues: this.queueStats() }
    return { ...stats, functions: stats.functions.filter(f => visible(f.name)), queues: this.queueStats().filter(q => visible(q.fn)) }
  }

  #observeDrop (reason: string, client: AedesClient | null): void {
    if (this.events.observed('frameDropped')) this.events.emit('frameDropped', { reason, clientId: client?.id })
  }

  #limitReached (limit: string, clientId: string | undefined): void {
    if (this.events.observed('limitReached')) this.events.emit('limitReached', { limit, clientId })
  }

  /** Observations that come from aedes itself: connections, refusals, event traffic. */
  #installObservers (): void {
    const aedes = this.aedes
    const events = this.events
    aedes.on('client', client => {
      if (events.observed('client')) events.emit('client', { clientId: client.id, identity: identityOf(client) })
    })
    aedes.on('clientDisconnect', client => {
      if (events.observed('clientDisconnect')) events.emit('clientDisconnect', { clientId: client.id, identity: identityOf(client) })
    })
    aedes.on('connackSent', (packet, client) => {
      const code = packet.returnCode ?? 0
      if (code !== 0 && events.observed('rejected')) events.emit('rejected', { reason: CONNACK_REASONS[code] ?? `connack_${code}`, clientId: client.id })
    })
    aedes.on('connectionError', (_client, err) => {
      if (events.observed('rejected')) events.emit('rejected', { reason: err.message.includes('did not arrive in time') ? 'connect_timeout' : 'protocol_error' })
    })
    aedes.on('publish', (packet, client) => {
      // bus messages never get here (the bus swallows them); $SYS is the broker's own chatter, not events
      if (events.observed('eventMessage') && !packet.topic.startsWith('$SYS/')) events.emit('eventMessage', { direction: 'in', topic: packet.topic })
      void client
    })
    // authorizeForward runs once per subscriber an event is about to be written to: the point to count events out
    const hostAuthorizeForward = aedes.authorizeForward
    aedes.authorizeForward = function authorizeForward (this: Aedes, client, packet) {
      const forwarded = hostAuthorizeForward.call(this, client, packet)
      if (forwarded != null && events.observed('eventMessage') && !packet.topic.startsWith('$SYS/')) {
        events.emit('eventMessage', { direction: 'out', topic: packet.topic })
      }
      return forwarded
    }
  }

  #answerError (session: Session, err: unknown, id: number): void {
    if (err instanceof FnbusError) {
      session.send(envelope({ t: 'error', id, code: err.code, msg: err.message }))
      return
    }
    this.options.logger.error({ err, client: session.label }, 'unexpected error handling a bus message')
    session.send(envelope({ t: 'error', id, code: 'FNBUS_BAD_MESSAGE', msg: 'the gateway could not handle this message' }))
  }

  #session (client: AedesClient): Session {
    let session = this.#sessions.get(client)
    if (session === undefined) {
      const created = new Session(client, {
        maxPayloadBytes: this.options.limits.maxPayloadBytes,
        maxBufferedBytes: this.options.limits.maxBufferedBytesPerClient,
        dispatcher: this.dispatcher,
        subject: this.#access.subjectOf(client),
        logger: this.options.logger,
        onLimit: (limit, which) => this.#limitReached(limit, which.label),
      })
      // Bus request/reply frames must not wait for Nagle's algorithm (and the peer's delayed ACK): up to 40 ms each.
      // Only bus clients: a connection that only carries events keeps the socket options bare aedes gives it.
      const conn = client.conn as { setNoDelay?: (noDelay: boolean) => void }
      if (typeof conn.setNoDelay === 'function') conn.setNoDelay(true)
      this.#sessions.set(client, created)
      client.conn.once('close', () => {
        created.alive = false
        this.#sessions.delete(client)
        this.dispatcher.workerGone(created)
        this.dispatcher.callerGone(created)
      })
      session = created
    }
    return session
  }

  /** Sets options of one function (`Service/function`), whoever serves it; used for `functions[]` of the config. */
  setFunctionOptions (name: string, options: FunctionOptions): void {
    const fn = parseFunctionName(name)
    const { timeoutMs } = options
    if (timeoutMs !== undefined && (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > this.options.limits.maxTimeoutMs)) {
      throw invalidArgument(`timeoutMs of ${fn.name} must be an integer between 1 and ${this.options.limits.maxTimeoutMs} (limits.maxTimeoutMs), got ${JSON.stringify(timeoutMs)}`)
    }
    if (options.async !== undefined) this.#async.configure(fn.name, asyncOptions(fn.name, options.async))
    this.dispatcher.setFunctionTimeout(fn.name, timeoutMs)
  }

  /** Stores an Async invocation in process; resolves with its id once it is durable. */
  async invokeAsync (name: string, payload?: unknown, options: { readonly idempotencyKey?: string, readonly context?: Record<string, unknown>, readonly identity?: string } = {}): Promise<{ invocationId: string }> {
    const fn = parseFunctionName(name)
    checkContextArgument(options.context, this.options.limits.maxContextBytes, 'options.context')
    checkIdempotencyKey(options.idempotencyKey, 'options.idempotencyKey')
    this.#admitCall(options.identity ?? GATEWAY_IDENTITY, fn, 'Async')
    const wire = Payload.of(payload)
    if (wire.byteLength > this.options.limits.maxPayloadBytes) {
      throw this.#refused(fn, 'Async', new FnbusError('FNBUS_PAYLOAD_TOO_LARGE', `payload of ${wire.byteLength} bytes exceeds limits.maxPayloadBytes`))
    }
    return await this.#accept(fn, wire, options.context, options.idempotencyKey, options.identity ?? GATEWAY_IDENTITY)
  }

  /** Cancels a stored invocation that has not started. */
  async cancel (invocationId: string): Promise<void> {
    if (typeof invocationId !== 'string' || invocationId.length === 0) throw invalidArgument('invocationId must be a non-empty string')
    await this.#storeReady
    await this.#async.cancel(invocationId)
  }

  /** Counts of stored invocations per function: pending, in flight, dead. */
  queueStats (fn?: string): QueueStats[] {
    return this.#async.queueStats(fn)
  }

  async listDead (fn: string | undefined, limit = 100): Promise<DeadInvocation[]> {
    await this.#storeReady
    return await this.#async.listDead(fn, limit)
  }

  /** Sends dead-lettered invocations back to their queue: one by id, or all of a function (or of every function). */
  async retryDead (selector: { readonly id: string } | { readonly fn: string | undefined }): Promise<number> {
    await this.#storeReady
    return await this.#async.revive(selector, name => parseFunctionName(name))
  }

  async purgeDead (fn: string | undefined): Promise<number> {
    await this.#storeReady
    return await this.#async.purgeDead(fn)
  }

  /** Serves a function inside the gateway process. */
  async serve (name: string, handler: Handler, options: ServeOptions = {}): Promise<ServedFunction> {
    const fn = parseFunctionName(name)
    if (typeof handler !== 'function') throw invalidArgument('handler must be a function')
    const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw invalidArgument(`concurrency must be a positive integer, got ${concurrency}`)
    if (this.#closed) throw new FnbusError('FNBUS_SHUTTING_DOWN', 'the gateway is shutting down')
    const worker = new InProcessWorker(this.dispatcher, handler)
    this.dispatcher.register(fn, worker, concurrency)
    this.#async.served(fn)
    return {
      name: fn.name,
      close: async () => { this.dispatcher.unregister(fn, worker) },
    }
  }

  /** Invokes a function (Sync) from inside the gateway process; resolves with its return value. */
  invoke (name: string, payload?: unknown, options: InvokeOptions = NO_OPTIONS): Promise<unknown> {
    // one promise per call, settled straight from the dispatcher (the in-process fast path)
    return new Promise((resolve, reject) => this.#invokeInProcess(name, payload, options, new InProcessValueCaller(resolve, reject)))
  }

  /** Like `invoke`, but a function error is an outcome rather than a rejection. */
  invokeOutcome (name: string, payload: unknown, options: InvokeOptions = NO_OPTIONS): Promise<Outcome> {
    return new Promise(resolve => this.#invokeInProcess(name, payload, options, new InProcessCaller(resolve)))
  }

  /** Throws (inside the promise executors above: a rejection) on a malformed name. */
  #invokeInProcess (name: string, payload: unknown, options: InvokeOptions, caller: InProcessCaller | InProcessValueCaller): void {
    const fn = parseFunctionName(name)
    checkContextArgument(options.context, this.options.limits.maxContextBytes, 'options.context')
    this.#admitCall(options.identity ?? GATEWAY_IDENTITY, fn, 'Sync')
    // the caller is the request too: one object per call
    this.dispatcher.call(caller.prepare(fn, payload, options), caller)
  }

  /** Publishes an event as the gateway. */
  async publish (topic: string, payload: unknown, options: PublishOptions = {}): Promise<void> {
    checkEventTopic(topic)
    const bytes = encodeEventPayload(payload)
    if (bytes.length > this.options.limits.maxPayloadBytes) {
      throw new FnbusError('FNBUS_PAYLOAD_TOO_LARGE', `event payload of ${bytes.length} bytes exceeds limits.maxPayloadBytes`)
    }
    await this.#publishEvent(topic, bytes, options.qos ?? 0, options.retain ?? false)
  }

  #publishEvent (topic: string, payload: Buffer, qos: 0 | 1 | 2, retain = false): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.aedes.publish({ cmd: 'publish', topic, payload, qos, retain, dup: false }, err => { if (err) reject(err); else resolve() })
    })
  }

  /** Subscribes to events inside the gateway process; resolves with a function that ends the subscription. */
  async subscribe (filter: string, handler: EventHandler): Promise<() => Promise<void>> {
    checkEventFilter(filter)
    const deliver = (packet: AedesPublishPacket, done: () => void): void => {
      // MQTT: first-level wildcards do not match $ topics ([MQTT-4.7.2-1])
      if (!(packet.topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#')))) {
        if (this.events.observed('eventMessage')) this.events.emit('eventMessage', { direction: 'out', topic: packet.topic })
        const bytes = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
        try {
          handler(packet.topic, bytes, { qos: packet.qos, retain: packet.retain })
        } catch (err) {
          this.options.logger.error({ err, topic: packet.topic }, 'event handler threw')
        }
      }
      done()
    }
    await new Promise<void>(resolve => this.aedes.subscribe(filter, deliver, resolve))
    return async () => {
      await new Promise<void>(resolve => this.aedes.unsubscribe(filter, deliver, resolve))
    }
  }

  stats (): { readonly sessions: number, readonly inFlight: number, readonly functions: FunctionStats[] } {
    return { sessions: this.#sessions.size, inFlight: this.dispatcher.inFlight, functions: this.dispatcher.stats() }
  }

  /** Takes no new calls; lets calls in flight finish within `shutdownGraceMs`, then fails them with a code. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#async.shutDown()
    await this.dispatcher.drain(this.options.shutdownGraceMs)
    await this.#async.close()
    // the last answers (FNBUS_SHUTTING_DOWN among them) leave before aedes closes the connections
    for (const session of this.#sessions.values()) session.flush()
  }
}

/** Adds the function bus to an aedes instance the application created. Use `bus.handle` in place of `aedes.handle`. */
export function attachFunctionBus (aedes: Aedes, options?: BusOptions): FunctionBus {
  return new FunctionBus(aedes, options)
}

function asyncOptions (fn: string, given: AsyncOptions): Partial<AsyncFunctionOptions> {
  const check = (value: number | undefined, name: string, min: number): number | undefined => {
    if (value === undefined) return undefined
    if (!Number.isSafeInteger(value) || value < min) throw invalidArgument(`async.${name} of ${fn} must be an integer ≥ ${min}, got ${JSON.stringify(value)}`)
    return value
  }
  const topic = (value: string | undefined, name: string): string | undefined => {
    if (value === undefined) return undefined
    try {
      return checkEventTopic(value)
    } catch (err) {
      throw invalidArgument(`async.${name} of ${fn}: ${(err as Error).message}`)
    }
  }
  const seconds = (value: number | undefined, name: string): number | undefined => {
    const checked = check(value, name, 1)
    return checked === undefined ? undefined : checked * 1000
  }
  const options: Partial<AsyncFunctionOptions> = {
    maxRetries: check(given.maxRetries, 'maxRetries', 0),
    maxEventAgeMs: seconds(given.maxEventAgeSec, 'maxEventAgeSec'),
    maxStored: check(given.maxStored, 'maxStored', 1),
    retryDelayMs: check(given.retryDelayMs, 'retryDelayMs', 0),
    idempotencyWindowMs: seconds(given.idempotencyWindowSec, 'idempotencyWindowSec'),
    onSuccess: topic(given.onSuccess, 'onSuccess'),
    onFailure: topic(given.onFailure, 'onFailure'),
  }
  // an option not given keeps its current value
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined))
}

/** A dead invocation as operators see it: ids, counts and the last error, not the payload bytes. */
function describeDead (dead: DeadInvocation): Record<string, unknown> {
  return {
    invocationId: dead.id,
    fn: dead.fn,
    attempts: dead.attempts,
    createdAt: dead.createdAt,
    diedAt: dead.diedAt,
    error: dead.lastError,
    payloadBytes: dead.payload.length,
  }
}

/** CONNACK return codes of MQTT 3.1.1 ([MQTT-3.2.2.3]) as the reasons metrics count refusals by. */
const CONNACK_REASONS: Readonly<Record<number, string>> = {
  1: 'unacceptable_protocol_version',
  2: 'identifier_rejected',
  3: 'server_unavailable',
  4: 'bad_credentials',
  5: 'not_authorized',
}
