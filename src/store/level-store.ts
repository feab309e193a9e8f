import { FnbusError, invalidArgument } from '../errors.js'
import type { Database } from './database.js'
import { GroupCommit, type Operation } from './group-commit.js'
import { IdempotencySweep } from './idempotency-sweep.js'
import { BULK, Ids, Keys, type AsyncSublevel } from './keys.js'
import { countRecords, readFunctionNumbers, readMany, readOne, readSeqMark, scan } from './level-reads.js'
import {
  checkAppendOptions, checkFunction, checkId, checkLimit, checkNewInvocation, checkOptionalFunction, checkSeq, checkStoredInvocation,
  deadRecord, decodeIdempotencyEntry, decodeRecord, encodeIdempotencyEntry, encodeRecord, newRecord, rescheduledRecord,
  revivedRecord, storeFailure, toDeadInvocation, toInvocation, type InvocationRecord,
} from './records.js'
import type {
  AppendOptions, AppendResult, DeadInvocation, FunctionCounts, InvocationError, InvocationStore, NewInvocation,
  StoredInvocation,
} from './types.js'

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

/**
 * Stored invocations in the gateway's LevelDB, under an `async` sublevel of the one `Database` (`openDatabase`),
 * which it takes as is and does not close.
 *
 * Its writes go through group commit (GroupCommit): every change made while a batch is being written joins the
 * next batch, and each caller hears back only once the batch holding its change is written. Counters follow the
 * disk and never lead it: an append holds a reservation against maxStored until its batch is written, and a failed
 * batch releases it. Idempotency keys are checked against a Bloom filter first, and swept (IdempotencySweep).
 */
export class LevelInvocationStore implements InvocationStore {
  readonly #db: AsyncSublevel
  /** The database the sublevel is in: the store follows its reopening. */
  readonly #root: Database
  /** Every write of the store, and the seqs. */
  readonly #commits: GroupCommit
  readonly #idempotency: IdempotencySweep
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
  /** Function numbers (ids carry them), both ways; a number is never reused. */
  readonly #functionNumbers = new Map<string, number>()
  readonly #functionNames = new Map<number, string>()
  /** Functions whose number is not on disk yet: each append writes it until one batch holding it is written. */
  readonly #unregistered = new Set<string>()
  #nextFunctionNumber = 0
  #state: 'new' | 'open' | 'closing' | 'closed' = 'new'

