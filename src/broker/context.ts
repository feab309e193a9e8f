import type { Aedes, Client as AedesClient, PublishPacket } from 'aedes'
import { FnbusError } from '../errors.js'
import { Dispatcher } from '../dispatcher/index.js'
import { AsyncEngine } from '../dispatcher/async-engine.js'
import type { AsyncService } from '../dispatcher/async-service.js'
import { MemoryInvocationStore } from '../store/memory-store.js'
import { envelope, type FunctionAddress, type InvocationType, type Payload } from '../protocol/index.js'
import type { NormalizedBusOptions } from '../options.js'
import type { GatewayEvents } from '../observations.js'
import { GATEWAY_IDENTITY } from '../security/identity.js'
import { AccessControl, RateLimiter } from './access.js'
import { Session } from './session.js'

/**
 * What sees every ordinary message on its way through the broker: the bridges (src/bridge/). A promise it returns
 * holds the message back until it settles: its acknowledgement (`beforeAck`, for a PUBLISH a client sent, once the
 * policy allowed it; aedes writes the PUBACK of QoS 1 after it) or its routing (`routed`, every message aedes routes,
 * from clients, wills, functions and routes alike). A rejection refuses the message.
 */
export interface PublishTap {
  beforeAck (client: AedesClient | null, packet: PublishPacket): Promise<void> | undefined
  routed (packet: PublishPacket, client: AedesClient | null): Promise<void> | undefined
}

/** What answers a `status` envelope; `visible`, when given, says which functions the asker may see. */
export type StatusSource = (visible?: (fn: string) => boolean) => Promise<unknown>

/**
 * The bus's internals that its parts share: the envelope handlers, the aedes hooks, the operator requests and the
 * in-process API all take this one object, built once per bus, rather than reach into the façade. Besides the
 * dispatcher, the Async engine and the sessions it holds the steps they take alike: admit a call, count a refusal,
 * accept a stored invocation, answer an error in-band.
 */
export class BusContext {
  readonly aedes: Aedes
  readonly options: NormalizedBusOptions
  /** Observations of the bus's work, for plugins; nothing is built for an event nobody listens to. */
  readonly events: GatewayEvents
  readonly dispatcher: Dispatcher
  /** Stores and delivers Async invocations: the gateway's own engine, or its cluster's (useAsync). */
  async: AsyncService
  /** The gateway's own engine, over its own store: the cluster's takes its function options from it. */
  readonly engine: AsyncEngine
  /** The checks on ordinary (non-`$fn/`) traffic, and the name each connection is known by. */
  readonly access: AccessControl
  /** Settles once the invocation store is open and the Async engine has started. */
  readonly storeReady: Promise<void>
  /** Set by the façade's `close`: no new registrations, no new stored invocations. */
  closed = false
  /** The bridges' view of ordinary messages; undefined: no bridge. */
  publishTap: PublishTap | undefined
  /** What answers a `status` envelope; undefined: the bus's own view. */
  statusSource: StatusSource | undefined
  /** What a `restart` envelope asks: new processes of a supervised function; how many it restarts. */
  restarter: ((name: string) => number) | undefined
  readonly #sessions = new Map<AedesClient, Session>()
  readonly #invokeRate: RateLimiter
  /** Other names of functions (`Lambda/NAME` → the function whose `lambdaName` it is). */
  readonly #aliases = new Map<string, FunctionAddress>()

  constructor (aedes: Aedes, options: NormalizedBusOptions, events: GatewayEvents) {
    this.aedes = aedes
    this.options = options
    this.events = events
    const { limits } = options
    this.access = new AccessControl(options.policy, limits, options.logger)
    this.#invokeRate = new RateLimiter(limits.invokeRatePerSec, limits.invokeBurst)
    this.dispatcher = new Dispatcher({
      maxQueuedCalls: limits.maxQueuedCalls,
      maxQueuedBytes: limits.maxQueuedBytes,
      maxQueuedBytesPerClient: limits.maxQueuedBytesPerClient,
      maxFunctions: limits.maxFunctions,
      defaultTimeoutMs: limits.defaultTimeoutMs,
      maxTimeoutMs: limits.maxTimeoutMs,
      // a call on a lease does not pass the gateway's rate limit: no leases where there is one
      directPath: limits.invokeRatePerSec === 0,
      events,
      logger: options.logger,
      logPayloads: options.logPayloads,
      clock: options.clock,
    })
    const store = options.store ?? new MemoryInvocationStore()
    this.engine = new AsyncEngine(store, this.dispatcher, {
      publish: (topic, payload) => this.publishEvent(topic, payload, 0),
      maxStoredTotal: limits.maxStoredTotal,
      storeRoom: () => options.diskSpace?.refusal(),
      logger: options.logger,
      logPayloads: options.logPayloads,
      events,
      clock: options.clock,
    })
    // a store passed in is open already (the gateway opens its own); the default one opens at once
    const opened = options.store === undefined ? store.open() : Promise.resolve()
    this.async = this.engine
    this.storeReady = opened.then(() => this.async.start())
    this.storeReady.catch((err: unknown) => options.logger.error({ err }, 'the invocation store failed to open'))
  }

