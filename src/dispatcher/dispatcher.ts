import { nanoid } from 'nanoid'
import { FnbusError, type ErrorCode } from '../errors.js'
import { ClockOffset, systemClock, type Clock } from '../util/clock.js'
import { Deadlines, type Timed } from '../util/deadlines.js'
import { paddedDecimal } from '../util/decimal.js'
import { IdTable } from '../util/id-table.js'
import type { GatewayEvents, InvocationOutcome } from '../observations.js'
import { logsAt, silentLogger, type Logger } from '../logger.js'
import { Payload, type FunctionAddress, type InvocationType } from '../protocol/index.js'
import { Fifo } from '../util/fifo.js'
import { InvocationTally, MAX_UNSERVED_TALLIES, OTHER_FUNCTIONS, type InvocationTallySnapshot } from './tally.js'
import { payloadForLog } from './trace.js'
import type { CallerPort, CallRequest, Delivery, Outcome, QueueOwner, WorkerPort, WorkSource } from './types.js'

export interface DispatcherOptions {
  /** Calls that may wait for a free worker, per function; one more is FNBUS_QUEUE_FULL. */
  readonly maxQueuedCalls: number
  /** Payload bytes of the calls waiting for a worker of one function. Default: no bound. */
  readonly maxQueuedBytes?: number
  /** Payload bytes of the calls one connection has waiting, all functions together. Default: no bound. */
  readonly maxQueuedBytesPerClient?: number
  /** Function names tracked at once: served, or with calls waiting for a first worker. Default: no bound. */
  readonly maxFunctions?: number
  readonly defaultTimeoutMs: number
  readonly maxTimeoutMs: number
  /** Where invocations and worker changes are observed (plugins listen); nothing is built when nobody listens. */
  readonly events?: GatewayEvents
  /** Warnings (timeouts, lost workers), and with debug on, one line per step of every invocation. */
  readonly logger?: Logger
  /** Put payloads in the debug lines. Default false. */
  readonly logPayloads?: boolean
  /** Where deadlines and durations are read (monotonic) and the workers' `dl` (epoch). Default: the system's. */
  readonly clock?: Clock
}

/** One worker's registration for one function. */
interface Slot {
  readonly worker: WorkerPort
  readonly entry: FunctionEntry
  concurrency: number
  inFlight: number
}

interface FunctionEntry {
  readonly address: FunctionAddress
  slots: Slot[]
  readonly queue: Fifo<PendingCall>
  /** Queued calls still waiting; the queue also holds settled ones, skipped when reached. */
  waiting: number
  /** Their payload bytes (as they came off the wire; an in-process value counts 0). */
  queuedBytes: number
  /** Round-robin cursor: where the next search for a free worker starts. */
  cursor: number
  /** Stored (Async) work of this function, pulled when no Sync call waits. */
  source: WorkSource | undefined
  /** Settled calls of each type, counted here rather than by a listener per call (see InvocationTally). */
  syncTally: InvocationTally
  asyncTally: InvocationTally
}

const enum State { Queued, Running, Done }

/** What a finished call holds instead of its request and caller: nothing that keeps other objects alive. */
const RELEASED_CALLER: CallerPort = { alive: false, settle: () => {} }
const RELEASED_REQUEST: CallRequest = {
  fn: { serviceName: '', functionName: '', name: '' },
  type: 'Sync',
  payload: Payload.of(null),
  context: undefined,
  timeoutMs: undefined,
  waitForWorkerMs: undefined,
}

/** A call, from its arrival to its outcome; while it runs, it is also the Delivery its worker gets. */
class PendingCall implements Timed, Delivery {
  deliveryId = 0
  state = State.Queued
  slot: Slot | undefined = undefined
  deadlineAt = 0
  deadlinePrev: Timed | undefined = undefined
  deadlineNext: Timed | undefined = undefined
  deadlineLane: Timed['deadlineLane'] = undefined
  /** Until when (the dispatcher's monotonic clock) the call waits for a first worker; 0 when it does not wait. */
  waitUntil = 0
  /** Payload bytes counted against its function's queue and its connection while it waits. */
  queuedBytes = 0
  /** Epoch ms, as the worker gets it (`dl`): set when the call is handed to one. */
  deadline = 0

  constructor (
    readonly entry: FunctionEntry,
    public request: CallRequest,
    public caller: CallerPort,
    readonly requestId: string,
    /** When the call times out, on the dispatcher's monotonic clock. */
    readonly expiresAt: number,
    /** The monotonic clock when the dispatcher took the call; 0 when it is not timed (see InvocationTally.timeCall). */
    readonly takenAt: number,
  ) {}

