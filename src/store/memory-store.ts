import { nanoid } from 'nanoid'
import { FnbusError, invalidArgument } from '../errors.js'
import {
  checkAppendOptions, checkFunction, checkId, checkLimit, checkNewInvocation, checkOptionalFunction, checkSeq, checkStoredInvocation,
  deadRecord, decodeRecord, encodeRecord, newRecord, rescheduledRecord, revivedRecord, toDeadInvocation, toInvocation,
  type IdempotencyEntry, type InvocationRecord,
} from './records.js'
import type {
  AppendOptions, AppendResult, DeadInvocation, FunctionCounts, InvocationError, InvocationStore, NewInvocation,
  StoredInvocation,
} from './types.js'

export interface MemoryInvocationStoreOptions {
  /** How often expired idempotency keys are forgotten. Default hourly. */
  readonly idempotencySweepIntervalMs?: number
  /** The clock, for tests. Default Date.now. */
  readonly now?: () => number
}

/** One function's records, encoded as the LevelDB store encodes them, so both behave alike byte for byte. */
class FunctionRecords {
  /** By seq. Insertion order is seq order: appends and revivals take new, higher seqs. */
  readonly pending = new Map<number, Buffer>()
  readonly dead = new Map<number, Buffer>()
  /**
   * Pending seqs, ascending, for readPending to find where to start by bisection rather than by walking the
   * whole queue. Seqs no longer pending stay in until they are half of it.
   */
  #order: number[] = []
  #gone = 0

  addPending (seq: number, value: Buffer): void {
    this.pending.set(seq, value)
    this.#order.push(seq)
  }

  deletePending (seq: number): boolean {
    if (!this.pending.delete(seq)) return false
    if (++this.#gone > 1024 && this.#gone * 2 > this.#order.length) {
      this.#order = this.#order.filter(s => this.pending.has(s))
      this.#gone = 0
    }
    return true
  }

  pendingAfter (afterSeq: number, limit: number): Buffer[] {
    const order = this.#order
    let low = 0
    let high = order.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if (order[middle]! <= afterSeq) low = middle + 1
      else high = middle
    }
    const out: Buffer[] = []
    for (let i = low; i < order.length && out.length < limit; i++) {
      const value = this.pending.get(order[i]!)
      if (value !== undefined) out.push(value)
    }
    return out
  }
}

/**
 * Stored invocations in memory, for `memory: true` gateways and tests: the semantics of the LevelDB store, with
 * nothing surviving the process. Every answer comes on a later turn of the event loop, as a real store's do, and
 * each change is applied whole on that turn, so concurrent calls meet the same bounds and keys as on disk.
 */
export class MemoryInvocationStore implements InvocationStore {
  readonly #functions = new Map<string, FunctionRecords>()
  readonly #index = new Map<string, { readonly fn: string, readonly seq: number, readonly dead: boolean }>()
  /** `fn!key` → entry: a function name holds no `!`. */
  readonly #keys = new Map<string, IdempotencyEntry>()
  readonly #counts = new Map<string, { pending: number, dead: number }>()
  readonly #sweepIntervalMs: number
  readonly #now: () => number
  #lastSeq = 0
  #turn: Promise<void> | undefined
  #sweepTimer: NodeJS.Timeout | undefined
  #state: 'new' | 'open' | 'closed' = 'new'

  constructor (options: MemoryInvocationStoreOptions = {}) {
    this.#sweepIntervalMs = options.idempotencySweepIntervalMs ?? 3600_000
    this.#now = options.now ?? Date.now
  }

