import type { Aedes, Client as AedesClient, Connection } from 'aedes'
import type { IncomingMessage } from 'node:http'
import type { ErrorCode } from '../errors.js'
import type { Dispatcher, FunctionStats, Outcome } from '../dispatcher/index.js'
import type { AsyncEngine, QueueStats } from '../dispatcher/async-engine.js'
import type { AsyncService } from '../dispatcher/async-service.js'
import type { DeadInvocation } from '../store/types.js'
import { parseFunctionName, type InvocationType } from '../protocol/index.js'
import { normalizeBusOptions, type BusOptions, type NormalizedBusOptions } from '../options.js'
import { InProcessCaller, InProcessValueCaller } from '../runtime/in-process.js'
import type { Handler } from '../runtime/handler.js'
import { Authenticator } from '../security/authenticate.js'
import { GatewayEvents } from '../observations.js'
import { installAuthentication } from './authenticate.js'
import { ConnectionGate } from './connections.js'
import { BusContext, type PublishTap, type StatusSource } from './context.js'
import { keepEmitOrder } from './emit-order.js'
import { configureFunction, type FunctionOptions } from './function-options.js'
import { combineTaps } from './publish-taps.js'
import { busStats, describeBus } from './handlers/status.js'
import { installHooks, installObservers } from './hooks.js'
import {
  invokeAsyncInProcess, invokeInProcess, publishInProcess, serveInProcess, subscribeInProcess,
  type EventHandler, type InvokeOptions, type PublishOptions, type ServedFunction, type ServeOptions,
} from './in-process-api.js'
import {
  authorizeManage, cancelStored, listDead, manageableBy, purgeDead, queueAs, queueStats, retryDead, type OperatorRequest,
} from './operator.js'

export { DEFAULT_CONCURRENCY } from './in-process-api.js'
export type { EventHandler, InvokeOptions, PublishOptions, ServedFunction, ServeOptions } from './in-process-api.js'
export type { AsyncOptions, FunctionOptions } from './function-options.js'
export type { OperatorRequest } from './operator.js'
export type { PublishTap, StatusSource } from './context.js'

/** An in-process call's options when it gives none: one object for all of them. */
const NO_OPTIONS: InvokeOptions = Object.freeze({})

/**
 * The function bus on an aedes instance: it takes the `$fn/` namespace out of aedes' routing, answers bus
 * envelopes, and feeds the dispatcher. Hooks the application already set on aedes keep working for every other
 * topic: the bus wraps them, it does not replace them.
 *
 * This class wires the parts and is the API plugins and the gateway use: the hooks (hooks.ts), one handler per
 * envelope type (handlers/), the operator's requests (operator.ts) and the in-process API (in-process-api.ts), which
 * all share one BusContext. The methods below that return a promise return the delegate's own (each is an async
 * function, so none throws synchronously): no second promise per call.
 */
export class FunctionBus {
  readonly aedes: Aedes
  readonly dispatcher: Dispatcher
  readonly options: NormalizedBusOptions
  /** Who a connecting client is; `issue()` gives a supervised instance its credentials. */
  readonly authenticator: Authenticator
  /** Observations of the bus's work, for plugins; nothing is built for an event nobody listens to. */
  readonly events: GatewayEvents
  readonly #ctx: BusContext
  readonly #gate: ConnectionGate