  /** Gives `target` a second name: calls to `alias` go to it (a Greengrass function's Lambda name). */
  alias (alias: FunctionAddress, target: FunctionAddress): void {
    const taken = this.#aliases.get(alias.name)
    if (taken !== undefined && taken.name !== target.name) throw new FnbusError('FNBUS_CONFIG_INVALID', `${alias.name} names ${taken.name} already`)
    this.#aliases.set(alias.name, target)
  }

  /** The function a call to `fn` goes to: itself, or the one it is another name of. One lookup while aliases exist. */
  resolve (fn: FunctionAddress): FunctionAddress {
    return this.#aliases.size === 0 ? fn : this.#aliases.get(fn.name) ?? fn
  }

  /** Bus sessions (connections that sent a bus envelope) open now. */
  get sessionCount (): number {
    return this.#sessions.size
  }

  /** The bus side of `client`'s connection, made on its first bus envelope and dropped when the connection closes. */
  sessionOf (client: AedesClient): Session {
    let session = this.#sessions.get(client)
    if (session === undefined) {
      const created = new Session(client, {
        maxPayloadBytes: this.options.limits.maxPayloadBytes,
        maxBufferedBytes: this.options.limits.maxBufferedBytesPerClient,
        dispatcher: this.dispatcher,
        subject: this.access.subjectOf(client),
        logger: this.options.logger,
        onLimit: (limit, which) => this.limitReached(limit, which.label),
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

  /** Sends what each session has batched so far, now (before aedes closes the connections). */
  flushSessions (): void {
    for (const session of this.#sessions.values()) session.flush()
  }

  /** Answers request `id` of `session` with a coded error envelope; an unexpected error is logged and answered vaguely. */
  answerError (session: Session, err: unknown, id: number): void {
    if (err instanceof FnbusError) {
      session.send(envelope({ t: 'error', id, code: err.code, msg: err.message }))
      return
    }
    this.options.logger.error({ err, client: session.label }, 'unexpected error handling a bus message')
    session.send(envelope({ t: 'error', id, code: 'FNBUS_BAD_MESSAGE', msg: 'the gateway could not handle this message' }))
  }

  /** Throws FNBUS_NOT_AUTHORIZED or FNBUS_RATE_LIMITED when `subject` may not call `fn` now. */
  admitCall (subject: string, fn: FunctionAddress, type: InvocationType): void {
    const policy = this.options.policy
    if (policy !== undefined && !policy.mayInvoke(subject, fn)) {
      throw this.refused(fn, type, new FnbusError('FNBUS_NOT_AUTHORIZED', `${subject} may not invoke ${fn.name}`))
    }
    if (subject !== GATEWAY_IDENTITY && !this.#invokeRate.take(subject)) {
      throw this.refused(fn, type, new FnbusError('FNBUS_RATE_LIMITED', `${subject} is over its rate of ${this.options.limits.invokeRatePerSec} calls/s (limits.invokeRatePerSec)`))
    }
  }

  /** A call refused before the dispatcher took it still counts (its tally, what metrics export); returns `err`. */
  refused (fn: FunctionAddress, type: InvocationType, err: FnbusError): FnbusError {
    this.dispatcher.refused(fn, type, err.code)
    return err
  }

  /**
   * Stores an Async invocation; resolves with its id once it is durable. `subject`: who calls (an identity,
   * `$anonymous`, or `$gateway` in process). Idempotency keys are its own: another identity's key neither matches
   * nor reveals its invocation. Anonymous callers share one scope (the SDK re-sends its calls on a new connection
   * after a reconnection, and they must still match).
   */
  async accept (fn: FunctionAddress, payload: Payload, context: Record<string, unknown> | undefined, idempotencyKey: string | undefined,
    subject: string): Promise<{ invocationId: string }> {
    try {
      if (this.closed) throw new FnbusError('FNBUS_SHUTTING_DOWN', 'the gateway is shutting down')
      await this.storeReady
      return await this.async.accept(fn, payload, context, idempotencyKey, subject)
    } catch (err) {
      // not stored (queue full, store failure, shutting down): a refused invocation, counted as one
      if (err instanceof FnbusError) this.refused(fn, 'Async', err)
      throw err
    }
  }

  /** Publishes an event through aedes' routing, as the gateway. */
  publishEvent (topic: string, payload: Buffer, qos: 0 | 1 | 2, retain = false): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.aedes.publish({ cmd: 'publish', topic, payload, qos, retain, dup: false }, err => { if (err) reject(err); else resolve() })
    })
  }

  observeDrop (reason: string, client: AedesClient | null): void {
    if (this.events.observed('frameDropped')) this.events.emit('frameDropped', { reason, clientId: client?.id })
  }

  limitReached (limit: string, clientId: string | undefined): void {
    if (this.events.observed('limitReached')) this.events.emit('limitReached', { limit, clientId })
  }
}
