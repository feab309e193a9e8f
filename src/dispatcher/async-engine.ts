import { FnbusError, invalidArgument } from '../errors.js'
import { logsAt, type Logger } from '../logger.js'
import type { GatewayEvents } from '../observations.js'
import type { FunctionAddress, Payload } from '../protocol/index.js'
import type { DeadInvocation, FunctionCounts, InvocationStore } from '../store/types.js'
import { systemClock, type Clock } from '../util/clock.js'
import { AgeSweep } from './age-sweep.js'
import { DEFAULT_ASYNC_OPTIONS, type AsyncFunctionOptions } from './async-options.js'
import { Destinations } from './destinations.js'
import type { Dispatcher } from './dispatcher.js'
import { Lane, type LaneHost } from './lane.js'
import { payloadForLog } from './trace.js'
import type { AsyncService, QueueStats } from './async-service.js'

export { DEFAULT_ASYNC_OPTIONS, type AsyncFunctionOptions }

const STORE_FAILURE_LOG_MS = 10_000

export type { QueueStats }

/** Function names remembered as configured or served (the status' `unknown` mark relies on it). */
const MAX_KNOWN_NAMES = 100_000

/** Names warned about as unknown, at most: past it one line says so and the rest go unsaid (callers may invent names). */
const MAX_UNKNOWN_WARNINGS = 100

export interface AsyncEngineHooks {
  /** Publishes an event (onSuccess/onFailure destinations). */
  readonly publish: (topic: string, payload: Buffer) => Promise<void>
  /** Invocations waiting, all functions together, past which a new one is FNBUS_QUEUE_FULL. Default: no bound. */
  readonly maxStoredTotal?: number
  /** Why the store has no room for a new invocation now (a disk low on space), or undefined. */
  readonly storeRoom?: () => string | undefined
  readonly logger: Logger
  /** Put payloads in the debug line of each stored invocation. Default false. */
  readonly logPayloads?: boolean
  /** Where acceptances, retries and dead letters are observed. */
  readonly events?: GatewayEvents
  /**
   * Backoff waits on its monotonic time; `createdAt`, `notBefore` and `diedAt` in the store on its epoch. Default: the
   * system's.
   */
  readonly clock?: Clock
}

/**
 * Delivers stored invocations: one lane per function pulls them from the store in order, a window at a time,
 * hands them to the dispatcher when a worker has room (after waiting Sync calls), and settles each outcome in
 * the store — completed, rescheduled with backoff, or dead-lettered.
 */
export class AsyncEngine implements LaneHost, AsyncService {
  readonly #store: InvocationStore
  readonly #dispatcher: Dispatcher
  readonly #hooks: AsyncEngineHooks
  readonly #lanes = new Map<string, Lane>()
  readonly #options = new Map<string, AsyncFunctionOptions>()
  /** Store writes under way, awaited by close(). */
  #writesUnderWay = 0
  /** What waits for the writes under way to end. */
  readonly #writesDone: (() => void)[] = []
  #closed = false
  /** Where the outcomes are told: onSuccess and onFailure topics, dead letters' log lines and observations. */
  readonly #destinations: Destinations
  /** One timer for every function's maxEventAge sweep. */
  readonly #sweep: AgeSweep
  /** Waiting invocations of all functions as last summed, those stored since, and those being stored (see #checkTotal). */
  #storedTotal = 0
  #acceptedSinceSum = 0
  #appending = 0
  #storeFailureLoggedAt = -Infinity
  /** Refused since the last line about it (see #logStoreFailure). */
  #storeFailuresUnlogged = 0

