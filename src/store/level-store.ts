import { nanoid } from 'nanoid'
import { FnbusError } from '../errors.js'
import { packr, unpackr, type PayloadKind } from '../protocol/index.js'
import type { AbstractBatchOptions, AbstractSublevel } from 'abstract-level'
import type { Database } from './database.js'
import { KeyFilter } from './key-filter.js'

type AsyncSublevel = AbstractSublevel<Database, string | Buffer | Uint8Array, string, Buffer>
import type {
  AppendOptions, AppendResult, DeadInvocation, FunctionCounts, InvocationError, InvocationStore, NewInvocation,
  StoredInvocation,
} from './types.js'

/**
 * Key layout of the `async` sublevel, all in one place. `!` sorts below every character a function name may hold
 * (`[A-Za-z0-9_-/]`), and `"` right after it, so `[p!S/fn1!, p!S/fn1")` holds exactly the keys of `S/fn1` and
 * none of `S/fn10` (aedes-persistence-level's prefix bug, DESIGN.md pitfall 4). Sequences are zero-padded to 16
 * digits so that key order is queue order.
 */
const Keys = {
  pending: (fn: string, seq: number): string => `p!${fn}!${pad(seq)}`,
  pendingRange: (fn: string, afterSeq: number): { gt: string, lt: string } => ({ gt: `p!${fn}!${pad(afterSeq)}`, lt: `p!${fn}"` }),
  allPending: { gt: 'p!', lt: 'p"' },
  dead: (fn: string, seq: number): string => `d!${fn}!${pad(seq)}`,
  deadRange: (fn: string): { gt: string, lt: string } => ({ gt: `d!${fn}!`, lt: `d!${fn}"` }),
  allDead: { gt: 'd!', lt: 'd"' },
  index: (id: string): string => `i!${id}`,
  idempotency: (fn: string, key: string): string => `k!${fn}!${encodeURIComponent(key)}`,
  allIdempotency: { gt: 'k!', lt: 'k"' },
  sequence: 'm!seq',
  /** `p!Service/function!0000000000000042` → `Service/function` */
  functionOf: (key: string): string => key.slice(2, key.lastIndexOf('!')),
}

function pad (seq: number): string {
  return String(seq).padStart(16, '0')
}

/** A record as stored: short field names, since a backlog holds many. */
interface Record {
  id: string
  fn: string
  seq: number
  at: number
  pk: PayloadKind
  p: Buffer
  ctx?: { readonly [key: string]: unknown }
  ik?: string
  n: number
  nb: number
  err?: InvocationError
  died?: number
}

interface IndexEntry { fn: string, seq: number, dead: boolean }

type Operation = { type: 'put', key: string, value: Buffer } | { type: 'del', key: string }

interface PendingBatch {
  readonly operations: Operation[]
  /** Runs once the batch is durable: in-memory counters follow the disk, never lead it. */
  readonly committed: () => void
  readonly failed: () => void
  readonly resolve: () => void
  readonly reject: (err: FnbusError) => void
}

export interface LevelInvocationStoreOptions {
  /** fsync each batch: survives power loss, not only a process kill. Default false. */
  readonly sync?: boolean
  /** How often expired idempotency keys are deleted. Default hourly. */
  readonly idempotencySweepIntervalMs?: number
}

const BULK_BATCH = 1000
const KEY_FILTER_MIN = 100_000

/**
 * Stored invocations in the gateway's LevelDB (an `async` sublevel), group-committed: every change requested
 * while a batch is being written joins the next one, and each caller hears back only once its own batch is on
 * disk.
 */