  /**
   * Drops what the call held once it is done. A finished call may sit in V8's old space, dead but not yet collected,
   * for a while; whatever young objects it still pointed to (the caller's promise, the payload) would survive every
   * scavenge meanwhile and be promoted in turn. Measured: in-process calls at 64 in flight promoted half as much
   * and cost ~15% less CPU once finished calls let go.
   */
  release (): void {
    this.request = RELEASED_REQUEST
    this.caller = RELEASED_CALLER
  }

  get fn (): FunctionAddress { return this.entry.address }
  get type (): InvocationType { return this.request.type }
  get context (): Readonly<Record<string, unknown>> | undefined { return this.request.context }
  get payload (): Payload { return this.request.payload }
}

export interface FunctionStats {
  readonly name: string
  readonly workers: readonly { readonly label: string, readonly concurrency: number, readonly inFlight: number }[]
  readonly queued: number
}

/**
 * Maps each invocation to exactly one live worker. aedes has no shared subscriptions, so this is fnbus's own:
 * least-in-flight selection with a round-robin tie-break, a per-worker concurrency limit, a bounded FIFO of calls
 * waiting for capacity, deadlines, and answers accepted only from the worker that got the call.
 */
export class Dispatcher {
  readonly #options: DispatcherOptions
  readonly #functions = new Map<string, FunctionEntry>()
  /** Calls running, by delivery id (the table hands the ids out; see IdTable for why not a Map). */
  readonly #running = new IdTable<PendingCall>()
  readonly #slotsByWorker = new Map<WorkerPort, Slot[]>()
  /** Per-function `timeoutMs` (config): the default of calls to it and the most they may ask for. */
  readonly #functionTimeouts = new Map<string, number>()
  /** Every tally, by type and function name: they outlive workers and entries (Prometheus counters never go back). */
  readonly #tallies = new Map<string, InvocationTally>()
  /** Tallies made for names nobody served when they were called: bounded, as callers may make names up. */
  #unservedTallies = 0
  readonly #events: GatewayEvents | undefined
  readonly #logger: Logger
  /** The logger when it writes debug lines, else undefined: one check per step when tracing is off. */
  readonly #trace: Logger | undefined
  readonly #logPayloads: boolean
  /**
   * Sync calls' request ids, 21 characters like the store's invocation ids: a random prefix per gateway run, then a
   * counter — unique without drawing random bytes per call.
   */
  readonly #requestIdPrefix = nanoid(11)
  #nextRequestId = 0
  /** The prefix and the counter's digits above the last six, as one string: it changes every million calls. */
  #requestIdHigh = this.#requestIdPrefix + '0000'
  /** Every call's next due time (first-worker wait or deadline), on one timer. */
  readonly #deadlines: Deadlines<PendingCall>
  /** Monotonic: a step of the wall clock neither expires calls early nor keeps them late. */
  readonly #clock: Clock
  /** Turns a call's monotonic expiry into the epoch `dl` its worker gets. */
  readonly #epochs: ClockOffset
  #closing = false
  #drained: (() => void) | undefined

  constructor (options: DispatcherOptions) {
    this.#options = options
    this.#events = options.events
    this.#logger = options.logger ?? silentLogger
    this.#trace = logsAt(this.#logger, 'debug') ? this.#logger : undefined
    this.#logPayloads = options.logPayloads === true
    this.#clock = options.clock ?? systemClock
    this.#epochs = new ClockOffset(this.#clock)
    this.#deadlines = new Deadlines<PendingCall>(call => this.#guarded(this.#onTimer, call), { unref: true, clock: this.#clock })
  }

  /** The clock of its deadlines: a worker in this process counts a call's time left on it (`Delivery.expiresAt`). */
  get clock (): Clock {
    return this.#clock
  }