  /** `db`: the gateway's database (openDatabase). The store keeps its records in the `async` sublevel of it. */
  constructor (db: Database, options: LevelInvocationStoreOptions = {}) {
    this.#db = db.sublevel<string, Buffer>('async', { valueEncoding: 'buffer' })
    this.#root = db
    this.#now = options.now ?? Date.now
    this.#commits = new GroupCommit(db, this.#db.prefix, { sync: options.sync !== false, markKey: Keys.sequence })
    this.#idempotency = new IdempotencySweep(this.#db, this.#commits, {
      intervalMs: options.idempotencySweepIntervalMs ?? 3600_000,
      now: this.#now,
    })
  }

  /** Batches written so far; group commit makes it far smaller than the changes made. */
  get batches (): number {
    return this.#commits.batches
  }

  async open (): Promise<void> {
    if (this.#state !== 'new') throw invalidArgument('the invocation store was already opened')
    try {
      await this.#db.open()
      const mark = await readSeqMark(this.#db)
      for (const [fn, number] of await readFunctionNumbers(this.#db)) {
        this.#functionNumbers.set(fn, number)
        this.#functionNames.set(number, fn)
        if (number >= this.#nextFunctionNumber) this.#nextFunctionNumber = number + 1
      }
      const highestPending = await countRecords(this.#db, Keys.allPending, 'pending', this.#counts)
      const highestDead = await countRecords(this.#db, Keys.allDead, 'dead', this.#counts)
      // the records themselves, in case a store written by an older version lacked the mark
      this.#commits.resume(mark, Math.max(highestPending, highestDead))
    } catch (err) {
      throw storeFailure('opening the invocation store', err)
    }
    this.#state = 'open'
    this.#root.onReopen(() => this.#reopened())
    await this.#idempotency.start()
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
      if (!this.#idempotency.mightContain(diskKey) && !(this.#keyedAppends.size > 0 && this.#keyedAppends.has(diskKey))) {
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
    const visibleThrough = this.#commits.visibleThrough
    if (limit === 0 || afterSeq >= visibleThrough) return []
    const values = await scan(this.#db, Keys.pendingBetween(fn, afterSeq, visibleThrough), limit)
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
    await this.#changePending(invocation, undefined, () => this.#commits.commit(operations, () => { this.#adjust(fn, -1, 0) }))
  }

  async reschedule (invocation: StoredInvocation, error: InvocationError, notBefore: number): Promise<StoredInvocation> {
    this.#assertOpen()
    checkStoredInvocation(invocation)
    const record = rescheduledRecord(invocation, error, notBefore)
    const value = encodeRecord(record)
    const rescheduled = toInvocation(record)
    return await this.#changePending(invocation, rescheduled, async () => {
      await this.#commits.commit([{ type: 'put', key: Keys.pending(invocation.fn, invocation.seq), value }])
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
      await this.#commits.commit(operations, () => { this.#adjust(fn, -1, +1) })
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
      for (const value of await scan(this.#db, Keys.deadOf(name), limit)) out.push(toDeadInvocation(decodeRecord(value)))
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
      await this.#commits.commit(operations, () => { for (const record of records) this.#adjust(record.fn, 0, -1) })
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
    this.#commits.closing()
    await this.#idempotency.stop()
    await this.#adminQueue
    await this.#commits.close()
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
    await this.#commits.idle()
    await this.#db.open()
    const mark = await readSeqMark(this.#db)
    const counts = new Map<string, { pending: number, dead: number }>()
    const highestPending = await countRecords(this.#db, Keys.allPending, 'pending', counts)
    const highestDead = await countRecords(this.#db, Keys.allDead, 'dead', counts)
    this.#counts.clear()
    for (const [fn, count] of counts) this.#counts.set(fn, count)
    // seqs handed out to batches that failed stay used: never handed out twice
    this.#commits.resume(mark, Math.max(highestPending, highestDead))
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
    await this.#commits.barrier()
    const seen = await readOne(this.#db, diskKey)
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
    const seq = this.#commits.lastSeq + 1
    const functionNumber = this.#functionNumber(fn)
    const id = Ids.make(functionNumber, seq)
    const operations: Operation[] = [{ type: 'put', key: Keys.pending(fn, seq), value: encodeRecord(newRecord(invocation, id, seq)) }]
    const registering = this.#unregistered.has(fn)
    if (registering) operations.push({ type: 'put', key: Keys.function(fn), value: Buffer.from(String(functionNumber)) })
    if (diskKey !== undefined) {
      operations.push({ type: 'put', key: diskKey, value: encodeIdempotencyEntry({ id, exp: invocation.createdAt + options.idempotencyWindowMs }) })
      this.#idempotency.remember(diskKey)
    }
    // only now, once nothing can throw: a seq is never handed out twice, even when a batch fails
    this.#commits.handOut(seq)
    this.#reserved.set(fn, reserved + 1)
    await this.#commits.commit(operations, () => {
      this.#release(fn)
      this.#adjust(fn, +1, 0)
      if (registering) this.#unregistered.delete(fn)
    }, () => { this.#release(fn) })
    return { id, duplicate: false }
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
    await this.#commits.barrier()
    const found = await this.#locate(id)
    if (found === undefined || found.dead) return undefined
    const { fn, seq } = found.record
    const operations: Operation[] = [{ type: 'del', key: Keys.pending(fn, seq) }]
    if (Ids.needsIndex(id, seq)) operations.push({ type: 'del', key: Keys.index(id) })
    await this.#commits.commit(operations, () => { this.#adjust(fn, -1, 0) })
    return toInvocation(found.record)
  }

  /** Back to pending at the end of their queues; see revivedRecord. */
  async #commitRevival (records: readonly InvocationRecord[]): Promise<void> {
    const now = this.#now()
    const operations: Operation[] = []
    let seq = this.#commits.lastSeq
    for (const dead of records) {
      const revived = revivedRecord(dead, ++seq, now)
      const pendingKey = Keys.pending(dead.fn, seq)
      operations.push(
        { type: 'del', key: Keys.dead(dead.fn, dead.seq) },
        { type: 'put', key: pendingKey, value: encodeRecord(revived) },
        // its id still names the old seq
        { type: 'put', key: Keys.index(dead.id), value: Buffer.from(pendingKey) }
      )
    }
    this.#commits.handOut(seq)
    await this.#commits.commit(operations, () => { for (const dead of records) this.#adjust(dead.fn, +1, -1) })
  }

  /** Hands `change` the dead records of `fn` (every function when undefined), BULK at a time; it must remove them. */
  async #forEachDeadPage (fn: string | undefined, change: (records: InvocationRecord[]) => Promise<void>): Promise<number> {
    const functions = fn !== undefined ? [fn] : [...this.#counts].filter(([, counts]) => counts.dead > 0).map(([name]) => name)
    let total = 0
    for (const name of functions) {
      for (;;) {
        const values = await scan(this.#db, Keys.deadOf(name), BULK)
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

  // ---- reading -----------------------------------------------------------------------------------------------------

  async #locate (id: string): Promise<{ readonly record: InvocationRecord, readonly dead: boolean } | undefined> {
    const named = Ids.parse(id)
    const fn = named === undefined ? undefined : this.#functionNames.get(named.functionNumber)
    let indexed: Buffer | undefined
    if (named !== undefined && fn !== undefined) {
      // where the id says, and the index entry it has if it moved: one read
      const [pending, dead, index] = await readMany(this.#db, [Keys.pending(fn, named.seq), Keys.dead(fn, named.seq), Keys.index(id)])
      for (const [value, isDead] of [[pending, false], [dead, true]] as const) {
        const record = value === undefined ? undefined : decodeRecord(value)
        if (record?.id === id) return { record, dead: isDead }
      }
      indexed = index
    } else {
      indexed = await readOne(this.#db, Keys.index(id))
    }
    if (indexed === undefined) return undefined
    const recordKey = indexed.toString()
    const value = await readOne(this.#db, recordKey)
    if (value === undefined) return undefined // changed between the two reads
    const record = decodeRecord(value)
    return record.id === id ? { record, dead: Keys.isDead(recordKey) } : undefined
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

function noop (): void {}
