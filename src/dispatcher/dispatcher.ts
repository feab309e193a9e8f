import { ClockOffset, systemClock, type Clock } from '../util/clock.js'
import { Deadlines } from '../util/deadlines.js'
import { IdTable } from '../util/id-table.js'
import type { GatewayEvents } from '../observations.js'
import { silentLogger, type Logger } from '../logger.js'
import type { FunctionAddress, InvocationType } from '../protocol/index.js'
import type { LeaseEnd, LeaseTally } from '../protocol/lease.js'
import { FunctionTable, type FunctionStats } from './function-table.js'
import { LeaseTable } from './leases.js'
import { CallObserver } from './observer.js'
import { failure } from './outcome.js'
import { PendingCall, State, type FunctionEntry, type Slot } from './pending-call.js'
import { pickSlot } from './pick.js'
import { admitToQueue, dequeued, enqueue, type QueueBounds } from './queue.js'
import { RequestIds } from './request-ids.js'
import type { InvocationTally, InvocationTallySnapshot } from './tally.js'
import type { CallerPort, CallRequest, Outcome, QueueOwner, WorkerPort, WorkSource } from './types.js'

/** The bounds of waiting calls (QueueBounds), the function table's, timeouts, and where calls are observed. */
export interface DispatcherOptions extends QueueBounds {
  /** Function names tracked at once: served, or with calls waiting for a first worker. Default: no bound. */
  readonly maxFunctions?: number
  readonly defaultTimeoutMs: number
  readonly maxTimeoutMs: number
  /** Where invocations and worker changes are observed (plugins listen); nothing is built when nobody listens. */
  readonly events?: GatewayEvents
  /** Warnings (timeouts, lost workers), and with debug on, one line per step of every invocation. */
  readonly logger?: Logger
  /** Grant direct-path leases between function threads (leases.ts). Default true; off where calls are rate-limited. */
  readonly directPath?: boolean
  /** Put payloads in the debug lines. Default false. */
  readonly logPayloads?: boolean
  /** Where deadlines and durations are read (monotonic) and the workers' `dl` (epoch). Default: the system's. */
  readonly clock?: Clock
}

/**
 * Maps each invocation to exactly one live worker. aedes has no shared subscriptions, so this is fnbus's own:
 * least-in-flight selection with a round-robin tie-break, a per-worker concurrency limit, a bounded FIFO of calls
 * waiting for capacity, deadlines, and answers accepted only from the worker that got the call.
 */
export class Dispatcher {
  readonly #options: DispatcherOptions
  readonly #table: FunctionTable
  /** The table's entries by name, read on the call path without a method call between. */
  readonly #functions: Map<string, FunctionEntry>
  /** Calls running, by delivery id (the table hands the ids out; see IdTable for why not a Map). */
  readonly #running = new IdTable<PendingCall>()
  /** Per-function `timeoutMs` (config): the default of calls to it and the most they may ask for. */
  readonly #functionTimeouts = new Map<string, number>()
  readonly #logger: Logger
  readonly #observe: CallObserver
  readonly #requestIds = new RequestIds()
  /** Every call's next due time (first-worker wait or deadline), on one timer. */
  readonly #deadlines: Deadlines<PendingCall>
  /** Monotonic: a step of the wall clock neither expires calls early nor keeps them late. */
  readonly #clock: Clock
  /** Turns a call's monotonic expiry into the epoch `dl` its worker gets. */
  readonly #epochs: ClockOffset
  #closing = false
  #drained: (() => void) | undefined
  /** Settles a queued call that fair sharing pushes out of a full queue: made once, not per call. */
  readonly #pushOut = (call: PendingCall, outcome: Outcome): void => { this.#settleQueued(call, outcome) }
  /** The direct path's leases between function threads (leases.ts). */
  readonly #leases: LeaseTable

