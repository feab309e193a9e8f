import { FnbusError, invalidArgument } from '../errors.js'
import { logsAt, type Logger } from '../logger.js'
import type { GatewayEvents } from '../observations.js'
import { Payload, PayloadKind, type FunctionAddress } from '../protocol/index.js'
import type { DeadInvocation, FunctionCounts, InvocationError, InvocationStore, StoredInvocation } from '../store/types.js'
import type { Dispatcher } from './dispatcher.js'
import { systemClock, type Clock } from '../util/clock.js'
import { Fifo } from '../util/fifo.js'
import { MinHeap } from '../util/heap.js'
import { payloadForLog } from './trace.js'
import type { CallerPort, Outcome, Work, WorkSource } from './types.js'

/** Per-function options of stored (Async) invocations: `functions[].async` in the config. */
export interface AsyncFunctionOptions {
  /** Failed deliveries retried before the invocation is dead-lettered (AWS Lambda's default: 2). */
  readonly maxRetries: number
  /** Age after which an undelivered invocation is dead-lettered. */
  readonly maxEventAgeMs: number
  /** Pending invocations the function may have; one more is refused with FNBUS_QUEUE_FULL. */
  readonly maxStored: number
  /** First retry delay; each further retry doubles it (up to 5 minutes), with jitter. */
  readonly retryDelayMs: number
  /** How long an idempotency key is remembered. */
  readonly idempotencyWindowMs: number
  /** Topic that receives each successful result as a JSON event. */
  readonly onSuccess: string | undefined
  /** Topic that receives each dead-lettered invocation as a JSON event. */
  readonly onFailure: string | undefined
}

export const DEFAULT_ASYNC_OPTIONS: AsyncFunctionOptions = Object.freeze({
  maxRetries: 2,
  maxEventAgeMs: 6 * 3600_000,
  maxStored: 100_000,
  retryDelayMs: 1000,
  idempotencyWindowMs: 24 * 3600_000,
  onSuccess: undefined,
  onFailure: undefined,
})

const MAX_RETRY_DELAY_MS = 5 * 60_000
/** Invocations read from disk at a time, and the refill mark: memory stays bounded whatever the backlog. */
const READ_BATCH = 256
const REFILL_BELOW = 64
const SWEEP_INTERVAL_MS = 60_000
const STORE_FAILURE_LOG_MS = 10_000

export interface QueueStats {
  readonly fn: string
  /** Stored, not dead: waiting, in backoff or being delivered. */
  readonly pending: number
  readonly inFlight: number
  readonly dead: number
}

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
export class AsyncEngine {
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
  /** One timer for every function's maxEventAge sweep, served or not: no timer per name. */
  #sweepTimer: NodeJS.Timeout | undefined
  #sweeping = false
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
  start (resolveAddress: (name: string) => FunctionAddress): void {
    this.#resolve = resolveAddress
    this.#scheduleSweep()
  }

  #resolve: (name: string) => FunctionAddress = name => { throw new Error(`${name}: the engine has not started`) }