  constructor (store: InvocationStore, dispatcher: Dispatcher, hooks: AsyncEngineHooks) {
    this.#store = store
    this.#dispatcher = dispatcher
    this.#hooks = hooks
    this.clock = hooks.clock ?? systemClock
    this.#trace = logsAt(hooks.logger, 'debug') ? hooks.logger : undefined
    this.#destinations = new Destinations(hooks, fn => this.options(fn))
    this.#sweep = new AgeSweep({
      store,
      clock: this.clock,
      logger: hooks.logger,
      destinations: this.#destinations,
      closed: () => this.#closed,
      options: fn => this.options(fn),
      configured: () => this.#options.values(),
      laneOf: fn => this.#lanes.get(fn),
      track: write => this.track(write),
    })
    store.onRecovered?.(() => { for (const lane of this.#lanes.values()) lane.rewind() })
  }

  /** The logger when it writes debug lines, else undefined. */
  readonly #trace: Logger | undefined

  readonly clock: Clock

  get store (): InvocationStore {
    return this.#store
  }

  /**
   * Starts the sweep. Lanes open when a function has a worker (`served`): stored work of a function nobody serves
   * costs nothing in memory but its count.
   */
  start (): void {
    this.#sweep.schedule()
  }

  /** `name` is a function of the configuration: its stored invocations wait for a worker on purpose. */
  declare (name: string): void {
    this.#know(name)
  }

  /** Bounded: workers may register made-up names without end; past the bound a name is merely not remembered. */
  #know (name: string): void {
    if (this.#known.size < MAX_KNOWN_NAMES) this.#known.add(name)
  }

  /** Names configured or served since the start: an Async invocation of another name is worth a warning. */
  readonly #known = new Set<string>()
  /** Unknown names already warned about (bounded by MAX_UNKNOWN_WARNINGS). */
  readonly #warned = new Set<string>()

  /** The first Async invocation of a name no configuration declares and no worker has served: said once. */
  #warnIfUnknown (fn: FunctionAddress): void {
    if (this.#known.has(fn.name) || this.#warned.has(fn.name) || this.#dispatcher.hasWorkers(fn.name) || this.#warned.size > MAX_UNKNOWN_WARNINGS) return
    this.#warned.add(fn.name)
    if (this.#warned.size > MAX_UNKNOWN_WARNINGS) {
      this.#hooks.logger.warn({ limit: MAX_UNKNOWN_WARNINGS }, `Async invocations of ${MAX_UNKNOWN_WARNINGS} functions that nothing serves or declares: no more warnings for new ones`)
      return
    }
    this.#hooks.logger.warn({ fn: fn.name }, `an Async invocation of ${fn.name} was stored, but no worker serves it and no configuration names it: ` +
      'it waits until one registers (a typo in the name? `fnbus status` lists it as unknown)')
  }

  /** A worker registered for `fn`: if it has stored work, a lane starts handing it out. */
  served (fn: FunctionAddress): void {
    this.#know(fn.name)
    const lane = this.#lanes.get(fn.name)
    if (lane !== undefined) {
      lane.stored()
      return
    }
    if ((this.#store.counts().get(fn.name)?.pending ?? 0) > 0) this.lane(fn).stored()
  }

  configure (fn: string, options: Partial<AsyncFunctionOptions>): void {
    this.#options.set(fn, Object.freeze({ ...DEFAULT_ASYNC_OPTIONS, ...this.#options.get(fn), ...options }))
    // a shorter maxEventAge needs the sweep sooner
    this.#sweep.reschedule()
  }

  options (fn: string): AsyncFunctionOptions {
    return this.#options.get(fn) ?? DEFAULT_ASYNC_OPTIONS
  }

  lane (fn: FunctionAddress): Lane {
    let lane = this.#lanes.get(fn.name)
    if (lane === undefined) {
      lane = new Lane(fn, this, this.#store, this.#dispatcher, this.#destinations)
      this.#lanes.set(fn.name, lane)
      this.#dispatcher.setSource(fn, lane)
    }
    return lane
  }

  /** The lane of `fn` let go (its function has no worker left). */
  dropLane (fn: string, lane: Lane): void {
    if (this.#lanes.get(fn) === lane) this.#lanes.delete(fn)
  }

  /** New work of `fn` is durable: its lane, if a worker can drain it, reads it. */
  #stored (fn: FunctionAddress): void {
    const lane = this.#lanes.get(fn.name)
    if (lane !== undefined) lane.stored()
    else if (this.#dispatcher.hasWorkers(fn.name)) this.lane(fn).stored()
  }

  /**
   * FNBUS_QUEUE_FULL at `maxStoredTotal`. Summing every function's count on each accept would cost as much as the
   * accept; the sum is taken again every 1,024 accepts, and whenever the estimate (the last sum, plus those stored
   * since and those being stored: never below the truth) reaches the bound.
   */
  #checkTotal (): void {
    const max = this.#hooks.maxStoredTotal
    if (max === undefined) return
    if (this.#acceptedSinceSum >= 1024 || this.#storedTotal + this.#acceptedSinceSum + this.#appending >= max) {
      let total = 0
      for (const counts of this.#store.counts().values()) total += counts.pending
      this.#storedTotal = total
      this.#acceptedSinceSum = 0
    }
    if (this.#storedTotal + this.#acceptedSinceSum + this.#appending >= max) {
      throw new FnbusError('FNBUS_QUEUE_FULL', `the gateway stores ${this.#storedTotal} waiting invocations (limits.maxStoredTotal)`)
    }
  }

  /** Stores an Async call; resolves (with its id) only once it is durable. */
  /**
   * `caller`: who makes it (an identity, `$anonymous`, `$gateway`): stored with it (who may cancel it), and the scope
   * of its idempotency key.
   */
  async accept (fn: FunctionAddress, payload: Payload, context: Readonly<Record<string, unknown>> | undefined,
    idempotencyKey: string | undefined, caller: string): Promise<{ readonly invocationId: string, readonly duplicate: boolean }> {
    if (this.#closed) throw new FnbusError('FNBUS_SHUTTING_DOWN', 'the gateway is shutting down')
    const identity = caller.startsWith('$') ? undefined : caller
    const options = this.options(fn.name)
    let result: Awaited<ReturnType<InvocationStore['append']>>
    try {
      this.#checkTotal()
      const noRoom = this.#hooks.storeRoom?.()
      if (noRoom !== undefined) throw new FnbusError('FNBUS_QUEUE_FULL', noRoom)
      this.#appending++
      // counted down in `finally` rather than with promise.finally(): no promise more per accept
      const appended = this.track(this.#store.append({
        fn: fn.name,
        payloadKind: payload.kind,
        payload: payload.bytes,
        context,
        // identity names hold no `!`: the scope cannot run into the key
        idempotencyKey: idempotencyKey === undefined ? undefined : caller + '!' + idempotencyKey,
        caller,
        createdAt: this.clock.epoch(),
      }, { maxStored: options.maxStored, idempotencyWindowMs: options.idempotencyWindowMs }))
      try {
        result = await appended
      } finally {
        this.#appending--
      }
      if (!result.duplicate) this.#acceptedSinceSum++
    } catch (err) {
      const code = (err as FnbusError).code
      if (code === 'FNBUS_STORE_FAILURE') this.#logStoreFailure(err, fn.name, identity)
      else this.#trace?.debug({ fn: fn.name, identity, outcome: code }, 'Async invocation refused')
      throw err
    }
    if (this.#trace !== undefined) {
      const entry: Record<string, unknown> = { requestId: result.id, fn: fn.name, type: 'Async', identity, duplicate: result.duplicate }
      if (this.#hooks.logPayloads === true) entry.payload = payloadForLog(payload)
      this.#trace.debug(entry, result.duplicate ? 'Async invocation already stored (same idempotency key)' : 'invocation stored')
    }
    if (!result.duplicate) {
      this.#warnIfUnknown(fn)
      this.#stored(fn)
      const events = this.#hooks.events
      if (events?.observed('accepted') === true) events.emit('accepted', { requestId: result.id, function: fn.name, identity })
    }
    return { invocationId: result.id, duplicate: result.duplicate }
  }

  /**
   * One error line per STORE_FAILURE_LOG_MS at most, with how many more were refused: a full disk refuses every
   * Async call until it recovers, and a line per call would add to what fills it.
   */
  #logStoreFailure (err: unknown, fn: string, identity: string | undefined): void {
    const now = this.clock.now()
    if (now - this.#storeFailureLoggedAt < STORE_FAILURE_LOG_MS) {
      this.#storeFailuresUnlogged++
      return
    }
    this.#hooks.logger.error({ err, fn, identity, alsoRefused: this.#storeFailuresUnlogged }, 'an Async invocation could not be stored')
    this.#storeFailureLoggedAt = now
    this.#storeFailuresUnlogged = 0
  }

  /** The function a stored invocation (waiting or dead) belongs to; undefined when there is none by that id. */
  async functionOf (id: string): Promise<string | undefined> {
    const found = await this.track(this.#store.get(id))
    return found?.invocation.fn
  }

  /** Its function and who made it (undefined for invocations stored before callers were recorded). */
  async ownerOf (id: string): Promise<{ readonly fn: string, readonly caller: string | undefined } | undefined> {
    const found = await this.track(this.#store.get(id))
    return found === undefined ? undefined : { fn: found.invocation.fn, caller: found.invocation.caller }
  }

  /** Cancels a stored invocation that has not started. */
  async cancel (id: string): Promise<void> {
    for (const lane of this.#lanes.values()) {
      if (lane.isRunning(id)) throw invalidArgument(`invocation ${id} has already started; only waiting invocations can be cancelled`)
      lane.forget(id)
    }
    const removed = await this.track(this.#store.remove(id))
    if (removed === undefined) throw new FnbusError('FNBUS_INVOCATION_NOT_FOUND', `no waiting invocation ${id} (it completed, was cancelled, is dead-lettered, or never existed)`)
  }

  queueStats (fn?: string): QueueStats[] {
    const counts = this.#store.counts()
    const names = new Set<string>([...counts.keys(), ...this.#lanes.keys()])
    const out: QueueStats[] = []
    for (const name of [...names].sort()) {
      if (fn !== undefined && name !== fn) continue
      const c: FunctionCounts = counts.get(name) ?? { pending: 0, dead: 0 }
      const inFlight = this.#lanes.get(name)?.inFlight ?? 0
      if (c.pending === 0 && c.dead === 0 && inFlight === 0 && fn === undefined) continue
      out.push(this.#known.has(name) || this.#dispatcher.hasWorkers(name) ? { fn: name, pending: c.pending, inFlight, dead: c.dead } : { fn: name, pending: c.pending, inFlight, dead: c.dead, unknown: true })
    }
    return out
  }

  listDead (fn: string | undefined, limit: number): Promise<DeadInvocation[]> {
    return this.#store.listDead(fn, limit)
  }

  /** Sends dead invocations back to their queue. */
  async revive (selector: { readonly id: string } | { readonly fn: string | undefined }, resolveAddress: (name: string) => FunctionAddress): Promise<number> {
    const revived = await this.track(this.#store.revive(selector))
    for (const [fn, counts] of this.#store.counts()) {
      if (counts.pending > 0) this.#stored(resolveAddress(fn))
    }
    return revived
  }

  purgeDead (fn: string | undefined): Promise<number> {
    return this.track(this.#store.purgeDead(fn))
  }

  /**
   * Keeps a store write visible to close(), so the store is not closed under it. A count, not a Set of the writes:
   * one add and delete per invocation churned the Set's tables (see IdTable).
   */
  track<T> (write: Promise<T>): Promise<T> {
    this.#writesUnderWay++
    write.then(this.#untrack, this.#untrack)
    return write
  }

  readonly #untrack = (): void => {
    if (--this.#writesUnderWay === 0) for (const resolve of this.#writesDone.splice(0)) resolve()
  }

  get closed (): boolean {
    return this.#closed
  }

  get hooks (): AsyncEngineHooks {
    return this.#hooks
  }

  /** Takes no new invocations; those the shutdown interrupts stay stored. Call before the dispatcher drains. */
  shutDown (): void {
    this.#closed = true
  }

  /** Stops timers and waits for store writes under way. Invocations in flight stay stored: a restart delivers them. */
  async close (): Promise<void> {
    this.#closed = true
    this.#sweep.stop()
    for (const lane of this.#lanes.values()) lane.stop()
    while (this.#writesUnderWay > 0) await new Promise<void>(resolve => { this.#writesDone.push(resolve) })
  }
}
