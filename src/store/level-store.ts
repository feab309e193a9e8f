import { nanoid } from 'nanoid'
import type { AbstractBatchOptions, AbstractSublevel } from 'abstract-level'
import { FnbusError, invalidArgument } from '../errors.js'
import type { Database } from './database.js'
import { paddedDecimal } from '../util/decimal.js'
import { KeyFilter, KeyHashes } from './key-filter.js'
import {
  checkAppendOptions, checkFunction, checkId, checkLimit, checkNewInvocation, checkOptionalFunction, checkSeq, checkStoredInvocation,
  deadRecord, decodeIdempotencyEntry, decodeRecord, encodeIdempotencyEntry, encodeRecord, newRecord, rescheduledRecord,
  revivedRecord, storeFailure, toDeadInvocation, toInvocation, type InvocationRecord,
} from './records.js'
import type {
  AppendOptions, AppendResult, DeadInvocation, FunctionCounts, InvocationError, InvocationStore, NewInvocation,
  StoredInvocation,
} from './types.js'

type AsyncSublevel = AbstractSublevel<Database, string | Buffer | Uint8Array, string, Buffer>

/**
 * The key layout of the `async` sublevel, all in one place.
 *
 *     p!{fn}!{seq}   pending invocation (msgpack record)      seq: 16 digits, zero-padded, so key order is queue order
 *     d!{fn}!{seq}   dead invocation (record with its error)
 *     f!{fn}         the function's number (decimal), which invocation ids carry
 *     i!{id}         the key of the record of an invocation that moved from where its id says (revived), and of
 *                    every invocation stored before ids said where (the first layout indexed them all)
 *     k!{fn}!{key}   idempotency key (URI-encoded) → { id, exp }
 *     m!seq          the highest seq handed out (decimal), written in every batch that hands out one
 *
 * An id is `{function number}.{seq}.{random}` (numbers in base 36): it names its record's key, so an append
 * writes no index entry and get(id) is one read. An index entry per invocation, with its random key, cost about
 * a third of the CPU of an append (LevelDB compacts random keys), measured here.
 *
 * `!` sorts below every character a function name may hold (`[A-Za-z0-9_/-]`, lowest `-`), and `"` right after
 * it, so `[p!S/fn1!, p!S/fn1")` holds exactly the keys of `S/fn1` and none of `S/fn10` (aedes-persistence-level's
 * prefix bug, docs/design.md pitfall 4). Names are validated before they reach a key.
 */
const Keys = {
  pending: (fn: string, seq: number): string => `p!${fn}!${pad(seq)}`,
  pendingBetween: (fn: string, afterSeq: number, throughSeq: number): Range => ({ gt: `p!${fn}!${pad(afterSeq)}`, lte: `p!${fn}!${pad(throughSeq)}` }),
  allPending: { gt: 'p!', lt: 'p"' } satisfies Range,
  dead: (fn: string, seq: number): string => `d!${fn}!${pad(seq)}`,
  deadOf: (fn: string): Range => ({ gt: `d!${fn}!`, lt: `d!${fn}"` }),
  allDead: { gt: 'd!', lt: 'd"' } satisfies Range,
  function: (fn: string): string => `f!${fn}`,
  allFunctions: { gt: 'f!', lt: 'f"' } satisfies Range,
  index: (id: string): string => `i!${id}`,
  idempotency: (fn: string, key: string): string => `k!${fn}!${encodeURIComponent(key)}`,
  allIdempotency: { gt: 'k!', lt: 'k"' } satisfies Range,
  sequence: 'm!seq',
  /** `p!Service/function!0000000000000042` → `Service/function` */
  functionOf: (recordKey: string): string => recordKey.slice(2, recordKey.length - SEQ_DIGITS - 1),
  seqOf: (recordKey: string): number => Number(recordKey.slice(recordKey.length - SEQ_DIGITS)),
  isDead: (recordKey: string): boolean => recordKey.startsWith('d!'),
}

type Range = { readonly gt: string, readonly lt: string } | { readonly gt: string, readonly lte: string }

/** Invocation ids: where the record was first stored, and enough randomness that ids cannot be guessed. */
const Ids = {
  make: (functionNumber: number, seq: number): string => `${functionNumber.toString(36)}.${seq.toString(36)}.${nanoid(16)}`,
  parse (id: string): { readonly functionNumber: number, readonly seq: number } | undefined {
    const first = id.indexOf('.')
    const second = id.indexOf('.', first + 1)
    if (first < 0 || second < 0) return undefined
    const number = id.slice(0, first)
    const seq = id.slice(first + 1, second)
    if (!BASE36.test(number) || !BASE36.test(seq)) return undefined
    return { functionNumber: parseInt(number, 36), seq: parseInt(seq, 36) }
  },
  /** Whether the record of `id`, now at `seq`, needs an index entry to be found: revived, or an older id. */
  needsIndex (id: string, seq: number): boolean {
    return Ids.parse(id)?.seq !== seq
  },
}

/** Up to 10 digits: every such number is a safe integer. */
const BASE36 = /^[0-9a-z]{1,10}$/

/** Enough for every safe integer. */
const SEQ_DIGITS = 16

function pad (seq: number): string {
  return paddedDecimal(seq, SEQ_DIGITS)
}

type Operation = { readonly type: 'put', readonly key: string, readonly value: Buffer } | { readonly type: 'del', readonly key: string }