  /** Throws FNBUS_QUEUE_FULL when the name is new and the gateway tracks `maxFunctions` names already. */
  register (address: FunctionAddress, worker: WorkerPort, concurrency: number): void {
    if (!this.#functions.has(address.name) && this.#functions.size >= (this.#options.maxFunctions ?? Infinity)) {
      throw new FnbusError('FNBUS_QUEUE_FULL', `the gateway tracks ${this.#functions.size} functions already (limits.maxFunctions); ${address.name} cannot be served`)
    }
    const entry = this.#entry(address, true)
    if (entry.syncTally.fn !== address.name) {
      // first called (and tallied as _other) before anyone served it: from now on it counts under its own name
      entry.syncTally = this.#tallyOf(address.name, 'Sync', true)
      entry.asyncTally = this.#tallyOf(address.name, 'Async', true)
    }
    let slot = entry.slots.find(s => s.worker === worker)
    if (slot === undefined) {
      slot = { worker, entry, concurrency, inFlight: 0 }
      entry.slots.push(slot)
      const slots = this.#slotsByWorker.get(worker)
      if (slots === undefined) this.#slotsByWorker.set(worker, [slot])
      else slots.push(slot)
      this.#logger.info({ fn: address.name, worker: worker.label, concurrency }, `${worker.label} serves ${address.name}`)
      if (this.#events?.observed('workerRegistered') === true) {
        this.#events.emit('workerRegistered', { function: address.name, worker: worker.label, concurrency })
      }
    } else {
      slot.concurrency = concurrency
    }
    this.#pump(entry)
  }

  /** The worker takes no new calls for `address`; the ones it runs may still complete. */
  unregister (address: FunctionAddress, worker: WorkerPort): boolean {
    const entry = this.#functions.get(address.name)
    const slot = entry?.slots.find(s => s.worker === worker)
    if (entry === undefined || slot === undefined) return false
    this.#detach(slot)
    this.#afterWorkersLeft(entry)
    return true
  }

  /** The worker is gone: it takes no new calls and the calls it was running fail with FNBUS_WORKER_LOST. */
  workerGone (worker: WorkerPort): void {
    const entries = new Set<FunctionEntry>()
    const slots = this.#slotsByWorker.get(worker) ?? []
    // one removal of the worker's list, not one per slot: departure stays linear in its registrations
    this.#slotsByWorker.delete(worker)
    for (const slot of slots) {
      this.#detach(slot, false)
      entries.add(slot.entry)
    }
    // Scan the calls, not the slots: a worker that unregistered (draining) and then died no longer has slots, but
    // the calls it was running must still fail now rather than at their deadline.
    let lost = 0
    for (const call of this.#running.values()) {
      if (call.slot?.worker !== worker) continue
      this.#finish(call, failure('FNBUS_WORKER_LOST', `the worker running ${call.entry.address.name} (${worker.label}) disconnected`), false)
      entries.add(call.entry)
      lost++
    }
    // one line per worker; each call's own line (debug) carries its requestId
    if (lost > 0) this.#logger.warn({ worker: worker.label, lostCalls: lost }, `worker ${worker.label} was lost with ${lost} invocation(s) in flight (FNBUS_WORKER_LOST)`)
    for (const entry of entries) this.#afterWorkersLeft(entry)
  }

  /**
   * The connection that made queued calls is gone: they are dropped now rather than when they reach the head of
   * their queue, so what they hold (their payloads) goes with the caller.
   */
  callerGone (owner: QueueOwner): void {
    if (owner.queuedCalls === 0) return
    for (const entry of this.#functions.values()) {
      if (entry.waiting === 0) continue
      for (const call of entry.queue) {
        if (call.state === State.Queued && call.caller.owner === owner) this.#settleQueued(call, failure('FNBUS_DISCONNECTED', 'caller gone'))
      }
      this.#forgetIfIdle(entry)
      if (owner.queuedCalls === 0) break
    }
  }