  /** A worker registered for `fn`: if it has stored work, a lane starts handing it out. */
  served (fn: FunctionAddress): void {
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
    if (this.#sweepTimer !== undefined && !this.#sweeping) {
      clearTimeout(this.#sweepTimer)
      this.#scheduleSweep()
    }
  }

  options (fn: string): AsyncFunctionOptions {
    return this.#options.get(fn) ?? DEFAULT_ASYNC_OPTIONS
  }

  lane (fn: FunctionAddress): Lane {
    let lane = this.#lanes.get(fn.name)
    if (lane === undefined) {
      lane = new Lane(fn, this, this.#store, this.#dispatcher)
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
      out.push({ fn: name, pending: c.pending, inFlight, dead: c.dead })
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

  /**
   * Dead-letters invocations older than their function's maxEventAge, every function with stored work, served or
   * not: those of a function nobody serves are read from disk, a window at a time, and dead-lettered there.
   */
  #scheduleSweep (): void {
    if (this.#closed) return
    let interval = Math.min(SWEEP_INTERVAL_MS, DEFAULT_ASYNC_OPTIONS.maxEventAgeMs)
    for (const options of this.#options.values()) interval = Math.min(interval, options.maxEventAgeMs)
    this.#sweepTimer = setTimeout(() => {
      this.#sweeping = true
      this.#sweepAll().finally(() => {
        this.#sweeping = false
        this.#scheduleSweep()
      })
    }, interval)
    this.#sweepTimer.unref()
  }

  async #sweepAll (): Promise<void> {
    for (const [fn, counts] of [...this.#store.counts()]) {
      if (counts.pending === 0 || this.#closed) continue
      try {
        const lane = this.#lanes.get(fn)
        if (lane !== undefined) await lane.sweep()
        else await this.#sweepUnserved(fn)
      } catch (err) {
        this.#hooks.logger.error({ err, fn }, 'sweeping aged invocations failed; the next sweep tries again')
      }
    }
  }

  async #sweepUnserved (fn: string): Promise<void> {
    const maxAge = this.options(fn).maxEventAgeMs
    let after = 0
    for (;;) {
      const records = await this.track(this.#store.readPending(fn, after, READ_BATCH))
      const now = this.clock.epoch()
      for (const record of records) {
        // queue order is acceptance order: the first young one ends the sweep
        if (now - record.createdAt <= maxAge || this.#closed || this.#lanes.has(fn)) return
        const error = { code: 'FNBUS_TIMEOUT', message: 'older than maxEventAge before it could be delivered' }
        const dead = await this.track(this.#store.deadLetter(record, error, now, false))
        this.reportDead(fn, record, dead, error)
      }
      const last = records.at(-1)
      if (records.length < READ_BATCH || last === undefined) return
      after = last.seq
    }
  }

  /** An invocation was dead-lettered: the log, the observation and the onFailure event say so. */
  reportDead (fn: string, invocation: StoredInvocation, dead: DeadInvocation, error: InvocationError): void {
    this.#hooks.logger.warn({ requestId: invocation.id, fn, attempts: dead.attempts, error },
      `invocation of ${fn} dead-lettered after ${dead.attempts} attempt(s): ${error.code}: ${error.message}`)
    const events = this.#hooks.events
    if (events?.observed('deadLetter') === true) {
      events.emit('deadLetter', { requestId: invocation.id, function: fn, attempts: dead.attempts, error })
    }
    this.announce(fn, 'onFailure', invocation, () => ({ attempts: dead.attempts, error }))
  }

  /**
   * Publishes an onSuccess/onFailure event, if the function has that destination (`fields` is only called then:
   * describing a result decodes its payload). Never throws: what JSON cannot hold is written as the event says.
   */
  announce (fn: string, destination: 'onSuccess' | 'onFailure', invocation: StoredInvocation, fields: () => Record<string, unknown>): void {
    const topic = this.options(fn)[destination]
    if (topic === undefined) return
    let json: string
    try {
      json = eventJson({ invocationId: invocation.id, function: fn, ...fields() })
    } catch (err) {
      this.#hooks.logger.error({ err, topic }, `the ${destination} event could not be built`)
      return
    }
    this.#hooks.publish(topic, Buffer.from(json)).catch((err: unknown) => {
      this.#hooks.logger.warn({ err, topic }, `publishing to the ${destination} topic failed`)
    })
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
    clearTimeout(this.#sweepTimer)
    for (const lane of this.#lanes.values()) lane.stop()
    while (this.#writesUnderWay > 0) await new Promise<void>(resolve => { this.#writesDone.push(resolve) })
  }
}

/** The stored work of one function, as the dispatcher sees it. */
class Lane implements WorkSource {
  readonly #fn: FunctionAddress
  readonly #engine: AsyncEngine
  readonly #store: InvocationStore
  readonly #dispatcher: Dispatcher
  /** Read from disk, in order, not yet handed out. */
  readonly #ready = new Fifo<StoredInvocation>()
  /** Retries whose backoff ended: they go out before the queue. */
  readonly #due: StoredInvocation[] = []
  readonly #running = new Map<string, StoredInvocation>()
  readonly #backoff = new MinHeap<{ readonly id: string, readonly at: number }>((a, b) => a.at < b.at)
  /** Every id this lane holds (ready, due, running, in backoff, being settled): a re-read never doubles one. */
  readonly #held = new Set<string>()
  /** Highest seq read from disk. */
  #cursor = 0
  /** Nothing beyond the cursor on disk, as of the last read. */
  #exhausted = false
  #reading = false
  /** Bumped by each new stored invocation, so a read that started before it cannot declare the lane exhausted. */
  #generation = 0
  /** Bumped by each rewind: a read that started before one is dropped (it would move the cursor past what it re-reads). */
  #rewinds = 0
  #backoffTimer: NodeJS.Timeout | undefined
  /** Store changes of this lane under way: it may not let go of its invocations before they land. */
  #writes = 0
  #stopped = false

  constructor (fn: FunctionAddress, engine: AsyncEngine, store: InvocationStore, dispatcher: Dispatcher) {
    this.#fn = fn
    this.#engine = engine
    this.#store = store
    this.#dispatcher = dispatcher
  }

  /**
   * The function has no worker left: the lane stops and forgets what it read (it is all on disk), unless an
   * invocation is running or being written. A worker that registers later gets a new lane, which reads from the start.
   */
  release (): boolean {
    if (this.#running.size > 0 || this.#writes > 0 || this.#reading) return false
    this.stop()
    this.#engine.dropLane(this.#fn.name, this)
    return true
  }

  get inFlight (): number {
    return this.#running.size
  }

  isRunning (id: string): boolean {
    return this.#running.has(id)
  }

  /** A new invocation of this function is durable. */
  stored (): void {
    this.#generation++
    this.#exhausted = false
    if (this.#dispatcher.hasWorkers(this.#fn.name) && this.#ready.length === 0) this.#read()
  }

  next (): Work | undefined {
    if (this.#stopped) return undefined
    const options = this.#engine.options(this.#fn.name)
    // an age from the stored createdAt: epoch time, the only time that survives a restart
    const now = this.#engine.clock.epoch()
    for (;;) {
      const invocation = this.#due.shift() ?? this.#ready.shift()
      if (invocation === undefined) {
        this.#read()
        return undefined
      }
      if (this.#ready.length < REFILL_BELOW) this.#read()
      if (now - invocation.createdAt > options.maxEventAgeMs) {
        this.#deadLetter(invocation, { code: 'FNBUS_TIMEOUT', message: 'older than maxEventAge before it could be delivered' }, false)
        continue
      }
      this.#running.set(invocation.id, invocation)
      return {
        request: {
          fn: this.#fn,
          type: 'Async',
          payload: Payload.fromWire(invocation.payloadKind, invocation.payload),
          context: invocation.context,
          timeoutMs: undefined,
          waitForWorkerMs: undefined,
        },
        caller: new StoredCaller(this, invocation),
        requestId: invocation.id,
        timeoutMs: undefined,
      }
    }
  }

  /** The outcome of one delivery: complete, retry later, or dead-letter. */
  settle (invocation: StoredInvocation, outcome: Outcome): void {
    this.#running.delete(invocation.id)
    // the gateway's own shutdown: it stays stored, and the next start delivers it. A worker that answers this code while
    // the gateway runs has failed an attempt like any other (else the invocation would sit in memory until a restart).
    if (!outcome.ok && outcome.error.code === 'FNBUS_SHUTTING_DOWN' && this.#engine.closed) return
    if (outcome.ok && outcome.functionError === undefined) {
      this.#write(this.#store.complete(invocation), () => {
        this.#held.delete(invocation.id)
        this.#engine.announce(this.#fn.name, 'onSuccess', invocation, () => ({ statusCode: 200, ...describePayload(outcome.payload) }))
      }, invocation)
      return
    }
    const error: InvocationError = outcome.ok
      ? { code: 'FNBUS_FUNCTION_ERROR', message: `${outcome.functionError as string}: ${messageOf(outcome.payload)}` }
      : { code: outcome.error.code, message: outcome.error.message }
    const options = this.#engine.options(this.#fn.name)
    const attempts = invocation.attempts + 1
    if (attempts > options.maxRetries) {
      this.#deadLetter(invocation, error, true)
    } else if (this.#engine.clock.epoch() - invocation.createdAt > options.maxEventAgeMs) {
      this.#deadLetter(invocation, error, true)
    } else {
      // a lost worker says nothing about the invocation: try again at once (the attempt still counts)
      const delay = error.code === 'FNBUS_WORKER_LOST' ? 0 : retryDelay(options.retryDelayMs, attempts)
      const clock = this.#engine.clock
      // the store keeps the epoch time (read back after a restart); this run waits on the monotonic clock
      const notBefore = clock.epoch() + delay
      const due = clock.now() + delay
      this.#write(this.#store.reschedule(invocation, error, notBefore), () => {
        this.#waitBackoff(invocation.id, due)
        this.#engine.hooks.logger.info({ requestId: invocation.id, fn: this.#fn.name, attempt: attempts, delayMs: delay, error },
          `attempt ${attempts} of ${this.#fn.name} failed (${error.code}); retrying in ${delay} ms`)
        const events = this.#engine.hooks.events
        if (events?.observed('retry') === true) {
          events.emit('retry', { requestId: invocation.id, function: this.#fn.name, attempt: attempts, delayMs: delay, error })
        }
      }, invocation)
    }
  }

  /** Drops a waiting invocation from memory (it is being cancelled). */
  forget (id: string): void {
    if (!this.#held.has(id) || this.#running.has(id)) return
    this.#held.delete(id)
    this.#ready.retain(invocation => invocation.id !== id)
    const index = this.#due.findIndex(invocation => invocation.id === id)
    if (index >= 0) this.#due.splice(index, 1)
    // an entry in backoff is skipped when its time comes: #fetchDue finds it gone from the store
  }

  /**
   * Reads the function's pending invocations again from the start: after the store recovered from a failed write,
   * one whose write was reported failed may be stored after all. What the lane holds already is not read twice.
   */
  rewind (): void {
    this.#rewinds++
    this.#cursor = 0
    this.#exhausted = false
    this.#reading = false
    if (this.#dispatcher.hasWorkers(this.#fn.name)) this.#read()
  }

  stop (): void {
    this.#stopped = true
    clearTimeout(this.#backoffTimer)
  }

  #read (): void {
    if (this.#reading || this.#exhausted || this.#stopped) return
    this.#reading = true
    const generation = this.#generation
    const rewinds = this.#rewinds
    this.#engine.track(this.#store.readPending(this.#fn.name, this.#cursor, READ_BATCH)).then(records => {
      if (rewinds !== this.#rewinds) return
      this.#reading = false
      const clock = this.#engine.clock
      const epoch = clock.epoch()
      for (const record of records) {
        if (record.seq > this.#cursor) this.#cursor = record.seq
        if (this.#held.has(record.id)) continue
        this.#held.add(record.id)
        // a retry's stored time, read back after a restart: no backoff is longer than MAX_RETRY_DELAY_MS, so a wait
        // beyond it can only come from the wall clock set back meanwhile
        if (record.notBefore > epoch) this.#waitBackoff(record.id, clock.now() + Math.min(record.notBefore - epoch, MAX_RETRY_DELAY_MS))
        else this.#ready.push(record)
      }
      if (records.length < READ_BATCH && generation === this.#generation) this.#exhausted = true
      if (this.#ready.length > 0) this.#dispatcher.poke(this.#fn.name)
      else if (!this.#exhausted && this.#dispatcher.hasWorkers(this.#fn.name)) this.#read()
    }, (err: unknown) => {
      if (rewinds !== this.#rewinds) return
      this.#reading = false
      this.#engine.hooks.logger.error({ err, fn: this.#fn.name }, 'reading stored invocations failed; retrying in 1 s')
      setTimeout(() => this.#read(), 1000).unref()
    })
  }

  /** `at`: on the engine's monotonic clock. */
  #waitBackoff (id: string, at: number): void {
    this.#backoff.push({ id, at })
    this.#armBackoff()
  }

  #armBackoff (): void {
    const first = this.#backoff.peek()
    clearTimeout(this.#backoffTimer)
    if (first === undefined || this.#stopped) return
    this.#backoffTimer = setTimeout(() => this.#fetchDue(), Math.max(first.at - this.#engine.clock.now(), 0))
    this.#backoffTimer.unref()
  }

  /** Backoffs that ended: read those invocations again (their payloads are not kept in memory meanwhile). */
  #fetchDue (): void {
    const now = this.#engine.clock.now()
    const ids: string[] = []
    for (let first = this.#backoff.peek(); first !== undefined && first.at <= now; first = this.#backoff.peek()) {
      this.#backoff.pop()
      ids.push(first.id)
    }
    this.#armBackoff()
    for (const id of ids) {
      this.#engine.track(this.#store.get(id)).then(found => {
        if (found?.state === 'pending' && this.#held.has(id)) {
          this.#due.push(found.invocation)
          this.#dispatcher.poke(this.#fn.name)
        } else {
          this.#held.delete(id) // cancelled meanwhile
        }
      }, (err: unknown) => {
        this.#engine.hooks.logger.error({ err, id }, 'reading a retried invocation failed; retrying in 1 s')
        this.#waitBackoff(id, this.#engine.clock.now() + 1000)
      })
    }
  }

  #deadLetter (invocation: StoredInvocation, error: InvocationError, countAttempt: boolean): void {
    this.#write(this.#store.deadLetter(invocation, error, this.#engine.clock.epoch(), countAttempt), dead => {
      this.#held.delete(invocation.id)
      this.#engine.reportDead(this.#fn.name, invocation, dead, error)
    }, invocation)
  }

  /**
   * Runs a store change; on failure the invocation is delivered again later (at-least-once) rather than lost or
   * left stuck in memory.
   */
  #write<T> (change: Promise<T>, then: (result: T) => void, invocation: StoredInvocation): void {
    this.#writes++
    this.#engine.track(change).then(result => {
      this.#writes--
      then(result)
    }, (err: unknown) => {
      this.#writes--
      this.#engine.hooks.logger.error({ err, id: invocation.id, fn: this.#fn.name }, 'store write failed; the invocation will be delivered again')
      this.#waitBackoff(invocation.id, this.#engine.clock.now() + 1000)
    }).catch((err: unknown) => {
      // what follows a write is the gateway's own code: a fault there is logged, never an unhandled rejection
      this.#engine.hooks.logger.error({ err, id: invocation.id, fn: this.#fn.name }, 'unexpected error after a store write')
    })
  }

  /** Dead-letters this function's invocations older than maxEventAge (the engine's sweep calls it). */
  async sweep (): Promise<void> {
    const maxAge = this.#engine.options(this.#fn.name).maxEventAgeMs
    let after = 0
    for (;;) {
      const records = await this.#engine.track(this.#store.readPending(this.#fn.name, after, READ_BATCH)).catch(() => [])
      const now = this.#engine.clock.epoch()
      for (const record of records) {
        // queue order is acceptance order: the first young one ends the sweep
        if (now - record.createdAt <= maxAge) return
        if (this.#running.has(record.id) || this.#stopped) continue
        this.#held.add(record.id)
        this.#ready.retain(invocation => invocation.id !== record.id)
        const due = this.#due.findIndex(invocation => invocation.id === record.id)
        if (due >= 0) this.#due.splice(due, 1)
        this.#deadLetter(record, { code: 'FNBUS_TIMEOUT', message: 'older than maxEventAge before it could be delivered' }, false)
      }
      const last = records.at(-1)
      if (records.length < READ_BATCH || last === undefined) return
      after = last.seq
    }
  }
}

/** The caller of a stored invocation: its outcome goes back to the store, not to a waiting client. */
class StoredCaller implements CallerPort {
  readonly alive = true

  constructor (readonly lane: Lane, readonly invocation: StoredInvocation) {}

  settle (outcome: Outcome): void {
    this.lane.settle(this.invocation, outcome)
  }
}

/** Exponential backoff with jitter: between half and all of base·2^(attempt−1), capped at 5 minutes. */
export function retryDelay (base: number, attempt: number): number {
  const ceiling = Math.min(MAX_RETRY_DELAY_MS, base * 2 ** (attempt - 1))
  return Math.round(ceiling / 2 + Math.random() * ceiling / 2)
}

function messageOf (payload: Payload): string {
  try {
    const value = payload.value
    return typeof value === 'string' ? value : JSON.stringify(value)
  } catch {
    return '(undecodable payload)'
  }
}

/**
 * A result as JSON: text as a string, bytes as base64, MessagePack values as themselves, integers beyond JSON's
 * exact range (BigInt) as decimal strings. A value JSON cannot hold (a cycle, a MessagePack that does not decode)
 * travels as the base64 of its bytes, with `payloadError` saying why.
 */
function describePayload (payload: Payload): Record<string, unknown> {
  if (payload.kind === PayloadKind.Bytes) return { payload: payload.bytes.toString('base64'), payloadEncoding: 'base64' }
  try {
    const value = payload.value
    eventJson(value)
    return { payload: value }
  } catch (err) {
    return {
      payload: payload.bytes.toString('base64'),
      payloadEncoding: 'base64',
      payloadError: { code: 'FNBUS_BAD_MESSAGE', message: `the result cannot be written as JSON: ${(err as Error).message}` },
    }
  }
}

/** JSON of an event: a BigInt becomes its decimal string (JSON.stringify throws on one). */
export function eventJson (value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => typeof v === 'bigint' ? v.toString() : v)
}
