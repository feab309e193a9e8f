// Where a bridge's outbound queue lives on disk: a `bridge` sublevel of the gateway's LevelDB, one key per message,
// `{bridge}!{seq}` with the seq in fixed-width decimal so that keys sort in the queue's order. Writes go out as group
// commits: every change made while a batch is on its way joins the next one, and only one batch is on its way at a
// time, so batches reach LevelDB in the order their changes were made (a message's delete never overtakes its put).
// Batches are chained batches of the root database with the sublevel's prefix added here, as the invocation store's
// (src/store/group-commit.ts): `batch(array)` through a sublevel clones every operation twice.
import type { AbstractBatchOptions, AbstractSublevel } from 'abstract-level'
import type { Database } from '../store/database.js'

/** One queued message as stored. */
export interface QueuedRecord {
  readonly topic: string
  readonly payload: Buffer
  readonly retain: boolean
  /** Epoch ms when it was queued (for `queue.maxAgeMs`). */
  readonly at: number
}

const SEQ_WIDTH = 16
/**
 * Deletes wait this long for a batch of puts to ride with (or for each other): a delete is not waited for, and one
 * LevelDB write per handful of the remote broker's PUBACKs cost more than the deletes themselves (measured: ~1,900
 * writes for 40,000 messages forwarded, against ~190 batches of puts).
 */
const DELETE_DELAY_MS = 20
const HEADER = 1 + 8 + 2

export function encodeRecord (record: QueuedRecord): Buffer {
  const topic = Buffer.from(record.topic, 'utf8')
  const out = Buffer.allocUnsafe(HEADER + topic.length + record.payload.length)
  out[0] = record.retain ? 1 : 0
  out.writeDoubleBE(record.at, 1)
  out.writeUInt16BE(topic.length, 9)
  topic.copy(out, HEADER)
  record.payload.copy(out, HEADER + topic.length)
  return out
}

export function decodeRecord (value: Buffer): QueuedRecord {
  const topicLength = value.readUInt16BE(9)
  return {
    retain: (value[0] as number & 1) === 1,
    at: value.readDoubleBE(1),
    topic: value.toString('utf8', HEADER, HEADER + topicLength),
    // a copy: LevelDB's buffer may be a slice of a larger one kept alive by it
    payload: Buffer.from(value.subarray(HEADER + topicLength)),
  }
}

/** Bytes a record takes on disk (what `queue.maxBytes` counts). */
export function recordBytes (topic: string, payload: Buffer): number {
  return HEADER + Buffer.byteLength(topic) + payload.length
}

type Sublevel = AbstractSublevel<Database, string | Buffer | Uint8Array, string, Buffer>
interface Pending {
  readonly promise: Promise<void>
  readonly resolve: () => void
  readonly reject: (err: unknown) => void
}

function pending (): Pending {
  let settle!: Pick<Pending, 'resolve' | 'reject'>
  const promise = new Promise<void>((resolve, reject) => { settle = { resolve, reject } })
  return { promise, resolve: settle.resolve, reject: settle.reject }
}

/** A change: a put (a value) or a delete (none), of a key of the root database. */
interface Change { readonly key: string, readonly value: Buffer | undefined }

// classic-level's option (fsync the write); abstract-level's types do not list it
const SYNC_WRITE = { sync: true } as AbstractBatchOptions<string, Buffer>

export class QueueDisk {
  readonly #db: Sublevel
  readonly #root: Database
  readonly #prefix: string
  /** The sublevel's prefix and this bridge's: keys of the root database. */
  readonly #rootPrefix: string
  readonly #sync: boolean
  #changes: Change[] = []
  /** What the puts of the batch being gathered wait for: one promise for all of them, made by its first put. */
  #pending: Pending | undefined
  #needsSync = false
  #writing: Promise<void> | undefined
  /** Deletes are waiting (DELETE_DELAY_MS) for a batch to start. */
  #deleteTimer: NodeJS.Timeout | undefined
  /** Told of a failed batch nobody waits for (deletes only): its messages are sent again after a restart. */
  onError: (err: unknown) => void = () => {}

