import { FnbusError } from '../errors.js'
import { Fifo } from '../util/fifo.js'
import type { FunctionAddress, InvocationType } from '../protocol/index.js'
import type { FunctionEntry, Slot } from './pending-call.js'
import { InvocationTally, MAX_UNSERVED_TALLIES, OTHER_FUNCTIONS, type InvocationTallySnapshot } from './tally.js'
import type { WorkerPort } from './types.js'

export interface FunctionStats {
  readonly name: string
  readonly workers: readonly { readonly label: string, readonly concurrency: number, readonly inFlight: number }[]
  readonly queued: number
}

/**
 * The dispatcher's function table: an entry per name that has workers, calls waiting for a first worker, or stored
 * work; each worker's slots; and the tallies of every name ever called. Names come and go (callers may make them
 * up): entries are forgotten once idle, the table holds at most `maxFunctions`, and tallies of names nobody served
 * are bounded.
 */
export class FunctionTable {
  /** The entries by name. The dispatcher reads this map itself on the call path: no method call between. */
  readonly byName = new Map<string, FunctionEntry>()
  readonly #maxFunctions: number
  readonly #slotsByWorker = new Map<WorkerPort, Slot[]>()
  /** Every tally, by type and function name: they outlive workers and entries (Prometheus counters never go back). */
  readonly #tallies = new Map<string, InvocationTally>()
  /** Tallies made for names nobody served when they were called: bounded, as callers may make names up. */
  #unservedTallies = 0

  constructor (maxFunctions: number | undefined) {
    this.#maxFunctions = maxFunctions ?? Infinity
  }

  /** Entries: functions with workers, calls waiting for one, or a source of stored work. */
  get size (): number {
    return this.byName.size
  }

  /** Whether a new name would exceed `maxFunctions`. */
  get full (): boolean {
    return this.byName.size >= this.#maxFunctions
  }

  /** `served`: a worker registers, or stored work exists; else a call waits for a first worker of a name never served. */
  entry (address: FunctionAddress, served: boolean): FunctionEntry {
    let entry = this.byName.get(address.name)
    if (entry === undefined) {
      entry = {
        address, slots: [], queue: new Fifo(), waiting: 0, queuedBytes: 0, cursor: 0, source: undefined,
        syncTally: this.tallyOf(address.name, 'Sync', served),
        asyncTally: this.tallyOf(address.name, 'Async', served),
      }
      this.byName.set(address.name, entry)
    }
    return entry
  }

  /** The entry a worker registers in. Throws FNBUS_QUEUE_FULL when the name is new and the table is full. */
  served (address: FunctionAddress): FunctionEntry {
    if (!this.byName.has(address.name) && this.full) {
      throw new FnbusError('FNBUS_QUEUE_FULL', `the gateway tracks ${this.byName.size} functions already (limits.maxFunctions); ${address.name} cannot be served`)
    }
    const entry = this.entry(address, true)
    if (entry.syncTally.fn !== address.name) {
      // first called (and tallied as _other) before anyone served it: from now on it counts under its own name
      entry.syncTally = this.tallyOf(address.name, 'Sync', true)
      entry.asyncTally = this.tallyOf(address.name, 'Async', true)
    }
    return entry
  }

  /**
   * Drops a function's entry once nothing needs it: no worker, no waiting call, no stored work it could pull (a
   * source that agrees to let go). Names come and go (callers may make them up): their state must not stay.
   */
  forgetIfIdle (entry: FunctionEntry): void {
    if (entry.slots.length > 0 || entry.waiting > 0) return
    if (entry.source !== undefined) {
      if (entry.source.release?.() !== true) return
      entry.source = undefined
    }
    if (this.byName.get(entry.address.name) === entry) this.byName.delete(entry.address.name)
  }

  /** Gives `worker` a slot in `entry`; true when it is new there, else its concurrency changes. */
  attach (entry: FunctionEntry, worker: WorkerPort, concurrency: number): boolean {
    const known = entry.slots.find(s => s.worker === worker)
    if (known !== undefined) {
      known.concurrency = concurrency
      return false
    }
    const slot: Slot = { worker, entry, concurrency, inFlight: 0 }
    entry.slots.push(slot)
    const slots = this.#slotsByWorker.get(worker)
    if (slots === undefined) this.#slotsByWorker.set(worker, [slot])
    else slots.push(slot)
    return true
  }

  /** `unindex`: also drop the slot from its worker's list (takeSlotsOf drops the whole list at once). */
  detach (slot: Slot, unindex = true): void {
    const entry = slot.entry
    entry.slots = entry.slots.filter(s => s !== slot)
    entry.cursor = 0
    const slots = unindex ? this.#slotsByWorker.get(slot.worker) : undefined
    if (slots !== undefined) {
      const rest = slots.filter(s => s !== slot)
      if (rest.length === 0) this.#slotsByWorker.delete(slot.worker)
      else this.#slotsByWorker.set(slot.worker, rest)
    }
  }

  slotsOf (worker: WorkerPort): readonly Slot[] {
    return this.#slotsByWorker.get(worker) ?? []
  }

  /** The worker's slots, its list removed from the index at once: a departure stays linear in its registrations. */
  takeSlotsOf (worker: WorkerPort): readonly Slot[] {
    const slots = this.#slotsByWorker.get(worker) ?? []
    this.#slotsByWorker.delete(worker)
    return slots
  }

  /**
   * The tally of `name` and `type`, made on first use. `served`: the name has (or had) a worker; other names get
   * tallies of their own only up to MAX_UNSERVED_TALLIES, then share `_other`.
   */
  tallyOf (name: string, type: 'Sync' | 'Async', served: boolean): InvocationTally {
    const key = type + ' ' + name
    let tally = this.#tallies.get(key)
    if (tally !== undefined) return tally
    if (!served) {
      if (this.#unservedTallies >= MAX_UNSERVED_TALLIES) return this.tallyOf(OTHER_FUNCTIONS, type, true)
      this.#unservedTallies++
    }
    tally = new InvocationTally(name, type)
    this.#tallies.set(key, tally)
    return tally
  }

  /** The tally a call to `fn` counts in: its entry's, or one of a name without an entry. */
  tallyFor (fn: FunctionAddress, type: InvocationType): InvocationTally {
    const known = this.byName.get(fn.name)
    return known === undefined ? this.tallyOf(fn.name, type, false) : type === 'Sync' ? known.syncTally : known.asyncTally
  }

  tallies (): InvocationTallySnapshot[] {
    const out: InvocationTallySnapshot[] = []
    for (const tally of this.#tallies.values()) out.push(tally.snapshot())
    return out
  }

  /** What this gateway's own workers serve: per function, their concurrency summed (what a cluster announces). */
  localCapacity (): Map<string, number> {
    const out = new Map<string, number>()
    for (const entry of this.byName.values()) {
      let concurrency = 0
      for (const slot of entry.slots) if (slot.worker.remote !== true) concurrency += slot.concurrency
      if (concurrency > 0) out.set(entry.address.name, concurrency)
    }
    return out
  }

  stats (): FunctionStats[] {
    const out: FunctionStats[] = []
    for (const entry of this.byName.values()) {
      if (entry.slots.length === 0 && entry.waiting === 0) continue
      out.push({
        name: entry.address.name,
        workers: entry.slots.map(s => ({ label: s.worker.label, concurrency: s.concurrency, inFlight: s.inFlight })),
        queued: entry.waiting,
      })
    }
    return out
  }
}