/** One caller's change inside a group: it hears back once the group's batch is written, or failed. */
interface Change {
  /** Brings the in-memory counters in line with the disk; runs only once the batch is durable. */
  readonly committed: (() => void) | undefined
  readonly failed: (() => void) | undefined
  readonly resolve: () => void
  readonly reject: (err: unknown) => void
}

/** Changes collected while the previous batch was being written: they go to disk as one batch. */
class Group {
  readonly operations: Operation[] = []
  readonly changes: Change[] = []
}

/** A group on its way to disk. */
interface Batch {
  readonly group: Group
  /** The database's failed writes when the batch started: a batch that succeeds after another failed counts as failed. */
  readonly failedWritesBefore: number
  /** Every seq handed out when the group was taken: the group holds none above it, later groups none below. */
  readonly maxSeq: number
  /** The reservation this batch writes to `m!seq`, if it moves it. */
  readonly mark: number | undefined
  /** Written (true), failed (an error), or on its way (undefined). */
  outcome: true | Error | undefined
  /** Resolves once the batch is written or failed (its changes may still wait for earlier batches). */
  readonly settled: Promise<void>
  readonly resolveSettled: () => void
}

/**
 * Batches written at once, at most. With one, a stream of small calls waits for each batch's round trip to the
 * LevelDB thread before the next can start (measured: keyed accepts in process went ~1.4x faster with two).
 */
const BATCHES_IN_FLIGHT = 2
/**
 * A group this big is written at once when a batch may start, rather than at the end of the event loop's turn. A
 * caller's window of calls arrives in one read and would otherwise go to disk, and come back answered, as one
 * convoy: the caller and the gateway then take turns, each idle while the other works. Split in two, one half is
 * written and answered while the gateway takes in the other. Measured here, Async accept between processes at 64
 * in flight: ~1.15–1.2x the rate.
 */
const EARLY_BATCH_CHANGES = 32
/** Seqs reserved ahead by each `m!seq` mark: most batches then need none, and a mark need not wait for another. */
const SEQ_RESERVATION = 65_536

export interface LevelInvocationStoreOptions {
  /**
   * fsync every batch, so that accepted invocations survive a power loss: the default. false: they survive a
   * process kill (the OS has the write), not a power loss; measured here, about a fifth more accepts a second.
   */
  readonly sync?: boolean
  /** How often expired idempotency keys are deleted (also at open). Default hourly. */
  readonly idempotencySweepIntervalMs?: number
  /** The clock, for tests. Default Date.now. */
  readonly now?: () => number
}

/** Records read or changed at a time by revive, purge and sweeps: memory stays bounded whatever the backlog. */
const BULK = 1000
/** Keys a range scan asks the native iterator for at a time. */
const SCAN_PAGE = 1024
// classic-level's option (fsync the write); abstract-level's types do not list it. Without sync no options object
// is passed at all, as none is needed.
const SYNC_WRITE = { sync: true } as AbstractBatchOptions<string, Buffer>

/**
 * Stored invocations in the gateway's LevelDB, under an `async` sublevel of the one `Database` (`openDatabase`),
 * which it takes as is and does not close.
 *
 * Group commit: every change made while a batch is being written joins the next batch, and each caller hears
 * back only once the batch holding its change is written. Counters follow the disk and never lead it: an append
 * holds a reservation against maxStored until its batch is written, and a failed batch releases it.
 */
export class LevelInvocationStore implements InvocationStore {
  readonly #db: AsyncSublevel
  /** The database the sublevel is in, and the sublevel's key prefix: batches go straight to it (see #write). */
  readonly #root: Database
  readonly #prefix: string
  readonly #sync: boolean
  readonly #sweepIntervalMs: number
  readonly #now: () => number
  readonly #counts = new Map<string, { pending: number, dead: number }>()
  /** Told after the store reloaded from a reopened database (see onRecovered). */
  readonly #recoveredListeners: (() => void)[] = []
  /** Appends in a batch not yet written, per function: they count against maxStored. */
  readonly #reserved = new Map<string, number>()
  /** Appends of keys the filter may have seen, by idempotency key on disk: a second one with the same key waits for the first. */
  readonly #keyedAppends = new Map<string, Promise<AppendResult>>()
  /**
   * remove() calls under way, by id. complete/reschedule/deadLetter skip reading the disk unless their id is
   * here: then they wait, and check that the invocation is still pending before changing it.
   */
  readonly #removals = new Map<string, Promise<void>>()
  /** Counts finished removals: a check made while one finished is made again. */
  #removalsDone = 0
  /** remove, revive and purgeDead, one at a time: each reads records and then moves them. */
  #adminQueue: Promise<void> = Promise.resolve()
  #keyFilter = new KeyFilter()
  /** Idempotency keys written while a sweep runs: it neither deletes them nor leaves them out of its filter. */
  #keysWrittenDuringSweep: Set<string> | undefined
  #sweep: Promise<void> | undefined
  #sweepTimer: NodeJS.Timeout | undefined
  /** Function numbers (ids carry them), both ways; a number is never reused. */
  readonly #functionNumbers = new Map<string, number>()
  readonly #functionNames = new Map<number, string>()
  /** Functions whose number is not on disk yet: each append writes it until one batch holding it is written. */
  readonly #unregistered = new Set<string>()
  #nextFunctionNumber = 0
  /** Highest seq handed out. */
  #lastSeq = 0
  /** What `m!seq` on disk says: no seq up to it is handed out again after a restart. */
  #reservedThrough = 0
  /** The batch on its way that moves the mark, if any: only one at a time, so the mark on disk never goes back. */
  #markBatch: Batch | undefined
  /**
   * Seqs up to here are in batches written, and so is every batch before them: readers look no further, since a
   * batch may reach the disk before the one started ahead of it, and a reader's cursor must never pass a record
   * that is still on its way.
   */
  #visibleThrough = 0
  /** Batches on their way, oldest first; their changes hear back in this order. */
  readonly #inFlight: Batch[] = []
  #group = new Group()
  #writer: Promise<void> | undefined
  /** Wakes the writer while it waits for its batches with nothing else to write. */
  #changesArrived: (() => void) | undefined
  #state: 'new' | 'open' | 'closing' | 'closed' = 'new'
  #batches = 0