  constructor (options: DispatcherOptions) {
    this.#options = options
    this.#table = new FunctionTable(options.maxFunctions)
    this.#functions = this.#table.byName
    this.#logger = options.logger ?? silentLogger
    this.#clock = options.clock ?? systemClock
    this.#observe = new CallObserver(this.#logger, options.events, options.logPayloads === true, this.#clock)
    this.#epochs = new ClockOffset(this.#clock)
    this.#deadlines = new Deadlines<PendingCall>(call => this.#guarded(this.#onTimer, call), { unref: true, clock: this.#clock })
    this.#leases = new LeaseTable({
      pump: entry => this.#pump(entry),
      timeouts: name => [this.#timeoutOf(name, undefined), Math.min(this.#functionTimeouts.get(name) ?? Infinity, this.#options.maxTimeoutMs)],
      events: options.events,
      grants: options.directPath !== false,
    })
  }

  /** The clock of its deadlines: a worker in this process counts a call's time left on it (`Delivery.expiresAt`). */
  get clock (): Clock {
    return this.#clock
  }

  /** Throws FNBUS_QUEUE_FULL when the name is new and the gateway tracks `maxFunctions` names already. */
  register (address: FunctionAddress, worker: WorkerPort, concurrency: number): void {
    const entry = this.#table.served(address)
    if (this.#table.attach(entry, worker, concurrency)) this.#observe.workerRegistered(address.name, worker.label, concurrency)
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
    // one removal of the worker's list, not one per slot: departure stays linear in its registrations
    const slots = this.#table.takeSlotsOf(worker)
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
    this.#leases.ownerGone(owner)
    if (owner.queuedCalls === 0) return
    for (const entry of this.#functions.values()) {
      if (entry.waiting === 0) continue
      for (const call of entry.queue) {
        if (call.state === State.Queued && call.caller.owner === owner) this.#settleQueued(call, failure('FNBUS_DISCONNECTED', 'caller gone'))
      }
      this.#table.forgetIfIdle(entry)
      if (owner.queuedCalls === 0) break
    }
  }

  /** The worker can take calls again (its connection drained): hand it what waits. */
  workerReady (worker: WorkerPort): void {
    for (const slot of this.#table.slotsOf(worker)) this.#pump(slot.entry)
  }

  /**
   * Gives calls to `name` (`Service/function`) a timeout of their own: it replaces `defaultTimeoutMs` and caps what
   * a caller asks for, so a handler that overruns it fails with FNBUS_TIMEOUT. `undefined` removes it.
   */
  setFunctionTimeout (name: string, timeoutMs: number | undefined): void {
    if (timeoutMs === undefined) this.#functionTimeouts.delete(name)
    else this.#functionTimeouts.set(name, timeoutMs)
  }

  call (request: CallRequest, caller: CallerPort, requestId: string = this.#requestIds.next()): void {
    const now = this.#clock.now()
    const known = this.#functions.get(request.fn.name)
    const tally = known === undefined ? this.#table.tallyOf(request.fn.name, request.type, false) : request.type === 'Sync' ? known.syncTally : known.asyncTally
    const takenAt = tally.timeCall(now, this.#observe.timed)
    this.#observe.received(request, caller, requestId)
    if (this.#closing) {
      this.#refuse(request, caller, requestId, tally, takenAt, failure('FNBUS_SHUTTING_DOWN', 'the gateway is shutting down'))
      return
    }
    const timeout = this.#timeoutOf(request.fn.name, request.timeoutMs)
    const wait = request.waitForWorkerMs ?? 0
    if ((known === undefined || known.slots.length === 0) && wait <= 0) {
      // refused before an entry exists: calls to made-up names must not grow the function table
      this.#refuse(request, caller, requestId, tally, takenAt, failure('FNBUS_FUNCTION_NOT_FOUND', `no worker serves ${request.fn.name}${this.#why(request.fn.name)}`))
      return
    }
    if (known === undefined && this.#table.full) {
      this.#refuse(request, caller, requestId, tally, takenAt, failure('FNBUS_QUEUE_FULL', `the gateway tracks ${this.#functions.size} functions already (limits.maxFunctions): no call can wait for a worker of ${request.fn.name}`))
      return
    }
    const entry = known ?? this.#table.entry(request.fn, false)
    const call = new PendingCall(entry, request, caller, requestId, now + timeout, takenAt)
    if (entry.slots.length === 0) call.waitUntil = Math.min(now + wait, call.expiresAt)
    const slot = pickSlot(entry, request.localOnly === true)
    if (slot !== undefined) {
      this.#start(call, slot, now)
      return
    }
    const refusal = admitToQueue(entry, caller.owner, request.payload.encodedLength, this.#options, this.#pushOut)
    if (refusal !== undefined) {
      this.#refuse(request, caller, requestId, tally, takenAt, failure('FNBUS_QUEUE_FULL', refusal))
      this.#table.forgetIfIdle(entry)
      return
    }
    enqueue(entry, call, request.payload.encodedLength)
    this.#arm(call, call.waitUntil > 0 ? call.waitUntil : call.expiresAt, now)
    this.#leases.pressure(entry)
  }

  /** What a function thread says of its direct-path leases; false when it is not what it may say. */
  fromThread (owner: QueueOwner, message: LeaseEnd | LeaseTally): boolean {
    return this.#leases.fromThread(owner, message)
  }

  /** Leases held now, and the calls that settled on one since the start. */
  get direct (): { readonly leases: number, readonly calls: number } {
    return { leases: this.#leases.size, calls: this.#leases.directCalls }
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
    return this.#table.stats()
  }

  /** Per function, the concurrency of this gateway's own workers (not other gateways'): what a cluster announces. */
  localCapacity (): Map<string, number> {
    return this.#table.localCapacity()
  }

  /** The concurrency of this gateway's own workers of `name`: how much stored work a cluster's lane pulls at once. */
  localConcurrency (name: string): number {
    let concurrency = 0
    for (const slot of this.#functions.get(name)?.slots ?? []) if (slot.worker.remote !== true) concurrency += slot.concurrency
    return concurrency
  }

  get inFlight (): number {
    return this.#running.size
  }

  /**
   * Why `name` has no worker, when something knows (the supervisor: its instances keep failing to start), for the
   * FNBUS_FUNCTION_NOT_FOUND a caller gets. Asked on that path only.
   */
  explainMissing (explain: (name: string) => string | undefined): void {
    this.#explainMissing = explain
  }

  #explainMissing: ((name: string) => string | undefined) | undefined = undefined

  #why (name: string): string {
    const reason = this.#explainMissing?.(name)
    return reason === undefined ? '' : `: ${reason}`
  }

  /**
   * The gateway is stopping: new calls and the ones waiting fail with FNBUS_SHUTTING_DOWN, those running go on. Its
   * functions stop next, and the calls waiting for them learn why (not FNBUS_FUNCTION_NOT_FOUND as their workers go).
   */
  beginShutdown (): void {
    this.#closing = true
    this.#leases.revokeAll()
    for (const entry of this.#functions.values()) {
      for (const call of entry.queue) {
        if (call.state === State.Queued) this.#settleQueued(call, failure('FNBUS_SHUTTING_DOWN', 'the gateway is shutting down'))
      }
    }
  }

  /**
   * Takes no new calls, fails queued ones with FNBUS_SHUTTING_DOWN, lets running ones finish for up to `graceMs`,
   * then fails what is left with FNBUS_SHUTTING_DOWN.
   */
  async drain (graceMs: number): Promise<void> {
    this.beginShutdown()
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

  /** How long a call to `name` that asks for nothing may run: its function's timeout, else the default. */
  callTimeout (name: string): number {
    return this.#timeoutOf(name, undefined)
  }

  /** A call's timeout: what it asked for, else the function's, else the default; never above the function's or the maximum. */
  #timeoutOf (name: string, asked: number | undefined): number {
    const functionTimeout = this.#functionTimeouts.get(name)
    const wanted = asked ?? functionTimeout ?? this.#options.defaultTimeoutMs
    return Math.min(Math.max(wanted, 1), functionTimeout ?? Infinity, this.#options.maxTimeoutMs)
  }

  #start (call: PendingCall, slot: Slot, now = this.#clock.now()): void {
    call.state = State.Running
    call.slot = slot
    call.deliveryId = this.#running.add(call)
    call.deadline = this.#epochs.toEpoch(call.expiresAt, now)
    slot.inFlight++
    this.#arm(call, call.expiresAt, now)
    this.#observe.dispatched(call, slot)
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
        this.#settleQueued(call, failure('FNBUS_FUNCTION_NOT_FOUND', `no worker for ${call.entry.address.name} appeared in time (waitForWorker)${this.#why(call.entry.address.name)}`))
        this.#table.forgetIfIdle(call.entry)
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
    dequeued(call)
    this.#deadlines.clear(call)
    if (call.caller.alive) this.#settleCaller(call, outcome)
    this.#observe.settled(call.request, call.requestId, this.#tallyOfCall(call), call.takenAt, outcome, undefined)
    if (!outcome.ok && outcome.error.code === 'FNBUS_TIMEOUT') this.#observe.timedOut(call, outcome.error, undefined)
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
    this.#observe.settled(request, requestId, tally, takenAt, outcome, undefined)
  }

  /** The tally a call counts in; read when it settles, as a worker registering may have given its function one of its own. */
  #tallyOfCall (call: PendingCall): InvocationTally {
    return call.request.type === 'Sync' ? call.entry.syncTally : call.entry.asyncTally
  }

  /**
   * A call the bus refused before it reached the dispatcher (the policy, a rate limit, an oversize payload, a store
   * that could not take an Async invocation): counted with the others, neither timed nor observed.
   */
  refused (fn: FunctionAddress, type: InvocationType, code: string): void {
    this.#table.tallyFor(fn, type).countError(code)
  }

  /** Every function's settled invocations by type and outcome, and a sample of their latencies, since the start. */
  tallies (): InvocationTallySnapshot[] {
    return this.#table.tallies()
  }

  #finish (call: PendingCall, outcome: Outcome, pump: boolean): void {
    call.state = State.Done
    this.#deadlines.clear(call)
    this.#running.delete(call.deliveryId)
    const slot = call.slot as Slot
    slot.inFlight--
    if (call.caller.alive) this.#settleCaller(call, outcome)
    this.#observe.settled(call.request, call.requestId, this.#tallyOfCall(call), call.takenAt, outcome, slot.worker.label)
    if (!outcome.ok && outcome.error.code === 'FNBUS_TIMEOUT') this.#observe.timedOut(call, outcome.error, slot.worker.label)
    const owner = call.caller.owner
    // between two function threads, the next calls may go direct (leases.ts)
    if (pump && outcome.ok && owner?.leaseLink !== undefined && slot.worker.leaseLink !== undefined && call.request.type === 'Sync' && call.caller.alive) {
      this.#leases.settled(owner, slot, call.request.identity, call.requestId)
    }
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
      const slot = pickSlot(entry, head.request.localOnly === true)
      if (slot === undefined) break
      entry.queue.shift()
      dequeued(head)
      head.waitUntil = 0
      this.#start(head, slot)
    }
    // Sync calls first: stored work only takes slots that no waiting call wants
    const source = entry.source
    if (source === undefined || entry.waiting > 0 || this.#closing) return
    const localOnly = source.localOnly === true
    for (let slot = pickSlot(entry, localOnly); slot !== undefined; slot = pickSlot(entry, localOnly)) {
      const work = source.next()
      if (work === undefined) break
      const timeout = this.#timeoutOf(entry.address.name, work.timeoutMs)
      const now = this.#clock.now()
      const takenAt = (work.request.type === 'Sync' ? entry.syncTally : entry.asyncTally).timeCall(now, this.#observe.timed)
      this.#start(new PendingCall(entry, work.request, work.caller, work.requestId, now + timeout, takenAt), slot, now)
    }
    // stored work that found no room: leases give theirs back
    if (source.waiting === true) this.#leases.pressure(entry)
  }

  /** Stored work for `address` becomes available through `source`; it is pulled whenever a worker has room. */
  setSource (address: FunctionAddress, source: WorkSource): void {
    this.#table.entry(address, true).source = source
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
    this.#observe.workerGone(slot.entry.address.name, slot.worker.label, slot.concurrency)
    this.#table.detach(slot, unindex)
    this.#leases.detached(slot)
  }

  /** After workers left: queued calls fail with FNBUS_FUNCTION_NOT_FOUND unless they asked to wait for a worker. */
  #afterWorkersLeft (entry: FunctionEntry): void {
    if (entry.slots.length > 0) {
      this.#pump(entry)
      return
    }
    if (entry.waiting === 0) {
      this.#table.forgetIfIdle(entry)
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
    this.#table.forgetIfIdle(entry)
  }
}