  /** The worker can take calls again (its connection drained): hand it what waits. */
  workerReady (worker: WorkerPort): void {
    for (const slot of this.#slotsByWorker.get(worker) ?? []) this.#pump(slot.entry)
  }

  /**
   * Gives calls to `name` (`Service/function`) a timeout of their own: it replaces `defaultTimeoutMs` and caps what
   * a caller asks for, so a handler that overruns it fails with FNBUS_TIMEOUT. `undefined` removes it.
   */
  setFunctionTimeout (name: string, timeoutMs: number | undefined): void {
    if (timeoutMs === undefined) this.#functionTimeouts.delete(name)
    else this.#functionTimeouts.set(name, timeoutMs)
  }

  call (request: CallRequest, caller: CallerPort, requestId: string = this.#newRequestId()): void {
    const now = this.#clock.now()
    const known = this.#functions.get(request.fn.name)
    const tally = known === undefined ? this.#tallyOf(request.fn.name, request.type, false) : request.type === 'Sync' ? known.syncTally : known.asyncTally
    const takenAt = tally.timeCall(now, this.#timed())
    if (this.#trace !== undefined) this.#traceReceived(request, caller, requestId)
    if (this.#closing) {
      this.#refuse(request, caller, requestId, tally, takenAt, failure('FNBUS_SHUTTING_DOWN', 'the gateway is shutting down'))
      return
    }
    const timeout = this.#timeoutOf(request.fn.name, request.timeoutMs)
    const wait = request.waitForWorkerMs ?? 0
    if ((known === undefined || known.slots.length === 0) && wait <= 0) {
      // refused before an entry exists: calls to made-up names must not grow the function table
      this.#refuse(request, caller, requestId, tally, takenAt, failure('FNBUS_FUNCTION_NOT_FOUND', `no worker serves ${request.fn.name}`))
      return
    }
    if (known === undefined && this.#functions.size >= (this.#options.maxFunctions ?? Infinity)) {
      this.#refuse(request, caller, requestId, tally, takenAt, failure('FNBUS_QUEUE_FULL', `the gateway tracks ${this.#functions.size} functions already (limits.maxFunctions): no call can wait for a worker of ${request.fn.name}`))
      return
    }
    const entry = known ?? this.#entry(request.fn, false)
    const call = new PendingCall(entry, request, caller, requestId, now + timeout, takenAt)
    if (entry.slots.length === 0) call.waitUntil = Math.min(now + wait, call.expiresAt)
    const slot = this.#pick(entry)
    if (slot !== undefined) {
      this.#start(call, slot, now)
      return
    }
    const refusal = this.#admitToQueue(entry, caller.owner, request.payload.encodedLength)
    if (refusal !== undefined) {
      this.#refuse(request, caller, requestId, tally, takenAt, failure('FNBUS_QUEUE_FULL', refusal))
      this.#forgetIfIdle(entry)
      return
    }
    this.#enqueue(entry, call, request.payload.encodedLength)
    this.#arm(call, call.waitUntil > 0 ? call.waitUntil : call.expiresAt, now)
  }

  /**
   * Whether a call of `bytes` from `owner` may wait in `entry`'s queue: undefined when it may, else why not. A full
   * queue is shared fairly: a connection with fewer calls waiting there than the connection with the most pushes
   * that one's newest call out (it fails with FNBUS_QUEUE_FULL), so one caller cannot keep every other one out.
   */
  #admitToQueue (entry: FunctionEntry, owner: QueueOwner | undefined, bytes: number): string | undefined {
    const maxCalls = this.#options.maxQueuedCalls
    const maxBytes = this.#options.maxQueuedBytes ?? Infinity
    const name = entry.address.name
    if (owner !== undefined && owner.queuedBytes + bytes > (this.#options.maxQueuedBytesPerClient ?? Infinity)) {
      return `the connection has ${owner.queuedBytes} bytes of calls waiting for workers (limits.maxQueuedBytesPerClient)`
    }
    if (bytes > maxBytes) return `a payload of ${bytes} bytes exceeds what may wait for ${name} (limits.maxQueuedBytes)`
    const full = (): boolean => entry.waiting >= maxCalls || entry.queuedBytes + bytes > maxBytes
    if (!full()) return undefined
    const why = entry.waiting >= maxCalls
      ? `${name} has ${entry.waiting} calls waiting for a worker (limits.maxQueuedCalls)`
      : `${name} has ${entry.queuedBytes} bytes of calls waiting for a worker (limits.maxQueuedBytes)`
    if (owner === undefined || maxCalls === 0) return why
    // the full path only: count the waiting calls per connection
    const counts = new Map<QueueOwner, number>()
    for (const call of entry.queue) {
      const o = call.state === State.Queued ? call.caller.owner : undefined
      if (o !== undefined) counts.set(o, (counts.get(o) ?? 0) + 1)
    }
    const mine = counts.get(owner) ?? 0
    while (full()) {
      let heaviest: QueueOwner | undefined
      let most = mine + 1
      for (const [o, n] of counts) if (n > most) { heaviest = o; most = n }
      if (heaviest === undefined) return why
      let newest: PendingCall | undefined
      for (const call of entry.queue) if (call.state === State.Queued && call.caller.owner === heaviest) newest = call
      if (newest === undefined) return why
      counts.set(heaviest, most - 1)
      this.#settleQueued(newest, failure('FNBUS_QUEUE_FULL', `${name}'s queue is full, and this connection had more calls waiting there than others (its fair share of limits.maxQueuedCalls)`))
    }
    return undefined
  }

  #enqueue (entry: FunctionEntry, call: PendingCall, bytes: number): void {
    entry.queue.push(call)
    entry.waiting++
    entry.queuedBytes += bytes
    call.queuedBytes = bytes
    const owner = call.caller.owner
    if (owner !== undefined) {
      owner.queuedCalls++
      owner.queuedBytes += bytes
    }
  }

  /** The call leaves its function's queue (started or settled): its counts go. Before release(), which drops its caller. */
  #dequeued (call: PendingCall): void {
    const entry = call.entry
    entry.waiting--
    entry.queuedBytes -= call.queuedBytes
    const owner = call.caller.owner
    if (owner !== undefined) {
      owner.queuedCalls--
      owner.queuedBytes -= call.queuedBytes
    }
    call.queuedBytes = 0
  }

  #newRequestId (): string {
    // decimal, the prefix and the high digits kept as one string; the low six without String(number) (see decimal.ts)
    const n = this.#nextRequestId++
    const low = n % 1_000_000
    if (low === 0) this.#requestIdHigh = this.#requestIdPrefix + String(n / 1_000_000).padStart(4, '0')
    return this.#requestIdHigh + paddedDecimal(low, 6)
  }