  /** `db`: the gateway's database (openDatabase). The store keeps its records in the `async` sublevel of it. */
  constructor (db: Database, options: LevelInvocationStoreOptions = {}) {
    this.#db = db.sublevel<string, Buffer>('async', { valueEncoding: 'buffer' })
    this.#root = db
    this.#prefix = this.#db.prefix
    this.#sync = options.sync !== false
    this.#sweepIntervalMs = options.idempotencySweepIntervalMs ?? 3600_000
    this.#now = options.now ?? Date.now
  }

  /** Batches written so far; group commit makes it far smaller than the changes made. */
  get batches (): number {
    return this.#batches
  }

  async open (): Promise<void> {
    if (this.#state !== 'new') throw invalidArgument('the invocation store was already opened')
    try {
      await this.#db.open()
      const stored = await this.#db.get(Keys.sequence)
      const mark = stored === undefined ? 0 : Number(stored.toString())
      if (!Number.isSafeInteger(mark) || mark < 0) throw new Error(`the sequence mark holds ${String(stored)}`)
      await this.#loadFunctionNumbers()
      const highestPending = await this.#countRecords(Keys.allPending, 'pending')
      const highestDead = await this.#countRecords(Keys.allDead, 'dead')
      // the records themselves, in case a store written by an older version lacked the mark
      this.#lastSeq = this.#visibleThrough = Math.max(mark, highestPending, highestDead)
      this.#reservedThrough = mark
    } catch (err) {
      throw storeFailure('opening the invocation store', err)
    }
    this.#state = 'open'
    this.#root.onReopen(() => this.#reopened())
    await this.#sweepKeys()
    this.#sweepTimer = setInterval(() => { this.#sweepKeys().catch(noop) }, this.#sweepIntervalMs)
    this.#sweepTimer.unref()
  }

  append (invocation: NewInvocation, options: AppendOptions): Promise<AppendResult> {
    try {
      this.#assertOpen()
      checkNewInvocation(invocation)
      checkAppendOptions(options)
      const key = invocation.idempotencyKey
      if (key === undefined) return this.#appendRecord(invocation, options, undefined)
      const diskKey = Keys.idempotency(invocation.fn, key)
      // A key the filter never saw is neither on disk nor on its way there (a key enters the filter in the step that
      // queues its write): the common case, every new key, reads nothing and waits for nothing.
      // (One of the turns below may still hold a key a sweep's new filter left out, if it was never written.)
      if (!this.#keyFilter.mightContain(diskKey) && !(this.#keyedAppends.size > 0 && this.#keyedAppends.has(diskKey))) {
        return this.#appendRecord(invocation, options, diskKey)
      }
      return this.#appendKeyMaybeSeen(invocation, options, diskKey)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  async readPending (fn: string, afterSeq: number, limit: number): Promise<StoredInvocation[]> {
    this.#assertOpen()
    checkFunction(fn)
    checkSeq(afterSeq)
    checkLimit(limit)
    if (limit === 0 || afterSeq >= this.#visibleThrough) return []
    const values = await this.#scan(Keys.pendingBetween(fn, afterSeq, this.#visibleThrough), limit)
    return values.map(value => toInvocation(decodeRecord(value)))
  }

  async get (id: string): ReturnType<InvocationStore['get']> {
    this.#assertOpen()
    checkId(id)
    const found = await this.#locate(id)
    if (found === undefined) return undefined
    return found.dead
      ? { state: 'dead', invocation: toDeadInvocation(found.record) }
      : { state: 'pending', invocation: toInvocation(found.record) }
  }

  async complete (invocation: StoredInvocation): Promise<void> {
    this.#assertOpen()
    checkStoredInvocation(invocation)
    const { fn, seq, id } = invocation
    const operations: Operation[] = [{ type: 'del', key: Keys.pending(fn, seq) }]
    if (Ids.needsIndex(id, seq)) operations.push({ type: 'del', key: Keys.index(id) })
    await this.#changePending(invocation, undefined, () => this.#commit(operations, () => { this.#adjust(fn, -1, 0) }))
  }

  async reschedule (invocation: StoredInvocation, error: InvocationError, notBefore: number): Promise<StoredInvocation> {
    this.#assertOpen()
    checkStoredInvocation(invocation)
    const record = rescheduledRecord(invocation, error, notBefore)
    const value = encodeRecord(record)
    const rescheduled = toInvocation(record)
    return await this.#changePending(invocation, rescheduled, async () => {
      await this.#commit([{ type: 'put', key: Keys.pending(invocation.fn, invocation.seq), value }])
      return rescheduled
    })
  }

  async deadLetter (invocation: StoredInvocation, error: InvocationError, diedAt: number, countAttempt: boolean): Promise<DeadInvocation> {
    this.#assertOpen()
    checkStoredInvocation(invocation)
    const { fn, seq, id } = invocation
    const record = deadRecord(invocation, error, diedAt, countAttempt)
    const value = encodeRecord(record)
    const dead = toDeadInvocation(record)
    const deadKey = Keys.dead(fn, seq)
    const operations: Operation[] = [{ type: 'del', key: Keys.pending(fn, seq) }, { type: 'put', key: deadKey, value }]
    if (Ids.needsIndex(id, seq)) operations.push({ type: 'put', key: Keys.index(id), value: Buffer.from(deadKey) })
    return await this.#changePending(invocation, dead, async () => {
      await this.#commit(operations, () => { this.#adjust(fn, -1, +1) })
      return dead
    })
  }

  async remove (id: string): Promise<StoredInvocation | undefined> {
    this.#assertOpen()
    checkId(id)
    const removal = this.#administer(() => this.#removeNow(id))
    // set before this call returns, so that a complete() of the same id made from now on waits for it
    const marker = removal.then(noop, noop)
    this.#removals.set(id, marker)
    try {
      return await removal
    } finally {
      if (this.#removals.get(id) === marker) this.#removals.delete(id)
      this.#removalsDone++
    }
  }

  async listDead (fn: string | undefined, limit: number): Promise<DeadInvocation[]> {
    this.#assertOpen()
    checkOptionalFunction(fn)
    checkLimit(limit)
    if (limit === 0) return []
    const functions = fn !== undefined ? [fn] : [...this.#counts].filter(([, counts]) => counts.dead > 0).map(([name]) => name)
    const out: DeadInvocation[] = []
    // each function's dead letters are in seq order on disk; the oldest `limit` overall are among the first
    // `limit` of each
    for (const name of functions) {
      for (const value of await this.#scan(Keys.deadOf(name), limit)) out.push(toDeadInvocation(decodeRecord(value)))
    }
    return functions.length === 1 ? out : out.sort((a, b) => a.seq - b.seq).slice(0, limit)
  }

  async revive (selector: { readonly id: string } | { readonly fn: string | undefined }): Promise<number> {
    this.#assertOpen()
    if (typeof selector !== 'object' || selector === null) throw invalidArgument('revive takes { id } or { fn }')
    if ('id' in selector) {
      const id = selector.id
      checkId(id)
      return await this.#administer(async () => {
        const found = await this.#locate(id)
        if (found === undefined || !found.dead) return 0
        await this.#commitRevival([found.record])
        return 1
      })
    }
    const fn = selector.fn
    checkOptionalFunction(fn)
    return await this.#administer(() => this.#forEachDeadPage(fn, records => this.#commitRevival(records)))
  }

  async purgeDead (fn: string | undefined): Promise<number> {
    this.#assertOpen()
    checkOptionalFunction(fn)
    return await this.#administer(() => this.#forEachDeadPage(fn, async records => {
      const operations: Operation[] = []
      for (const record of records) {
        operations.push({ type: 'del', key: Keys.dead(record.fn, record.seq) })
        if (Ids.needsIndex(record.id, record.seq)) operations.push({ type: 'del', key: Keys.index(record.id) })
      }
      await this.#commit(operations, () => { for (const record of records) this.#adjust(record.fn, 0, -1) })
    }))
  }

  counts (): ReadonlyMap<string, FunctionCounts> {
    return this.#counts
  }

  onRecovered (listener: () => void): void {
    this.#recoveredListeners.push(listener)
  }

  /** Waits for the changes under way to be written; does not close the database, which is the gateway's. */
  async close (): Promise<void> {
    if (this.#state === 'closing' || this.#state === 'closed') return
    this.#state = 'closing'
    clearInterval(this.#sweepTimer)
    await this.#sweep?.catch(noop)
    await this.#adminQueue
    while (this.#writer !== undefined) await this.#writer
    this.#state = 'closed'
  }

  /**
   * The database reopened after a failed write (it refused every write of the store meanwhile). A write reported
   * failed may still have reached the disk, so what the store keeps in memory about the disk is read again: the
   * counts and the sequence mark. (Idempotency keys of failed appends stayed in the key filter: a later append
   * with one of them reads the disk.)
   */
  async #reopened (): Promise<void> {
    if (this.#state !== 'open') return
    // every batch on its way when the database closed has failed
    while (this.#writer !== undefined) await this.#writer
    await this.#db.open()
    const stored = await this.#db.get(Keys.sequence)
    const mark = stored === undefined ? 0 : Number(stored.toString())
    if (!Number.isSafeInteger(mark) || mark < 0) throw new Error(`the sequence mark holds ${String(stored)}`)
    const counts = new Map<string, { pending: number, dead: number }>()
    const highestPending = await this.#countRecords(Keys.allPending, 'pending', counts)
    const highestDead = await this.#countRecords(Keys.allDead, 'dead', counts)
    this.#counts.clear()
    for (const [fn, count] of counts) this.#counts.set(fn, count)
    // seqs handed out to batches that failed stay used: never handed out twice
    this.#lastSeq = this.#visibleThrough = Math.max(this.#lastSeq, mark, highestPending, highestDead)
    this.#reservedThrough = mark
    for (const listener of this.#recoveredListeners) listener()
  }

  // ---- appends ---------------------------------------------------------------------------------------------------

  /**
   * A key the filter may have seen: a duplicate, or a false positive. Keyed appends of one key take turns, and each
   * first waits for every write queued before it, so the disk read below sees an earlier append of the key.
   */
  async #appendKeyMaybeSeen (invocation: NewInvocation, options: AppendOptions, diskKey: string): Promise<AppendResult> {
    const earlier = this.#keyedAppends.get(diskKey)
    if (earlier !== undefined) {
      const first = await earlier.catch(() => undefined)
      // the first one failed (queue full, write failure): this one tries on its own
      return first !== undefined ? { id: first.id, duplicate: true } : await this.append(invocation, options)
    }
    const attempt = this.#appendUnlessStored(invocation, options, diskKey)
    this.#keyedAppends.set(diskKey, attempt)
    const settled = (): void => { this.#keyedAppends.delete(diskKey) }
    attempt.then(settled, settled)
    return await attempt
  }

  async #appendUnlessStored (invocation: NewInvocation, options: AppendOptions, diskKey: string): Promise<AppendResult> {
    await this.#barrier()
    const seen = await this.#read(diskKey)
    if (seen !== undefined) {
      const entry = decodeIdempotencyEntry(seen)
      if (entry.exp > invocation.createdAt) return { id: entry.id, duplicate: true }
    }
    return await this.#appendRecord(invocation, options, diskKey)
  }

  /** Everything up to the commit runs without a pause, so the bound check and the reservation are one step. */
  async #appendRecord (invocation: NewInvocation, options: AppendOptions, diskKey: string | undefined): Promise<AppendResult> {
    const fn = invocation.fn
    const reserved = this.#reserved.get(fn) ?? 0
    const pending = this.#counts.get(fn)?.pending ?? 0
    if (pending + reserved >= options.maxStored) {
      throw new FnbusError('FNBUS_QUEUE_FULL', `${fn} has ${pending + reserved} stored invocations (async.maxStored is ${options.maxStored})`)
    }
    const seq = this.#lastSeq + 1
    const functionNumber = this.#functionNumber(fn)
    const id = Ids.make(functionNumber, seq)
    const operations: Operation[] = [{ type: 'put', key: Keys.pending(fn, seq), value: encodeRecord(newRecord(invocation, id, seq)) }]
    const registering = this.#unregistered.has(fn)
    if (registering) operations.push({ type: 'put', key: Keys.function(fn), value: Buffer.from(String(functionNumber)) })
    if (diskKey !== undefined) {
      operations.push({ type: 'put', key: diskKey, value: encodeIdempotencyEntry({ id, exp: invocation.createdAt + options.idempotencyWindowMs }) })
      this.#rememberKey(diskKey)
    }
    // only now, once nothing can throw: a seq is never handed out twice, even when a batch fails
    this.#lastSeq = seq
    this.#reserved.set(fn, reserved + 1)
    await this.#commit(operations, () => {
      this.#release(fn)
      this.#adjust(fn, +1, 0)
      if (registering) this.#unregistered.delete(fn)
    }, () => { this.#release(fn) })
    return { id, duplicate: false }
  }

  #rememberKey (diskKey: string): void {
    this.#keyFilter.add(diskKey)
    this.#keysWrittenDuringSweep?.add(diskKey)
    // past its capacity the filter says "maybe" too often: a sweep rebuilds it, sized for what is on disk
    if (this.#keyFilter.full && this.#sweep === undefined && this.#state === 'open') this.#sweepKeys().catch(noop)
  }

  /** The function's number, given out (and written with the next append) the first time it is needed. */
  #functionNumber (fn: string): number {
    let number = this.#functionNumbers.get(fn)
    if (number === undefined) {
      number = this.#nextFunctionNumber++
      this.#functionNumbers.set(fn, number)
      this.#functionNames.set(number, fn)
      this.#unregistered.add(fn)
    }
    return number
  }

  #release (fn: string): void {
    const reserved = (this.#reserved.get(fn) ?? 1) - 1
    if (reserved > 0) this.#reserved.set(fn, reserved)
    else this.#reserved.delete(fn)
  }

  // ---- changes to stored invocations -----------------------------------------------------------------------------

  /**
   * complete/reschedule/deadLetter act on an invocation their caller read from the store and still holds, so they
   * write without reading first. The one exception is a remove() of the same id under way: they wait for it, then
   * read, and change nothing (resolving with `unchanged`) if the invocation is no longer pending. `apply` must
   * queue its write at once, with no pause between the check and the write.
   */
  async #changePending<T> (invocation: StoredInvocation, unchanged: T, apply: () => Promise<T>): Promise<T> {
    if (!this.#removals.has(invocation.id)) return await apply()
    for (;;) {
      const removal = this.#removals.get(invocation.id)
      if (removal !== undefined) {
        await removal
        continue
      }
      const removalsBefore = this.#removalsDone
      const found = await this.#locate(invocation.id)
      // another removal started or finished while this looked: look again
      if (this.#removals.has(invocation.id) || this.#removalsDone !== removalsBefore) continue
      if (found === undefined || found.dead || found.record.seq !== invocation.seq) return unchanged
      return await apply()
    }
  }

  async #removeNow (id: string): Promise<StoredInvocation | undefined> {
    // changes queued before this removal (a complete() of the same id, say) are on disk before it looks
    await this.#barrier()
    const found = await this.#locate(id)
    if (found === undefined || found.dead) return undefined
    const { fn, seq } = found.record
    const operations: Operation[] = [{ type: 'del', key: Keys.pending(fn, seq) }]
    if (Ids.needsIndex(id, seq)) operations.push({ type: 'del', key: Keys.index(id) })
    await this.#commit(operations, () => { this.#adjust(fn, -1, 0) })
    return toInvocation(found.record)
  }

  /** Back to pending at the end of their queues; see revivedRecord. */
  async #commitRevival (records: readonly InvocationRecord[]): Promise<void> {
    const now = this.#now()
    const operations: Operation[] = []
    let seq = this.#lastSeq
    for (const dead of records) {
      const revived = revivedRecord(dead, ++seq, now)
      const pendingKey = Keys.pending(dead.fn, seq)
      operations.push(
        { type: 'del', key: Keys.dead(dead.fn, dead.seq) },
        { type: 'put', key: pendingKey, value: encodeRecord(revived) },
        // its id still names the old seq
        { type: 'put', key: Keys.index(dead.id), value: Buffer.from(pendingKey) },
      )
    }
    this.#lastSeq = seq
    await this.#commit(operations, () => { for (const dead of records) this.#adjust(dead.fn, +1, -1) })
  }

  /** Hands `change` the dead records of `fn` (every function when undefined), BULK at a time; it must remove them. */
  async #forEachDeadPage (fn: string | undefined, change: (records: InvocationRecord[]) => Promise<void>): Promise<number> {
    const functions = fn !== undefined ? [fn] : [...this.#counts].filter(([, counts]) => counts.dead > 0).map(([name]) => name)
    let total = 0
    for (const name of functions) {
      for (;;) {
        const values = await this.#scan(Keys.deadOf(name), BULK)
        if (values.length === 0) break
        await change(values.map(decodeRecord))
        total += values.length
      }
    }
    return total
  }

  /** remove, revive and purgeDead run one at a time: each reads records, then moves them. */
  #administer<T> (task: () => Promise<T>): Promise<T> {
    const run = this.#adminQueue.then(task)
    this.#adminQueue = run.then(noop, noop)
    return run
  }

  // ---- group commit ----------------------------------------------------------------------------------------------

  /** Queues `operations` for the next batch; resolves once that batch is written, rejects if it failed. */
  #commit (operations: readonly Operation[], committed?: () => void, failed?: () => void): Promise<void> {
    if (this.#state === 'closed') {
      failed?.()
      return Promise.reject(new FnbusError('FNBUS_STORE_FAILURE', 'the invocation store is closed'))
    }
    if (!this.#root.healthy && this.#state === 'open') {
      // refused here, not by the closed database: while it reopens, a write must not reach it before it is proven
      failed?.()
      return Promise.reject(new FnbusError('FNBUS_STORE_FAILURE', 'the invocation store is unavailable: a write failed (disk full?) and the database is reopening'))
    }
    return new Promise<void>((resolve, reject) => {
      const group = this.#group
      for (const operation of operations) group.operations.push(operation)
      group.changes.push({ committed, failed, resolve, reject })
      this.#changesArrived?.()
      this.#writer ??= this.#writeGroups()
      if (group.changes.length >= EARLY_BATCH_CHANGES && this.#mayStartBatch()) {
        this.#group = new Group()
        this.#startBatch(group)
      }
    })
  }

  /** Resolves once everything queued before it is written (or failed). */
  #barrier (): Promise<void> {
    return this.#commit([]).catch(noop)
  }

  async #writeGroups (): Promise<void> {
    try {
      do {
        do {
          // wait for the rest of this turn of the event loop: the changes of every message read in it join the
          // batch, and so do those that callers of the previous batch make as soon as they hear back
          await new Promise(setImmediate)
          while (this.#group.changes.length > 0 && !this.#mayStartBatch()) await this.#anotherSettled()
          // (empty when #commit started it early)
          if (this.#group.changes.length > 0) {
            const group = this.#group
            this.#group = new Group()
            this.#startBatch(group)
          }
        } while (this.#group.changes.length > 0)
        // the writer stays until its batches are written (close() waits for it); changes made meanwhile go next,
        // without waiting for those batches
        while (this.#inFlight.length > 0 && this.#group.changes.length === 0) {
          await Promise.race([this.#anotherSettled(), new Promise<void>(resolve => { this.#changesArrived = resolve })])
          this.#changesArrived = undefined
        }
        // nothing is awaited between this check and the end: a change made after it starts a writer of its own
      } while (this.#group.changes.length > 0)
    } finally {
      this.#writer = undefined
    }
  }

  /** Room for another batch; and one that must move the mark waits for the mark on its way (more joins it). */
  #mayStartBatch (): boolean {
    return this.#inFlight.length < BATCHES_IN_FLIGHT && !(this.#lastSeq > this.#reservedThrough && this.#markBatch !== undefined)
  }

  /**
   * Resolves when one more batch on its way is written or failed. Only those still on their way count: a settled
   * batch waiting for an earlier one would resolve at once, and the loops above would spin without ever letting
   * the event loop deliver the write they wait for.
   */
  #anotherSettled (): Promise<void> {
    return Promise.race(this.#inFlight.filter(batch => batch.outcome === undefined).map(batch => batch.settled))
  }

  #startBatch (group: Group): void {
    const operations = group.operations
    const maxSeq = this.#lastSeq
    // a batch holding seqs past the reservation moves it, far enough that the next many batches need not
    const mark = maxSeq > this.#reservedThrough ? maxSeq + SEQ_RESERVATION : undefined
    if (mark !== undefined) operations.push({ type: 'put', key: Keys.sequence, value: Buffer.from(String(mark)) })
    let resolveSettled!: () => void
    const settled = new Promise<void>(resolve => { resolveSettled = resolve })
    const batch: Batch = { group, failedWritesBefore: this.#root.failedWrites, maxSeq, mark, outcome: undefined, settled, resolveSettled }
    this.#inFlight.push(batch)
    if (mark !== undefined) this.#markBatch = batch
    let written: Promise<void>
    try {
      written = operations.length === 0
        ? Promise.resolve()
        : this.#root.healthy ? this.#write(operations) : Promise.reject(new Error('the database is reopening after a failed write'))
    } catch (err) {
      written = Promise.reject(err)
    }
    written.then(() => this.#settle(batch, true), (err: unknown) => this.#settle(batch, err instanceof Error ? err : new Error(String(err))))
  }

  /**
   * Writes `operations` as one batch, through a chained batch of the root database with the sublevel's prefix
   * added here. Measured here, main thread per operation: ~2.0 µs, against ~3.3–4.2 µs for batch(array) on the
   * sublevel or the root: the array form clones every operation (twice through a sublevel) and its native side
   * reads each operation's fields by name.
   */
  #write (operations: readonly Operation[]): Promise<void> {
    const batch = this.#root.batch()
    const prefix = this.#prefix
    try {
      for (const operation of operations) {
        if (operation.type === 'put') batch.put(prefix + operation.key, operation.value)
        else batch.del(prefix + operation.key)
      }
    } catch (err) {
      batch.close().catch(noop)
      throw err
    }
    return this.#sync ? batch.write(SYNC_WRITE) : batch.write()
  }

  /** One step, so that no one sees a batch with an outcome that has not settled yet (see #anotherSettled). */
  #settle (batch: Batch, outcome: true | Error): void {
    if (outcome === true && this.#root.failedWrites !== batch.failedWritesBefore) {
      outcome = new Error('written while another write failed: it may not survive the database reopening')
    }
    batch.outcome = outcome
    try {
      if (batch.mark !== undefined) {
        if (outcome === true) this.#reservedThrough = batch.mark
        this.#markBatch = undefined
      }
      if (outcome === true && batch.group.operations.length > 0) this.#batches++
      this.#finishInOrder()
    } finally {
      batch.resolveSettled()
    }
  }

  /** Tells the changes of every settled batch at the head of the line, oldest first: never a batch before an earlier one. */
  #finishInOrder (): void {
    while (this.#inFlight.length > 0 && (this.#inFlight[0] as Batch).outcome !== undefined) {
      const batch = this.#inFlight.shift() as Batch
      if (batch.maxSeq > this.#visibleThrough) this.#visibleThrough = batch.maxSeq
      if (batch.outcome === true) {
        for (const change of batch.group.changes) {
          // committed() brings counters in line; one that threw must not keep the others (or its caller) waiting
          try { change.committed?.() } catch {}
          change.resolve()
        }
      } else {
        for (const change of batch.group.changes) {
          change.failed?.()
          change.reject(storeFailure('writing to the invocation store', batch.outcome))
        }
      }
    }
  }

  // ---- reading -----------------------------------------------------------------------------------------------------

  async #locate (id: string): Promise<{ readonly record: InvocationRecord, readonly dead: boolean } | undefined> {
    const named = Ids.parse(id)
    const fn = named === undefined ? undefined : this.#functionNames.get(named.functionNumber)
    let indexed: Buffer | undefined
    if (named !== undefined && fn !== undefined) {
      // where the id says, and the index entry it has if it moved: one read
      const [pending, dead, index] = await this.#readMany([Keys.pending(fn, named.seq), Keys.dead(fn, named.seq), Keys.index(id)])
      for (const [value, isDead] of [[pending, false], [dead, true]] as const) {
        const record = value === undefined ? undefined : decodeRecord(value)
        if (record?.id === id) return { record, dead: isDead }
      }
      indexed = index
    } else {
      indexed = await this.#read(Keys.index(id))
    }
    if (indexed === undefined) return undefined
    const recordKey = indexed.toString()
    const value = await this.#read(recordKey)
    if (value === undefined) return undefined // changed between the two reads
    const record = decodeRecord(value)
    return record.id === id ? { record, dead: Keys.isDead(recordKey) } : undefined
  }

  async #readMany (keys: string[]): Promise<Array<Buffer | undefined>> {
    try {
      return await this.#db.getMany(keys)
    } catch (err) {
      throw storeFailure('reading the invocation store', err)
    }
  }

  async #read (key: string): Promise<Buffer | undefined> {
    try {
      return await this.#db.get(key)
    } catch (err) {
      throw storeFailure('reading the invocation store', err)
    }
  }

  /** Values of a key range, in key order, at most `limit`: one bounded read, never a whole function's queue. */
  async #scan (range: Range, limit: number): Promise<Buffer[]> {
    try {
      return await this.#db.values({ ...range, limit: Number.isFinite(limit) ? Math.floor(limit) : Infinity }).all()
    } catch (err) {
      throw storeFailure('reading the invocation store', err)
    }
  }

  async #loadFunctionNumbers (): Promise<void> {
    for (const [key, value] of await this.#db.iterator(Keys.allFunctions).all()) {
      const fn = key.slice(2)
      const number = Number(value.toString())
      if (!Number.isSafeInteger(number) || number < 0) throw new Error(`the number of function ${fn} is ${value.toString()}`)
      this.#functionNumbers.set(fn, number)
      this.#functionNames.set(number, fn)
      if (number >= this.#nextFunctionNumber) this.#nextFunctionNumber = number + 1
    }
  }

  /** Counts the records of a range per function from their keys alone; resolves with the highest seq seen. */
  async #countRecords (range: Range, field: 'pending' | 'dead', into: Map<string, { pending: number, dead: number }> = this.#counts): Promise<number> {
    const iterator = this.#db.keys(range)
    let highest = 0
    let prefix = ''
    let counts: { pending: number, dead: number } | undefined
    try {
      for (let keys = await iterator.nextv(SCAN_PAGE); keys.length > 0; keys = await iterator.nextv(SCAN_PAGE)) {
        for (const key of keys) {
          // keys come grouped by function: look the counter up once per function
          if (counts === undefined || !key.startsWith(prefix)) {
            const fn = Keys.functionOf(key)
            prefix = key.slice(0, key.length - SEQ_DIGITS)
            counts = into.get(fn) ?? { pending: 0, dead: 0 }
            into.set(fn, counts)
          }
          counts[field]++
          const seq = Keys.seqOf(key)
          if (seq > highest) highest = seq
        }
      }
    } finally {
      await iterator.close()
    }
    return highest
  }

  // ---- idempotency keys --------------------------------------------------------------------------------------------

  #sweepKeys (): Promise<void> {
    this.#sweep ??= this.#sweepExpiredKeys().finally(() => { this.#sweep = undefined })
    return this.#sweep
  }

  /** Deletes expired idempotency keys and rebuilds the key filter from the keys left. */
  async #sweepExpiredKeys (): Promise<void> {
    const now = this.#now()
    const written = new Set<string>()
    this.#keysWrittenDuringSweep = written
    try {
      // a key queued before the sweep began but written after its iterator's snapshot would be in neither the
      // snapshot nor `written`: left out of the filter, or deleted as the expired key it replaces
      await this.#barrier()
      const live = new KeyHashes()
      if (!await this.#collectExpiredKeys(now, live, written)) return
      this.#keyFilter = KeyFilter.of(live, written)
    } catch (err) {
      throw storeFailure('sweeping idempotency keys', err)
    } finally {
      this.#keysWrittenDuringSweep = undefined
    }
  }

  /** Deletes the expired keys and hashes the live ones into `live`; false when closing cut it short. */
  async #collectExpiredKeys (now: number, live: KeyHashes, written: ReadonlySet<string>): Promise<boolean> {
    let expired: string[] = []
    const iterator = this.#db.iterator(Keys.allIdempotency)
    try {
      for (let entries = await iterator.nextv(SCAN_PAGE); entries.length > 0; entries = await iterator.nextv(SCAN_PAGE)) {
        if (this.#state !== 'open') return false // the next open sweeps again
        for (const [key, value] of entries) {
          if (isExpired(value, now)) expired.push(key)
          else live.add(key)
        }
        if (expired.length >= BULK) {
          await this.#deleteKeys(expired, written)
          expired = []
        }
      }
      if (expired.length > 0) await this.#deleteKeys(expired, written)
      return true
    } finally {
      await iterator.close().catch(noop)
    }
  }

  /** A key written again since the sweep read it belongs to a new invocation: it stays. */
  async #deleteKeys (keys: readonly string[], writtenSince: ReadonlySet<string>): Promise<void> {
    const operations: Operation[] = []
    for (const key of keys) if (!writtenSince.has(key)) operations.push({ type: 'del', key })
    await this.#commit(operations)
  }

  // ---- bookkeeping -------------------------------------------------------------------------------------------------

  /** Keeps only functions with something stored, as counts() promises. */
  #adjust (fn: string, pending: number, dead: number): void {
    let counts = this.#counts.get(fn)
    if (counts === undefined) {
      counts = { pending: 0, dead: 0 }
      this.#counts.set(fn, counts)
    }
    counts.pending += pending
    counts.dead += dead
    if (counts.pending <= 0 && counts.dead <= 0) this.#counts.delete(fn)
  }

  #assertOpen (): void {
    if (this.#state !== 'open') {
      throw new FnbusError('FNBUS_STORE_FAILURE', this.#state === 'new' ? 'the invocation store is not open yet' : 'the invocation store is closed')
    }
  }
}

function isExpired (value: Buffer, now: number): boolean {
  try {
    return !(decodeIdempotencyEntry(value).exp > now)
  } catch {
    return true // unreadable: it can only mislead
  }
}

function noop (): void {}