  /** `name`: the bridge's; `sync`: fsync the batches that hold messages (the gateway's `fsync`). */
  constructor (db: Database, name: string, sync: boolean) {
    const sublevel = db.sublevel<string, Buffer>('bridge', { valueEncoding: 'buffer' })
    this.#db = sublevel
    this.#root = db
    // after a failed write the database closes and reopens, its sublevels with it
    db.onReopen(() => sublevel.open())
    this.#prefix = `${name}!`
    this.#rootPrefix = sublevel.prefix + this.#prefix
    this.#sync = sync
  }

  keyOf (seq: number): string {
    return this.#prefix + String(seq).padStart(SEQ_WIDTH, '0')
  }

  #rootKeyOf (seq: number): string {
    return this.#rootPrefix + String(seq).padStart(SEQ_WIDTH, '0')
  }

  /** Every stored message of this bridge, oldest first, with its seq. */
  async * readAll (): AsyncGenerator<{ seq: number, record: QueuedRecord, bytes: number }> {
    for await (const [key, value] of this.#db.iterator({ gt: this.#prefix, lt: this.#prefix + '\xff' })) {
      yield { seq: Number(key.slice(this.#prefix.length)), record: decodeRecord(value), bytes: value.length }
    }
  }

  /** Up to `limit` stored messages from `seq` on, oldest first. */
  async readFrom (seq: number, limit: number): Promise<{ seq: number, record: QueuedRecord }[]> {
    const out: { seq: number, record: QueuedRecord }[] = []
    for await (const [key, value] of this.#db.iterator({ gte: this.keyOf(seq), lt: this.#prefix + '\xff', limit })) {
      out.push({ seq: Number(key.slice(this.#prefix.length)), record: decodeRecord(value) })
    }
    return out
  }

  /**
   * Stores a message; resolves once the batch holding it is written (fsynced when `sync`). Every put of one batch
   * gets the same promise: whoever waits on it hears in the order they began waiting.
   */
  put (seq: number, value: Buffer): Promise<void> {
    this.#changes.push({ key: this.#rootKeyOf(seq), value })
    if (this.#sync) this.#needsSync = true
    this.#kick()
    return (this.#pending ??= pending()).promise
  }

  /**
   * Removes a message, with the next batch of puts or within DELETE_DELAY_MS; nobody waits for it (a message sent
   * twice after a crash is at least once).
   */
  del (seq: number): void {
    this.#changes.push({ key: this.#rootKeyOf(seq), value: undefined })
    // a batch on its way takes it next
    if (this.#writing !== undefined) return
    this.#deleteTimer ??= setTimeout(() => {
      this.#deleteTimer = undefined
      this.#kick()
    }, DELETE_DELAY_MS).unref()
  }

  /** Resolves once every change made so far is written (or failed). */
  async flushed (): Promise<void> {
    if (this.#deleteTimer !== undefined) this.#kick()
    while (this.#writing !== undefined) await this.#writing
  }

  #kick (): void {
    clearTimeout(this.#deleteTimer)
    this.#deleteTimer = undefined
    this.#writing ??= this.#drain()
  }

  async #drain (): Promise<void> {
    // changes made in the same tick join the first batch
    await Promise.resolve()
    while (this.#changes.length > 0) {
      const changes = this.#changes
      const waiting = this.#pending
      const sync = this.#needsSync
      this.#changes = []
      this.#pending = undefined
      this.#needsSync = false
      try {
        await this.#write(changes, sync)
        waiting?.resolve()
      } catch (err) {
        if (waiting === undefined) this.onError(err)
        else waiting.reject(err)
      }
    }
    this.#writing = undefined
  }

  /** One chained batch of the root database (measured: about half the main thread's time of batch(array) on the sublevel). */
  #write (changes: readonly Change[], sync: boolean): Promise<void> {
    const batch = this.#root.batch()
    try {
      for (const change of changes) {
        if (change.value === undefined) batch.del(change.key)
        else batch.put(change.key, change.value)
      }
    } catch (err) {
      batch.close().catch(() => {})
      throw err
    }
    return sync ? batch.write(SYNC_WRITE) : batch.write()
  }
}