  async open (): Promise<void> {
    if (this.#state !== 'new') throw invalidArgument('the invocation store was already opened')
    await this.#later()
    this.#state = 'open'
    this.#sweepTimer = setInterval(() => { this.#sweepKeys() }, this.#sweepIntervalMs)
    this.#sweepTimer.unref()
  }

  async append (invocation: NewInvocation, options: AppendOptions): Promise<AppendResult> {
    this.#assertOpen()
    checkNewInvocation(invocation)
    checkAppendOptions(options)
    await this.#later()
    this.#assertOpen()
    const fn = invocation.fn
    const keyName = invocation.idempotencyKey === undefined ? undefined : `${fn}!${invocation.idempotencyKey}`
    if (keyName !== undefined) {
      const seen = this.#keys.get(keyName)
      if (seen !== undefined && seen.exp > invocation.createdAt) return { id: seen.id, duplicate: true }
    }
    const pending = this.#counts.get(fn)?.pending ?? 0
    if (pending >= options.maxStored) {
      throw new FnbusError('FNBUS_QUEUE_FULL', `${fn} has ${pending} stored invocations (async.maxStored is ${options.maxStored})`)
    }
    const id = nanoid()
    const seq = this.#lastSeq + 1
    const value = ownCopy(encodeRecord(newRecord(invocation, id, seq)))
    this.#lastSeq = seq
    this.#records(fn).addPending(seq, value)
    this.#index.set(id, { fn, seq, dead: false })
    if (keyName !== undefined) this.#keys.set(keyName, { id, exp: invocation.createdAt + options.idempotencyWindowMs })
    this.#adjust(fn, +1, 0)
    return { id, duplicate: false }
  }

  async readPending (fn: string, afterSeq: number, limit: number): Promise<StoredInvocation[]> {
    this.#assertOpen()
    checkFunction(fn)
    checkSeq(afterSeq)
    checkLimit(limit)
    await this.#later()
    const values = this.#functions.get(fn)?.pendingAfter(afterSeq, limit) ?? []
    return values.map(value => toInvocation(decodeRecord(value)))
  }

  async get (id: string): ReturnType<InvocationStore['get']> {
    this.#assertOpen()
    checkId(id)
    await this.#later()
    const found = this.#locate(id)
    if (found === undefined) return undefined
    return found.dead
      ? { state: 'dead', invocation: toDeadInvocation(found.record) }
      : { state: 'pending', invocation: toInvocation(found.record) }
  }

  async complete (invocation: StoredInvocation): Promise<void> {
    this.#assertOpen()
    checkStoredInvocation(invocation)
    await this.#later()
    if (this.#isPending(invocation)) this.#deletePending(invocation.fn, invocation.seq, invocation.id)
  }

  async reschedule (invocation: StoredInvocation, error: InvocationError, notBefore: number): Promise<StoredInvocation> {
    this.#assertOpen()
    checkStoredInvocation(invocation)
    const record = rescheduledRecord(invocation, error, notBefore)
    const value = ownCopy(encodeRecord(record))
    await this.#later()
    if (this.#isPending(invocation)) this.#records(invocation.fn).pending.set(invocation.seq, value)
    return toInvocation(record)
  }

  async deadLetter (invocation: StoredInvocation, error: InvocationError, diedAt: number, countAttempt: boolean): Promise<DeadInvocation> {
    this.#assertOpen()
    checkStoredInvocation(invocation)
    const record = deadRecord(invocation, error, diedAt, countAttempt)
    const value = ownCopy(encodeRecord(record))
    await this.#later()
    if (this.#isPending(invocation)) {
      const { fn, seq, id } = invocation
      this.#records(fn).deletePending(seq)
      this.#records(fn).dead.set(seq, value)
      this.#index.set(id, { fn, seq, dead: true })
      this.#adjust(fn, -1, +1)
    }
    return toDeadInvocation(record)
  }

  async remove (id: string): Promise<StoredInvocation | undefined> {
    this.#assertOpen()
    checkId(id)
    await this.#later()
    const found = this.#locate(id)
    if (found === undefined || found.dead) return undefined
    this.#deletePending(found.record.fn, found.record.seq, id)
    return toInvocation(found.record)
  }

  async listDead (fn: string | undefined, limit: number): Promise<DeadInvocation[]> {
    this.#assertOpen()
    checkOptionalFunction(fn)
    checkLimit(limit)
    await this.#later()
    return this.#deadRecords(fn).slice(0, limit).map(toDeadInvocation)
  }

  async revive (selector: { readonly id: string } | { readonly fn: string | undefined }): Promise<number> {
    this.#assertOpen()
    if (typeof selector !== 'object' || selector === null) throw invalidArgument('revive takes { id } or { fn }')
    if ('id' in selector) checkId(selector.id)
    else checkOptionalFunction(selector.fn)
    await this.#later()
    let chosen: InvocationRecord[]
    if ('id' in selector) {
      const found = this.#locate(selector.id)
      chosen = found?.dead === true ? [found.record] : []
    } else {
      chosen = this.#deadRecords(selector.fn)
    }
    const now = this.#now()
    for (const dead of chosen) {
      const seq = ++this.#lastSeq
      const records = this.#records(dead.fn)
      records.dead.delete(dead.seq)
      records.addPending(seq, ownCopy(encodeRecord(revivedRecord(dead, seq, now))))
      this.#index.set(dead.id, { fn: dead.fn, seq, dead: false })
      this.#adjust(dead.fn, +1, -1)
    }
    return chosen.length
  }

  async purgeDead (fn: string | undefined): Promise<number> {
    this.#assertOpen()
    checkOptionalFunction(fn)
    await this.#later()
    let purged = 0
    for (const [name, records] of this.#functions) {
      if (fn !== undefined && name !== fn) continue
      const count = records.dead.size
      for (const value of records.dead.values()) this.#index.delete(decodeRecord(value).id)
      records.dead.clear()
      this.#adjust(name, 0, -count)
      purged += count
    }
    return purged
  }

  counts (): ReadonlyMap<string, FunctionCounts> {
    return this.#counts
  }

  async close (): Promise<void> {
    if (this.#state === 'closed') return
    clearInterval(this.#sweepTimer)
    // calls made before close() have their turn first
    await this.#later()
    this.#state = 'closed'
  }

  /** Every answer waits for the next turn of the event loop; the calls of one turn share it, in call order. */
  #later (): Promise<void> {
    this.#turn ??= new Promise(resolve => setImmediate(() => {
      this.#turn = undefined
      resolve()
    }))
    return this.#turn
  }

  #locate (id: string): { readonly record: InvocationRecord, readonly dead: boolean } | undefined {
    const entry = this.#index.get(id)
    if (entry === undefined) return undefined
    const records = this.#functions.get(entry.fn)
    const value = entry.dead ? records?.dead.get(entry.seq) : records?.pending.get(entry.seq)
    return value === undefined ? undefined : { record: decodeRecord(value), dead: entry.dead }
  }