export class LevelInvocationStore implements InvocationStore {
  readonly #db: AsyncSublevel
  readonly #sync: boolean
  readonly #sweepInterval: number
  readonly #counts = new Map<string, { pending: number, dead: number }>()
  /** Appends accepted into a batch that is not yet written, per function: they count against maxStored. */
  readonly #reserved = new Map<string, number>()
  /** Appends with an idempotency key still being written, by function and key. */
  readonly #keysInFlight = new Map<string, Promise<AppendResult>>()
  #nextSeq = 1
  /** Idempotency keys that may be on disk: a key it has never seen needs no disk read. */
  #keyFilter = new KeyFilter(KEY_FILTER_MIN)
  #keyFilterAdds = 0
  #keysAddedDuringSweep: string[] | undefined
  #queue: PendingBatch[] = []
  #writing = false
  #sweepTimer: NodeJS.Timeout | undefined
  /** Batches written, for tests and diagnostics: group commit makes it far smaller than the changes made. */
  batches = 0

  constructor (db: Database, options: LevelInvocationStoreOptions = {}) {
    this.#db = db.sublevel<string, Buffer>('async', { valueEncoding: 'buffer' })
    this.#sync = options.sync === true
    this.#sweepInterval = options.idempotencySweepIntervalMs ?? 3600_000
  }

  async open (): Promise<void> {
    const stored = await this.#db.get(Keys.sequence)
    this.#nextSeq = stored === undefined || stored === null ? 1 : Number(stored.toString()) + 1
    for await (const key of this.#db.keys(Keys.allPending)) this.#count(Keys.functionOf(key)).pending++
    for await (const key of this.#db.keys(Keys.allDead)) this.#count(Keys.functionOf(key)).dead++
    await this.#sweepIdempotencyKeys()
    this.#sweepTimer = setInterval(() => { this.#sweepIdempotencyKeys().catch(() => {}) }, this.#sweepInterval)
    this.#sweepTimer.unref()
  }

  async append (invocation: NewInvocation, options: AppendOptions): Promise<AppendResult> {
    const key = invocation.idempotencyKey
    if (key === undefined) return await this.#append(invocation, options, undefined)
    const lock = `${invocation.fn}!${key}`
    const earlier = this.#keysInFlight.get(lock)
    if (earlier !== undefined) {
      const first = await earlier.catch(() => undefined)
      if (first !== undefined) return { id: first.id, duplicate: true }
      return await this.append(invocation, options)
    }
    const diskKey = Keys.idempotency(invocation.fn, key)
    const attempt = (async (): Promise<AppendResult> => {
      const seen = this.#keyFilter.mightContain(diskKey) ? await this.#read(diskKey) : undefined
      if (seen !== undefined) {
        const entry = unpackr.unpack(seen) as { id: string, exp: number }
        if (entry.exp > invocation.createdAt) return { id: entry.id, duplicate: true }
      }
      return await this.#append(invocation, options, key)
    })()
    this.#keysInFlight.set(lock, attempt)
    try {
      return await attempt
    } finally {
      this.#keysInFlight.delete(lock)
    }
  }

  async #append (invocation: NewInvocation, options: AppendOptions, key: string | undefined): Promise<AppendResult> {
    const fn = invocation.fn
    const reserved = this.#reserved.get(fn) ?? 0
    const pending = this.#counts.get(fn)?.pending ?? 0
    if (pending + reserved >= options.maxStored) {
      throw new FnbusError('FNBUS_QUEUE_FULL', `${fn} has ${pending + reserved} stored invocations (async.maxStored is ${options.maxStored})`)
    }
    this.#reserved.set(fn, reserved + 1)
    const seq = this.#nextSeq++
    const record: Record = {
      id: nanoid(),
      fn,
      seq,
      at: invocation.createdAt,
      pk: invocation.payloadKind,
      p: invocation.payload,
      ctx: invocation.context,
      ik: key,
      n: 0,
      nb: 0,
    }
    const operations: Operation[] = [
      { type: 'put', key: Keys.pending(fn, seq), value: packr.pack(record) },
      { type: 'put', key: Keys.index(record.id), value: packIndex({ fn, seq, dead: false }) },
    ]
    if (key !== undefined) {
      this.#rememberKey(Keys.idempotency(fn, key))
      operations.push({ type: 'put', key: Keys.idempotency(fn, key), value: packr.pack({ id: record.id, exp: invocation.createdAt + options.idempotencyWindowMs }) })
    }
    const unreserve = (): void => { this.#reserved.set(fn, (this.#reserved.get(fn) ?? 1) - 1) }
    await this.#commit(operations, () => {
      unreserve()
      this.#count(fn).pending++
    }, unreserve)
    return { id: record.id, duplicate: false }
  }