  /** A worker's answer. Ignored (returns false) unless `worker` is the one the delivery went to and it is still open. */
  complete (deliveryId: number, worker: WorkerPort, outcome: Outcome): boolean {
    const call = this.#running.get(deliveryId)
    if (call === undefined || call.slot?.worker !== worker) return false
    this.#finish(call, outcome, true)
    return true
  }

  /** Size of the function table: functions with workers, calls waiting for one, or a source of stored work. */
  get trackedFunctions (): number {
    return this.#functions.size
  }

  stats (): FunctionStats[] {
    const out: FunctionStats[] = []
    for (const entry of this.#functions.values()) {
      if (entry.slots.length === 0 && entry.waiting === 0) continue
      out.push({
        name: entry.address.name,
        workers: entry.slots.map(s => ({ label: s.worker.label, concurrency: s.concurrency, inFlight: s.inFlight })),
        queued: entry.waiting,
      })
    }
    return out
  }

  get inFlight (): number {
    return this.#running.size
  }

  /**
   * Takes no new calls, fails queued ones with FNBUS_SHUTTING_DOWN, lets running ones finish for up to `graceMs`,
   * then fails what is left with FNBUS_SHUTTING_DOWN.
   */
  async drain (graceMs: number): Promise<void> {
    this.#closing = true
    for (const entry of this.#functions.values()) {
      for (const call of entry.queue) {
        if (call.state === State.Queued) this.#settleQueued(call, failure('FNBUS_SHUTTING_DOWN', 'the gateway is shutting down'))
      }
    }
    if (this.#running.size > 0) {
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, graceMs)
        this.#drained = () => { clearTimeout(timer); resolve() }
      })
      this.#drained = undefined
    }
    for (const call of this.#running.values()) {
      this.#finish(call, failure('FNBUS_SHUTTING_DOWN', 'the gateway shut down before the function answered'), false)
    }
  }

  /** A call's timeout: what it asked for, else the function's, else the default; never above the function's or the maximum. */
  #timeoutOf (name: string, asked: number | undefined): number {
    const functionTimeout = this.#functionTimeouts.get(name)
    const wanted = asked ?? functionTimeout ?? this.#options.defaultTimeoutMs
    return Math.min(Math.max(wanted, 1), functionTimeout ?? Infinity, this.#options.maxTimeoutMs)
  }

  /** `served`: a worker registers, or stored work exists; else a call waits for a first worker of a name never served. */
  #entry (address: FunctionAddress, served: boolean): FunctionEntry {
    let entry = this.#functions.get(address.name)
    if (entry === undefined) {
      entry = {
        address, slots: [], queue: new Fifo(), waiting: 0, queuedBytes: 0, cursor: 0, source: undefined,
        syncTally: this.#tallyOf(address.name, 'Sync', served),
        asyncTally: this.#tallyOf(address.name, 'Async', served),
      }
      this.#functions.set(address.name, entry)
    }
    return entry
  }

  /** Least in flight among the workers with a free slot; ties go round-robin. */
  #pick (entry: FunctionEntry): Slot | undefined {
    const slots = entry.slots
    const n = slots.length
    let best: Slot | undefined
    let bestIndex = 0
    for (let k = 0; k < n; k++) {
      const index = (entry.cursor + k) % n
      const slot = slots[index] as Slot
      if (slot.inFlight < slot.concurrency && slot.worker.congested !== true && (best === undefined || slot.inFlight < best.inFlight)) {
        best = slot
        bestIndex = index
        if (slot.inFlight === 0) break
      }
    }
    if (best !== undefined) entry.cursor = (bestIndex + 1) % n
    return best
  }

  /** `now`: when the caller has just read the clock (a read costs about as much as the rest of this). */
  #start (call: PendingCall, slot: Slot, now = this.#clock.now()): void {
    call.state = State.Running
    call.slot = slot
    call.deliveryId = this.#running.add(call)
    call.deadline = this.#epochs.toEpoch(call.expiresAt, now)
    slot.inFlight++
    this.#arm(call, call.expiresAt, now)
    if (this.#trace !== undefined) {
      this.#trace.debug({ requestId: call.requestId, fn: call.entry.address.name, type: call.request.type, worker: slot.worker.label, deliveryId: call.deliveryId }, 'invocation dispatched')
    }
    try {
      slot.worker.deliver(call)
    } catch (err) {
      // a port that cannot take the call fails it, rather than the code that handed it over (a timer, an answer)
      this.#logger.error({ err, requestId: call.requestId, fn: call.entry.address.name, worker: slot.worker.label }, 'a worker could not take a call')
      this.#finish(call, failure('FNBUS_WORKER_LOST', `the worker of ${call.entry.address.name} (${slot.worker.label}) could not take the call`), false)
    }
  }

  #arm (call: PendingCall, at: number, now?: number): void {
    this.#deadlines.set(call, at, now)
  }

  /**
   * Runs `step` from a timer: nothing it throws may reach the event loop (one bad call must not stop the gateway).
   * Ports already keep their own errors in; this is the last guard.
   */
  #guarded (step: (call: PendingCall) => void, call: PendingCall): void {
    try {
      step.call(this, call)
    } catch (err) {
      this.#logger.error({ err, requestId: call.requestId, fn: call.entry.address.name }, 'unexpected error handling a call')
    }
  }

  /** A call's timer fired: its wait for a first worker ended, or its deadline passed. */
  #onTimer (call: PendingCall): void {
    if (call.state === State.Running) {
      // The worker's slot is freed too: an SDK worker abandons the handler at the same deadline.
      this.#finish(call, failure('FNBUS_TIMEOUT', `${call.entry.address.name} did not answer within its deadline`), true)
    } else if (call.state === State.Queued) {
      const now = this.#clock.now()
      if (call.waitUntil > 0 && call.entry.slots.length === 0) {
        this.#settleQueued(call, failure('FNBUS_FUNCTION_NOT_FOUND', `no worker for ${call.entry.address.name} appeared in time (waitForWorker)`))
        this.#forgetIfIdle(call.entry)
      } else if (call.expiresAt > now) {
        call.waitUntil = 0
        this.#arm(call, call.expiresAt)
      } else {
        this.#settleQueued(call, failure('FNBUS_TIMEOUT', `${call.entry.address.name} had no free worker before the deadline`))
      }
    }
  }

  #settleQueued (call: PendingCall, outcome: Outcome): void {
    call.state = State.Done
    this.#dequeued(call)
    this.#deadlines.clear(call)
    if (call.caller.alive) this.#settleCaller(call, outcome)
    this.#settled(call.request, call.requestId, this.#tallyOfCall(call), call.takenAt, outcome, undefined)
    if (!outcome.ok && outcome.error.code === 'FNBUS_TIMEOUT') this.#warnTimeout(call, outcome.error, undefined)
    call.release()
  }

  /** Tells the caller; what its port throws stays here (the answer may come from a timer or another worker's answer). */
  #settleCaller (call: PendingCall, outcome: Outcome): void {
    try {
      call.caller.settle(outcome)
    } catch (err) {
      this.#logger.error({ err, requestId: call.requestId, fn: call.entry.address.name }, 'a caller could not take its answer')
    }
  }

  /** A call settled before it was queued or started (no worker, queue full, shutting down). */
  #refuse (request: CallRequest, caller: CallerPort, requestId: string, tally: InvocationTally, takenAt: number, outcome: Outcome): void {
    caller.settle(outcome)
    this.#settled(request, requestId, tally, takenAt, outcome, undefined)
  }

  /** The tally a call counts in; read when it settles, as a worker registering may have given its function one of its own. */
  #tallyOfCall (call: PendingCall): InvocationTally {
    return call.request.type === 'Sync' ? call.entry.syncTally : call.entry.asyncTally
  }

  /**
   * The tally of `name` and `type`, made on first use. `served`: the name has (or had) a worker; other names get
   * tallies of their own only up to MAX_UNSERVED_TALLIES, then share `_other`.
   */
  #tallyOf (name: string, type: 'Sync' | 'Async', served: boolean): InvocationTally {
    const key = type + ' ' + name
    let tally = this.#tallies.get(key)
    if (tally !== undefined) return tally
    if (!served) {
      if (this.#unservedTallies >= MAX_UNSERVED_TALLIES) return this.#tallyOf(OTHER_FUNCTIONS, type, true)
      this.#unservedTallies++
    }
    tally = new InvocationTally(name, type)
    this.#tallies.set(key, tally)
    return tally
  }

  /**
   * A call the bus refused before it reached the dispatcher (the policy, a rate limit, an oversize payload, a store
   * that could not take an Async invocation): counted with the others, neither timed nor observed.
   */
  refused (fn: FunctionAddress, type: InvocationType, code: string): void {
    const known = this.#functions.get(fn.name)
    const tally = known === undefined ? this.#tallyOf(fn.name, type, false) : type === 'Sync' ? known.syncTally : known.asyncTally
    tally.countError(code)
  }

  /** Every function's settled invocations by type and outcome, and a sample of their latencies, since the start. */
  tallies (): InvocationTallySnapshot[] {
    const out: InvocationTallySnapshot[] = []
    for (const tally of this.#tallies.values()) out.push(tally.snapshot())
    return out
  }

  /** Whether a call's duration is wanted: by an observer of invocations, or by the debug log. */
  #timed (): boolean {
    return this.#trace !== undefined || this.#events?.observed('invocation') === true
  }

  /** Counts a settled call, and when it was timed, tells the debug log and the `invocation` listeners. */
  #settled (request: CallRequest, requestId: string, tally: InvocationTally, takenAt: number, outcome: Outcome, worker: string | undefined): void {
    if (takenAt === 0) {
      tally.record(outcome, -1)
      return
    }
    const durationMs = this.#clock.now() - takenAt
    tally.record(outcome, durationMs / 1000)
    if (this.#trace !== undefined) this.#traceFinished(request, requestId, outcome, worker, durationMs)
    const events = this.#events
    if (events === undefined || !events.observed('invocation')) return
    events.emit('invocation', {
      requestId,
      function: request.fn.name,
      service: request.fn.serviceName,
      type: request.type,
      outcome: outcomeOf(outcome),
      durationMs,
      identity: request.identity,
    })
  }

  #traceReceived (request: CallRequest, caller: CallerPort, requestId: string): void {
    const entry: Record<string, unknown> = { requestId, fn: request.fn.name, type: request.type, caller: caller.label, identity: request.identity }
    if (this.#logPayloads) entry.payload = payloadForLog(request.payload)
    this.#trace?.debug(entry, 'invocation received')
  }

  #traceFinished (request: CallRequest, requestId: string, outcome: Outcome, worker: string | undefined, durationMs: number): void {
    const entry: Record<string, unknown> = {
      requestId, fn: request.fn.name, type: request.type, worker, outcome: outcomeOf(outcome), durationMs: Math.round(durationMs * 1000) / 1000,
    }
    if (!outcome.ok) entry.error = outcome.error.message
    else if (this.#logPayloads) entry.result = payloadForLog(outcome.payload)
    this.#trace?.debug(entry, 'invocation finished')
  }

  /** A timeout is worth a warning at the default level: the function, or its workers' capacity, is not keeping up. */
  #warnTimeout (call: PendingCall, error: FnbusError, worker: string | undefined): void {
    this.#logger.warn({ requestId: call.requestId, fn: call.entry.address.name, type: call.request.type, worker }, error.message)
  }

  #finish (call: PendingCall, outcome: Outcome, pump: boolean): void {
    call.state = State.Done
    this.#deadlines.clear(call)
    this.#running.delete(call.deliveryId)
    const slot = call.slot as Slot
    slot.inFlight--
    if (call.caller.alive) this.#settleCaller(call, outcome)
    this.#settled(call.request, call.requestId, this.#tallyOfCall(call), call.takenAt, outcome, slot.worker.label)
    if (!outcome.ok && outcome.error.code === 'FNBUS_TIMEOUT') this.#warnTimeout(call, outcome.error, slot.worker.label)
    call.release()
    if (pump) this.#pump(call.entry)
    if (this.#drained !== undefined && this.#running.size === 0) this.#drained()
  }

  /** Hands queued calls to free workers, oldest first. */
  #pump (entry: FunctionEntry): void {
    while (entry.waiting > 0) {
      const head = entry.queue.peek()
      if (head === undefined) break
      if (head.state !== State.Queued) {
        entry.queue.shift()
        continue
      }
      if (!head.caller.alive) {
        entry.queue.shift()
        this.#settleQueued(head, failure('FNBUS_DISCONNECTED', 'caller gone'))
        continue
      }
      const slot = this.#pick(entry)
      if (slot === undefined) break
      entry.queue.shift()
      this.#dequeued(head)
      head.waitUntil = 0
      this.#start(head, slot)
    }
    // Sync calls first: stored work only takes slots that no waiting call wants
    const source = entry.source
    if (source === undefined || entry.waiting > 0 || this.#closing) return
    for (let slot = this.#pick(entry); slot !== undefined; slot = this.#pick(entry)) {
      const work = source.next()
      if (work === undefined) break
      const timeout = this.#timeoutOf(entry.address.name, work.timeoutMs)
      const now = this.#clock.now()
      const takenAt = (work.request.type === 'Sync' ? entry.syncTally : entry.asyncTally).timeCall(now, this.#timed())
      this.#start(new PendingCall(entry, work.request, work.caller, work.requestId, now + timeout, takenAt), slot, now)
    }
  }

  /** Stored work for `address` becomes available through `source`; it is pulled whenever a worker has room. */
  setSource (address: FunctionAddress, source: WorkSource): void {
    this.#entry(address, true).source = source
  }

  /** `source` of `name` has new work: hand it to free workers now. */
  poke (name: string): void {
    const entry = this.#functions.get(name)
    if (entry !== undefined) this.#pump(entry)
  }

  /** Whether `name` has a worker at all (stored work waits for one). */
  hasWorkers (name: string): boolean {
    return (this.#functions.get(name)?.slots.length ?? 0) > 0
  }

  /** `unindex`: also drop the slot from its worker's list (workerGone drops the whole list at once). */
  #detach (slot: Slot, unindex = true): void {
    const entry = slot.entry
    this.#logger.info({ fn: entry.address.name, worker: slot.worker.label }, `${slot.worker.label} no longer serves ${entry.address.name}`)
    if (this.#events?.observed('workerGone') === true) {
      this.#events.emit('workerGone', { function: entry.address.name, worker: slot.worker.label, concurrency: slot.concurrency })
    }
    entry.slots = entry.slots.filter(s => s !== slot)
    entry.cursor = 0
    const slots = unindex ? this.#slotsByWorker.get(slot.worker) : undefined
    if (slots !== undefined) {
      const rest = slots.filter(s => s !== slot)
      if (rest.length === 0) this.#slotsByWorker.delete(slot.worker)
      else this.#slotsByWorker.set(slot.worker, rest)
    }
  }

  /** After workers left: queued calls fail with FNBUS_FUNCTION_NOT_FOUND unless they asked to wait for a worker. */
  #afterWorkersLeft (entry: FunctionEntry): void {
    if (entry.slots.length > 0) {
      this.#pump(entry)
      return
    }
    if (entry.waiting === 0) {
      this.#forgetIfIdle(entry)
      return
    }
    const now = this.#clock.now()
    for (const call of entry.queue) {
      if (call.state !== State.Queued || call.waitUntil > 0) continue
      const wait = call.request.waitForWorkerMs ?? 0
      if (wait > 0) {
        call.waitUntil = Math.min(now + wait, call.expiresAt)
        this.#arm(call, call.waitUntil)
      } else {
        this.#settleQueued(call, failure('FNBUS_FUNCTION_NOT_FOUND', `the last worker of ${entry.address.name} left`))
      }
    }
    this.#forgetIfIdle(entry)
  }

  /**
   * Drops a function's entry once nothing needs it: no worker, no waiting call, no stored work it could pull (a
   * source that agrees to let go). Names come and go (callers may make them up): their state must not stay.
   */
  #forgetIfIdle (entry: FunctionEntry): void {
    if (entry.slots.length > 0 || entry.waiting > 0) return
    if (entry.source !== undefined) {
      if (entry.source.release?.() !== true) return
      entry.source = undefined
    }
    if (this.#functions.get(entry.address.name) === entry) this.#functions.delete(entry.address.name)
  }
}

function outcomeOf (outcome: Outcome): InvocationOutcome {
  if (!outcome.ok) return outcome.error.code
  if (outcome.functionError === undefined) return 'ok'
  return outcome.functionError === 'Handled' ? 'handled' : 'unhandled'
}

export function failure (code: ErrorCode, message: string): Outcome {
  return { ok: false, error: new FnbusError(code, message) }
}