  #isPending (invocation: StoredInvocation): boolean {
    const entry = this.#index.get(invocation.id)
    return entry !== undefined && !entry.dead && entry.fn === invocation.fn && entry.seq === invocation.seq
  }

  #deletePending (fn: string, seq: number, id: string): void {
    if (this.#functions.get(fn)?.deletePending(seq) !== true) return
    this.#index.delete(id)
    this.#adjust(fn, -1, 0)
  }

  /** Oldest first. */
  #deadRecords (fn: string | undefined): InvocationRecord[] {
    const out: InvocationRecord[] = []
    for (const [name, records] of this.#functions) {
      if (fn !== undefined && name !== fn) continue
      for (const value of records.dead.values()) out.push(decodeRecord(value))
    }
    return out.sort((a, b) => a.seq - b.seq)
  }

  #records (fn: string): FunctionRecords {
    let records = this.#functions.get(fn)
    if (records === undefined) {
      records = new FunctionRecords()
      this.#functions.set(fn, records)
    }
    return records
  }

  #adjust (fn: string, pending: number, dead: number): void {
    let counts = this.#counts.get(fn)
    if (counts === undefined) {
      counts = { pending: 0, dead: 0 }
      this.#counts.set(fn, counts)
    }
    counts.pending += pending
    counts.dead += dead
    if (counts.pending <= 0 && counts.dead <= 0) {
      this.#counts.delete(fn)
      // the function's record holder goes too: names seen once do not pile up
      const records = this.#functions.get(fn)
      if (records !== undefined && records.pending.size === 0 && records.dead.size === 0) this.#functions.delete(fn)
    }
  }

  #sweepKeys (): void {
    const now = this.#now()
    for (const [key, entry] of this.#keys) if (entry.exp <= now) this.#keys.delete(key)
  }

  #assertOpen (): void {
    if (this.#state !== 'open') {
      throw new FnbusError('FNBUS_STORE_FAILURE', this.#state === 'new' ? 'the invocation store is not open yet' : 'the invocation store is closed')
    }
  }
}

/**
 * msgpackr packs into a shared slab; a record kept for long (a dead letter) would pin the whole slab. A copy in a
 * buffer of its own keeps memory proportional to what is stored.
 */
function ownCopy (value: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(value.length)
  value.copy(copy)
  return copy
}