  async readPending (fn: string, afterSeq: number, limit: number): Promise<StoredInvocation[]> {
    const out: StoredInvocation[] = []
    for await (const value of this.#db.values({ ...Keys.pendingRange(fn, afterSeq), limit })) out.push(toInvocation(unpackRecord(value)))
    return out
  }

  async get (id: string): ReturnType<InvocationStore['get']> {
    const found = await this.#locate(id)
    if (found === undefined) return undefined
    const invocation = toInvocation(found.record)
    return found.entry.dead
      ? { state: 'dead', invocation: invocation as DeadInvocation }
      : { state: 'pending', invocation }
  }

  async complete (invocation: StoredInvocation): Promise<void> {
    await this.#commit([
      { type: 'del', key: Keys.pending(invocation.fn, invocation.seq) },
      { type: 'del', key: Keys.index(invocation.id) },
    ], () => { this.#count(invocation.fn).pending-- })
  }

  async reschedule (invocation: StoredInvocation, error: InvocationError, notBefore: number): Promise<StoredInvocation> {
    const record = { ...fromInvocation(invocation), n: invocation.attempts + 1, nb: notBefore, err: error }
    await this.#commit([{ type: 'put', key: Keys.pending(invocation.fn, invocation.seq), value: packr.pack(record) }], noop)
    return toInvocation(record)
  }

  async deadLetter (invocation: StoredInvocation, error: InvocationError, diedAt: number, countAttempt: boolean): Promise<DeadInvocation> {
    const record: Record = { ...fromInvocation(invocation), n: invocation.attempts + (countAttempt ? 1 : 0), nb: 0, err: error, died: diedAt }
    const fn = invocation.fn
    await this.#commit([
      { type: 'del', key: Keys.pending(fn, invocation.seq) },
      { type: 'put', key: Keys.dead(fn, invocation.seq), value: packr.pack(record) },
      { type: 'put', key: Keys.index(invocation.id), value: packIndex({ fn, seq: invocation.seq, dead: true }) },
    ], () => {
      const counts = this.#count(fn)
      counts.pending--
      counts.dead++
    })
    return toInvocation(record) as DeadInvocation
  }

  async remove (id: string): Promise<StoredInvocation | undefined> {
    const found = await this.#locate(id)
    if (found === undefined || found.entry.dead) return undefined
    const { fn, seq } = found.entry
    await this.#commit([
      { type: 'del', key: Keys.pending(fn, seq) },
      { type: 'del', key: Keys.index(id) },
    ], () => { this.#count(fn).pending-- })
    return toInvocation(found.record)
  }

  async listDead (fn: string | undefined, limit: number): Promise<DeadInvocation[]> {
    const functions = fn !== undefined ? [fn] : [...this.#counts.entries()].filter(([, c]) => c.dead > 0).map(([name]) => name)
    const out: DeadInvocation[] = []
    for (const name of functions) {
      for await (const value of this.#db.values({ ...Keys.deadRange(name), limit })) out.push(toInvocation(unpackRecord(value)) as DeadInvocation)
    }
    return out.sort((a, b) => a.seq - b.seq).slice(0, limit)
  }

  async revive (selector: { readonly id: string } | { readonly fn: string | undefined }): Promise<number> {
    if ('id' in selector) {
      const found = await this.#locate(selector.id)
      if (found === undefined || !found.entry.dead) return 0
      await this.#commit(...this.#reviveOperations([found.record]))
      return 1
    }
    return await this.#bulk(selector.fn, records => this.#commit(...this.#reviveOperations(records)))
  }

  async purgeDead (fn: string | undefined): Promise<number> {
    return await this.#bulk(fn, async records => {
      const operations: Operation[] = records.flatMap(r => [
        { type: 'del', key: Keys.dead(r.fn, r.seq) } as const,
        { type: 'del', key: Keys.index(r.id) } as const,
      ])
      await this.#commit(operations, () => { for (const r of records) this.#count(r.fn).dead-- })
    })
  }

  counts (): ReadonlyMap<string, FunctionCounts> {
    return this.#counts
  }

  async close (): Promise<void> {
    clearInterval(this.#sweepTimer)
    while (this.#writing || this.#queue.length > 0) await new Promise(resolve => setImmediate(resolve))
  }

  /** Back to pending at the end of the queue: a new seq, attempts reset, its age counted from now. */
  #reviveOperations (records: readonly Record[]): [Operation[], () => void] {
    const now = Date.now()
    const operations: Operation[] = []
    for (const record of records) {
      const seq = this.#nextSeq++
      const revived: Record = { ...record, seq, at: now, n: 0, nb: 0 }
      delete revived.died
      operations.push(
        { type: 'del', key: Keys.dead(record.fn, record.seq) },
        { type: 'put', key: Keys.pending(record.fn, seq), value: packr.pack(revived) },
        { type: 'put', key: Keys.index(record.id), value: packIndex({ fn: record.fn, seq, dead: false }) },
      )
    }
    return [operations, () => {
      for (const record of records) {
        const counts = this.#count(record.fn)
        counts.dead--
        counts.pending++
      }
    }]
  }

  /** Applies `change` to every dead record of `fn` (all functions when undefined), a bounded batch at a time. */
  async #bulk (fn: string | undefined, change: (records: Record[]) => Promise<void>): Promise<number> {
    const functions = fn !== undefined ? [fn] : [...this.#counts.keys()]
    let total = 0
    for (const name of functions) {
      for (;;) {
        const records: Record[] = []
        for await (const value of this.#db.values({ ...Keys.deadRange(name), limit: BULK_BATCH })) records.push(unpackRecord(value))
        if (records.length === 0) break
        await change(records)
        total += records.length
      }
    }
    return total
  }

  async #locate (id: string): Promise<{ entry: IndexEntry, record: Record } | undefined> {
    const indexed = await this.#read(Keys.index(id))
    if (indexed === undefined) return undefined
    const entry = unpackr.unpack(indexed) as IndexEntry
    const value = await this.#read(entry.dead ? Keys.dead(entry.fn, entry.seq) : Keys.pending(entry.fn, entry.seq))
    if (value === undefined) return undefined
    return { entry, record: unpackRecord(value) }
  }

  async #read (key: string): Promise<Buffer | undefined> {
    try {
      return (await this.#db.get(key)) ?? undefined
    } catch (err) {
      throw new FnbusError('FNBUS_STORE_FAILURE', `reading the invocation store failed: ${(err as Error).message}`, { cause: err })
    }
  }

  /** Queues operations for the next batch; resolves once that batch is durable. */
  #commit (operations: Operation[], committed: () => void, failed: () => void = noop): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ operations, committed, failed, resolve, reject })
      if (!this.#writing) {
        this.#writing = true
        // let the changes requested in this same turn of the event loop join the first batch too
        queueMicrotask(() => { void this.#writeBatches() })
      }
    })
  }

  async #writeBatches (): Promise<void> {
    while (this.#queue.length > 0) {
      const group = this.#queue
      this.#queue = []
      const operations = group.flatMap(g => g.operations)
      // one high-water mark per batch covers every seq handed out so far: a seq is never reused after a restart
      operations.push({ type: 'put', key: Keys.sequence, value: Buffer.from(String(this.#nextSeq - 1)) })
      try {
        // `sync` is classic-level's option (fsync); abstract-level's types do not list it
        await this.#db.batch(operations, { sync: this.#sync } as AbstractBatchOptions<string, Buffer>)
        this.batches++
      } catch (err) {
        const failure = new FnbusError('FNBUS_STORE_FAILURE', `writing to the invocation store failed: ${(err as Error).message}`, { cause: err })
        for (const g of group) {
          g.failed()
          g.reject(failure)
        }
        continue
      }
      for (const g of group) {
        g.committed()
        g.resolve()
      }
    }
    this.#writing = false
  }

  /** Deletes expired idempotency keys and rebuilds the key filter from those left (keys added meanwhile too). */
  async #sweepIdempotencyKeys (): Promise<void> {
    const now = Date.now()
    const expired: Operation[] = []
    const live: string[] = []
    this.#keysAddedDuringSweep = []
    try {
      for await (const [key, value] of this.#db.iterator(Keys.allIdempotency)) {
        if ((unpackr.unpack(value) as { exp: number }).exp <= now) expired.push({ type: 'del', key })
        else live.push(key)
        if (expired.length >= BULK_BATCH) await this.#commit(expired.splice(0), noop)
      }
      if (expired.length > 0) await this.#commit(expired, noop)
      const filter = new KeyFilter(Math.max(KEY_FILTER_MIN, live.length * 2))
      for (const key of live) filter.add(key)
      for (const key of this.#keysAddedDuringSweep) filter.add(key)
      this.#keyFilter = filter
      this.#keyFilterAdds = live.length
    } finally {
      this.#keysAddedDuringSweep = undefined
    }
  }

  #rememberKey (diskKey: string): void {
    this.#keyFilter.add(diskKey)
    this.#keysAddedDuringSweep?.push(diskKey)
    // past its capacity the filter answers "maybe" too often: rebuild it (a read per key costs, never misleads)
    if (++this.#keyFilterAdds > this.#keyFilter.capacity && this.#keysAddedDuringSweep === undefined) {
      this.#sweepIdempotencyKeys().catch(() => {})
    }
  }

  #count (fn: string): { pending: number, dead: number } {
    let counts = this.#counts.get(fn)
    if (counts === undefined) {
      counts = { pending: 0, dead: 0 }
      this.#counts.set(fn, counts)
    }
    return counts
  }
}

