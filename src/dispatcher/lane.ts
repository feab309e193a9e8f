import type { Logger } from '../logger.js'
import type { GatewayEvents } from '../observations.js'
import { Payload, type FunctionAddress } from '../protocol/index.js'
import type { InvocationError, InvocationStore, StoredInvocation } from '../store/types.js'
import type { Clock } from '../util/clock.js'
import { Fifo } from '../util/fifo.js'
import { MinHeap } from '../util/heap.js'
import { MAX_RETRY_DELAY_MS, retryDelay, type AsyncFunctionOptions } from './async-options.js'
import { describePayload, messageOf, type Destinations } from './destinations.js'
import type { Dispatcher } from './dispatcher.js'
import type { CallerPort, Outcome, Work, WorkSource } from './types.js'

/** Invocations read from disk at a time, and the refill mark: memory stays bounded whatever the backlog. */
export const READ_BATCH = 256
const REFILL_BELOW = 64

/** What a lane uses of the async engine (which is one). */
export interface LaneHost {
  /** Backoff waits on its monotonic time; `createdAt`, `notBefore` and `diedAt` in the store are on its epoch. */
  readonly clock: Clock
  /** The gateway shuts down: an interrupted invocation stays stored. */
  readonly closed: boolean
  readonly hooks: { readonly logger: Logger, readonly events?: GatewayEvents }
  options (fn: string): AsyncFunctionOptions
  /** Keeps a store operation visible to the engine's close(). */
  track<T> (write: Promise<T>): Promise<T>
  /** The lane of `fn` let go. */
  dropLane (fn: string, lane: Lane): void
}

/** The stored work of one function, as the dispatcher sees it. */
export class Lane implements WorkSource {
  readonly #fn: FunctionAddress
  readonly #engine: LaneHost
  readonly #store: InvocationStore
  readonly #dispatcher: Dispatcher
  readonly #destinations: Destinations
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

  constructor (fn: FunctionAddress, engine: LaneHost, store: InvocationStore, dispatcher: Dispatcher, destinations: Destinations) {
    this.#fn = fn
    this.#engine = engine
    this.#store = store
    this.#dispatcher = dispatcher
    this.#destinations = destinations
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

  get waiting (): boolean {
    return this.#ready.length > 0 || this.#due.length > 0
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
      return storedWork(this.#fn, invocation, new StoredCaller(this, invocation))
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
        this.#destinations.announce(this.#fn.name, 'onSuccess', invocation, () => ({ statusCode: 200, ...describePayload(outcome.payload) }))
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
      this.#destinations.reportDead(this.#fn.name, invocation, dead, error)
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

/**
 * A stored invocation as the dispatcher runs it: with its function's timeout (it asks for none), as the identity that
 * made it (none for `$anonymous` or `$gateway`). A cluster's lanes hand theirs out alike (src/cluster/async-lane.ts).
 */
export function storedWork (fn: FunctionAddress, invocation: StoredInvocation, caller: CallerPort): Work {
  return {
    request: {
      fn,
      type: 'Async',
      payload: Payload.fromWire(invocation.payloadKind, invocation.payload),
      context: invocation.context,
      timeoutMs: undefined,
      waitForWorkerMs: undefined,
      identity: invocation.caller !== undefined && !invocation.caller.startsWith('$') ? invocation.caller : undefined,
    },
    caller,
    requestId: invocation.id,
    timeoutMs: undefined,
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