  constructor (aedes: Aedes, options?: BusOptions) {
    this.aedes = aedes
    this.options = normalizeBusOptions(options)
    const logger = this.options.logger
    this.events = new GatewayEvents((err, name) => logger.error({ err, event: name }, 'a plugin failed handling an observation'))
    this.authenticator = new Authenticator({
      identities: options?.identities,
      allowAnonymous: options?.allowAnonymous,
      logger,
      maxPendingLoginsPerAddress: this.options.limits.maxPendingLoginsPerAddress,
      clientIdStore: options?.clientIdStore,
    })
    this.#ctx = new BusContext(aedes, this.options, this.events)
    this.dispatcher = this.#ctx.dispatcher
    // innermost on aedes.publish: a message takes its turn when aedes numbers it, after the hooks let it through
    keepEmitOrder(aedes, logger)
    installHooks(this.#ctx)
    installObservers(aedes, this.events, logger)
    installAuthentication(aedes, this.authenticator, logger)
    this.#gate = new ConnectionGate(aedes, this.options, this.events)
  }

  /** Use in place of `aedes.handle`: applies the frame guard, then hands the connection to aedes. */
  readonly handle = (stream: Connection, request?: IncomingMessage): AedesClient | undefined => this.#gate.handle(stream, request)

  /** Open client connections (those `handle` took). */
  get connections (): number {
    return this.#gate.count
  }

  /**
   * Counts an invocation of `name` that a plugin gave up on before invoking, on the gateway's behalf (the routes
   * plugin: an event it could not turn into a payload), with the calls the bus refuses itself: it appears in
   * `gateway.invocations()` and in the metrics under `code`.
   */
  countRefused (name: string, type: InvocationType, code: ErrorCode): void {
    this.dispatcher.refused(parseFunctionName(name), type, code)
  }

  /**
   * Puts `tap` on every ordinary message's way through the broker (the bridges: src/bridge/; the cluster's events:
   * src/cluster/). Returns what takes it off again.
   */
  addPublishTap (tap: PublishTap): () => void {
    this.#taps.push(tap)
    this.#ctx.publishTap = combineTaps(this.#taps)
    return () => {
      this.#taps = this.#taps.filter(t => t !== tap)
      this.#ctx.publishTap = combineTaps(this.#taps)
    }
  }

  #taps: PublishTap[] = []

  /** The gateway's own Async engine, over its own store (a cluster's service takes function options from it). */
  get asyncEngine (): AsyncEngine {
    return this.#ctx.engine
  }

  /**
   * From now on Async invocations are stored and delivered by `service` (a cluster's, over JetStream:
   * src/cluster/cluster-async.ts) rather than by the gateway's own engine, which stops delivering. Called as the
   * gateway starts, before its listeners open.
   */
  useAsync (service: AsyncService): void {
    const ctx = this.#ctx
    if (ctx.async === service) return
    const previous = ctx.async
    ctx.async = service
    previous.close().catch(() => {})
    // a store that failed to open is logged where it opens
    ctx.storeReady.then(() => service.start(), () => {})
  }

  /** Sets options of one function (`Service/function`), whoever serves it; used for `functions[]` of the config. */
  setFunctionOptions (name: string, options: FunctionOptions): void {
    configureFunction(this.#ctx, name, options)
  }

  /** Stores an Async invocation in process; resolves with its id once it is durable. */
  invokeAsync (name: string, payload?: unknown, options: { readonly idempotencyKey?: string, readonly context?: Record<string, unknown>, readonly identity?: string } = {}): Promise<{ invocationId: string }> {
    return invokeAsyncInProcess(this.#ctx, name, payload, options)
  }

  /** Cancels a stored invocation that has not started. */
  cancel (invocationId: string): Promise<void> {
    return cancelStored(this.#ctx, invocationId)
  }

  /** Counts of stored invocations per function: pending, in flight, dead. */
  queueStats (fn?: string): QueueStats[] {
    return queueStats(this.#ctx, fn)
  }

  listDead (fn: string | undefined, limit = 100): Promise<DeadInvocation[]> {
    return listDead(this.#ctx, fn, limit)
  }

  /** Sends dead-lettered invocations back to their queue: one by id, or all of a function (or of every function). */
  retryDead (selector: { readonly id: string } | { readonly fn: string | undefined }): Promise<number> {
    return retryDead(this.#ctx, selector)
  }

  purgeDead (fn: string | undefined): Promise<number> {
    return purgeDead(this.#ctx, fn)
  }

  /**
   * An operator's request on stored invocations, as `identity`: a `queue` envelope, or a dashboard action. Under a
   * policy it sees and acts on the functions the identity may manage and no others.
   */
  queueAs (identity: string, request: OperatorRequest): Promise<unknown> {
    return queueAs(this.#ctx, identity, request)
  }

  /**
   * Which functions an operator sees in the status: under a policy, those `identity` may manage; undefined (all)
   * without a policy or without an identity (the HTTP port's loopback reads).
   */
  manageableBy (identity: string | undefined): ((fn: string) => boolean) | undefined {
    return manageableBy(this.#ctx, identity)
  }

  /** FNBUS_NOT_AUTHORIZED unless `identity` may manage the function, or the function of the stored invocation. */
  authorizeManage (identity: string, target: { readonly fn: string } | { readonly invocationId: string }): Promise<void> {
    return authorizeManage(this.#ctx, identity, target)
  }

  /** Serves a function inside the gateway process. */
  async serve (name: string, handler: Handler, options: ServeOptions = {}): Promise<ServedFunction> {
    return serveInProcess(this.#ctx, name, handler, options)
  }

  /** Invokes a function (Sync) from inside the gateway process; resolves with its return value. */
  invoke (name: string, payload?: unknown, options: InvokeOptions = NO_OPTIONS): Promise<unknown> {
    // one promise per call, settled straight from the dispatcher (the in-process fast path)
    return new Promise((resolve, reject) => invokeInProcess(this.#ctx, name, payload, options, new InProcessValueCaller(resolve, reject)))
  }

  /** Like `invoke`, but a function error is an outcome rather than a rejection. */
  invokeOutcome (name: string, payload: unknown, options: InvokeOptions = NO_OPTIONS): Promise<Outcome> {
    return new Promise(resolve => invokeInProcess(this.#ctx, name, payload, options, new InProcessCaller(resolve)))
  }

  /** Publishes an event as the gateway. */
  publish (topic: string, payload: unknown, options: PublishOptions = {}): Promise<void> {
    return publishInProcess(this.#ctx, topic, payload, options)
  }

  /** Subscribes to events inside the gateway process; resolves with a function that ends the subscription. */
  subscribe (filter: string, handler: EventHandler): Promise<() => Promise<void>> {
    return subscribeInProcess(this.#ctx, filter, handler)
  }

  /**
   * What a `status` envelope is answered with. The gateway provides its full status (supervised instances,
   * health, uptime); a bus attached to an application's own aedes answers with `describe()`.
   */
  provideStatus (source: StatusSource): void {
    this.#ctx.statusSource = source
  }

  /** What a `restart` request (`fnbus restart`) does: the supervisor's restart of a function; returns how many instances. */
  provideRestart (restart: (name: string) => number): void {
    this.#ctx.restarter = restart
  }

  stats (): { readonly sessions: number, readonly inFlight: number, readonly functions: FunctionStats[] } {
    return busStats(this.#ctx)
  }

  /** The bus's own view: functions with their workers, stored invocation counts, connections. */
  describe (visible?: (fn: string) => boolean): { readonly sessions: number, readonly inFlight: number, readonly functions: FunctionStats[], readonly queues: QueueStats[] } {
    return describeBus(this.#ctx, visible)
  }

  /** Takes no new calls; lets calls in flight finish within `shutdownGraceMs`, then fails them with a code. */
  /**
   * The start of a shutdown, before the functions stop: Sync calls are refused and those waiting fail with
   * FNBUS_SHUTTING_DOWN, those running finish. `close()` follows.
   */
  beginShutdown (): void {
    this.dispatcher.beginShutdown()
  }

  async close (): Promise<void> {
    const ctx = this.#ctx
    if (ctx.closed) return
    ctx.closed = true
    ctx.async.shutDown()
    await this.dispatcher.drain(this.options.shutdownGraceMs)
    await ctx.async.close()
    // the last answers (FNBUS_SHUTTING_DOWN among them) leave before aedes closes the connections
    ctx.flushSessions()
  }
}

/** Adds the function bus to an aedes instance the application created. Use `bus.handle` in place of `aedes.handle`. */
export function attachFunctionBus (aedes: Aedes, options?: BusOptions): FunctionBus {
  return new FunctionBus(aedes, options)
}