function noop (): void {}

function packIndex (entry: IndexEntry): Buffer {
  return packr.pack(entry)
}

function unpackRecord (value: Buffer): Record {
  return unpackr.unpack(value) as Record
}

function toInvocation (record: Record): StoredInvocation {
  const invocation: { -readonly [K in keyof DeadInvocation]?: DeadInvocation[K] } = {
    id: record.id,
    fn: record.fn,
    seq: record.seq,
    createdAt: record.at,
    payloadKind: record.pk,
    payload: record.p,
    attempts: record.n,
    notBefore: record.nb,
  }
  if (record.ctx !== undefined) invocation.context = record.ctx
  if (record.ik !== undefined) invocation.idempotencyKey = record.ik
  if (record.err !== undefined) invocation.lastError = record.err
  if (record.died !== undefined) invocation.diedAt = record.died
  return invocation as StoredInvocation
}

function fromInvocation (invocation: StoredInvocation): Record {
  const record: Record = {
    id: invocation.id,
    fn: invocation.fn,
    seq: invocation.seq,
    at: invocation.createdAt,
    pk: invocation.payloadKind,
    p: invocation.payload,
    n: invocation.attempts,
    nb: invocation.notBefore,
  }
  if (invocation.context !== undefined) record.ctx = invocation.context
  if (invocation.idempotencyKey !== undefined) record.ik = invocation.idempotencyKey
  if (invocation.lastError !== undefined) record.err = invocation.lastError
  return record
}
