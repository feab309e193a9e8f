// A bridge's outbound queue: the messages waiting for the remote broker's PUBACK, in order, within bounds
// (docs/bridge.md#store-and-forward). On disk (QueueDisk) when the gateway has a data directory, in memory otherwise.
// What is on disk is also indexed in memory by a small entry per message (seq, size, time); payloads stay in memory
// only up to HOT_BYTES, so a backlog of any length costs the gateway little memory: colder ones are read back from
// disk, a window at a time, when their turn to be sent comes.
import { QueueDisk, encodeRecord, recordBytes, type QueuedRecord } from './queue-disk.js'

export interface QueueBounds {
  readonly maxMessages: number
  readonly maxBytes: number
  readonly maxAgeMs: number
}

export const DEFAULT_QUEUE_BOUNDS: QueueBounds = Object.freeze({ maxMessages: 100_000, maxBytes: 100 * 1024 * 1024, maxAgeMs: 7 * 24 * 3600_000 })

/** Payload bytes of queued messages kept in memory besides their disk copy. */
export const HOT_BYTES = 8 * 1024 * 1024
/** Messages read back from disk at once. */
const READ_WINDOW = 512

export type DropReason = 'maxMessages' | 'maxBytes' | 'maxAgeMs'

export interface QueueEntry {
  readonly seq: number
  readonly bytes: number
  readonly at: number
  /** The message; undefined while it is on disk only. */
  record: QueuedRecord | undefined
  /** On disk (or, in memory mode, queued): it may be sent. */
  durable: boolean
  /** Acknowledged or dropped: gone from the queue. */
  gone: boolean
}

export interface OutboundQueueOptions {
  readonly bounds: QueueBounds
  /** Undefined: the queue lives in memory (the gateway's `memory: true`). */
  readonly disk: QueueDisk | undefined
  /** Told of each message dropped by a bound (the caller counts and logs). */
  readonly onDrop: (reason: DropReason, count: number) => void
  /** Told once per batch written to disk: its messages may now be sent. */
  readonly onDurable?: () => void
  /** Told once per batch that could not be written, with how many messages it refused. */
  readonly onWriteFailed?: (err: unknown, count: number) => void
  readonly now?: () => number
}

export class OutboundQueue {
  readonly #bounds: QueueBounds
  readonly #disk: QueueDisk | undefined
  readonly #onDrop: (reason: DropReason, count: number) => void
  readonly #now: () => number
  /** Entries from #head on are queued, oldest first; before #head, gone. */
  #entries: QueueEntry[] = []
  #head = 0
  /** The next entry to send. */
  #cursor = 0
  #nextSeq = 1
  #bytes = 0
  #count = 0
  #hotBytes = 0
  #loading: Promise<void> | undefined
  /** The batch the disk is gathering (its promise, the put of each message pushed into it). */
  #batch: { readonly written: Promise<void>, readonly entries: QueueEntry[] } | undefined
  readonly #onDurable: () => void
  readonly #onWriteFailed: (err: unknown, count: number) => void

  constructor (options: OutboundQueueOptions) {
    this.#bounds = options.bounds
    this.#disk = options.disk
    this.#onDrop = options.onDrop
    this.#now = options.now ?? Date.now
    this.#onDurable = options.onDurable ?? (() => {})
    this.#onWriteFailed = options.onWriteFailed ?? (() => {})
  }

  /** Messages queued (sent and not acknowledged included). */
  get messages (): number {
    return this.#count
  }

  /** Bytes queued, as stored. */
  get bytes (): number {
    return this.#bytes
  }

  /** Reads what a previous run left on disk: it is sent first, in its order. */
  async open (): Promise<void> {
    if (this.#disk === undefined) return
    for await (const { seq, record, bytes } of this.#disk.readAll()) {
      const hot = this.#hotBytes + record.payload.length <= HOT_BYTES
      if (hot) this.#hotBytes += record.payload.length
      this.#entries.push({ seq, bytes, at: record.at, record: hot ? record : undefined, durable: true, gone: false })
      this.#count++
      this.#bytes += bytes
      this.#nextSeq = seq + 1
    }
    this.#enforce(0, 0)
  }

  /**
   * Queues a message. Returns a promise that settles once it is durable (on disk, fsynced when the store is), or
   * undefined in memory mode, where it is queued at once. Past a bound the oldest messages are dropped first.
   */
  push (topic: string, payload: Buffer, retain: boolean): Promise<void> | undefined {
    const bytes = recordBytes(topic, payload)
    const at = this.#now()
    if (bytes > this.#bounds.maxBytes) {
      this.#onDrop('maxBytes', 1)
      return undefined
    }
    this.#enforce(1, bytes)
    const record: QueuedRecord = { topic, payload, retain, at }
    const hot = this.#disk === undefined || this.#hotBytes + payload.length <= HOT_BYTES
    if (hot) this.#hotBytes += payload.length
    const entry: QueueEntry = { seq: this.#nextSeq++, bytes, at, record: hot ? record : undefined, durable: this.#disk === undefined, gone: false }
    this.#entries.push(entry)
    this.#count++
    this.#bytes += bytes
    if (this.#disk === undefined) return undefined
    const written = this.#disk.put(entry.seq, encodeRecord(record))
    // one reaction per batch, not per message: the queue hears first, before any publisher
    if (this.#batch?.written === written) {
      this.#batch.entries.push(entry)
      return written
    }
    const batch = { written, entries: [entry] }
    this.#batch = batch
    written.then(() => this.#written(batch.entries), (err: unknown) => this.#failed(batch.entries, err))
    return written
  }

  #written (entries: readonly QueueEntry[]): void {
    if (this.#batch?.entries === entries) this.#batch = undefined
    const disk = this.#disk as QueueDisk
    for (const entry of entries) {
      entry.durable = true
      // dropped by a bound while it was being written
      if (entry.gone) disk.del(entry.seq)
    }
    this.#onDurable()
  }

  #failed (entries: readonly QueueEntry[], err: unknown): void {
    if (this.#batch?.entries === entries) this.#batch = undefined
    // not on disk: not taken (each publisher hears so and sends its message again)
    for (const entry of entries) if (!entry.gone) this.#remove(entry)
    this.#onWriteFailed(err, entries.length)
  }

  /**
   * Up to `max` messages to send next, in order, marked as sent; fewer when the next one is not durable yet. Reads
   * from disk those whose payload is not in memory.
   */
  async take (max: number): Promise<QueueEntry[]> {
    this.#expire()
    const out: QueueEntry[] = []
    while (out.length < max && this.#cursor < this.#entries.length) {
      const entry = this.#entries[this.#cursor] as QueueEntry
      if (entry.gone) {
        this.#cursor++
        continue
      }
      if (!entry.durable) break
      if (entry.record === undefined) {
        await this.#load(entry.seq)
        // the entry may have been dropped, or the cursor rewound, while the disk was read
        if (entry.gone || entry.record === undefined || this.#entries[this.#cursor] !== entry) break
      }
      out.push(entry)
      this.#cursor++
    }
    return out
  }

  /** Whether a message is ready to be taken. */
  get ready (): boolean {
    for (let i = this.#cursor; i < this.#entries.length; i++) {
      const entry = this.#entries[i] as QueueEntry
      if (!entry.gone) return entry.durable
    }
    return false
  }

  /** The remote broker acknowledged `entry`: it leaves the queue (and the disk). */
  ack (entry: QueueEntry): void {
    if (entry.gone) return
    this.#remove(entry)
  }

  /** The connection was lost: what was sent and not acknowledged is sent again, from the oldest. */
  rewind (): void {
    this.#cursor = this.#head
  }

  /** Resolves once every change is on disk. */
  async flushed (): Promise<void> {
    await this.#disk?.flushed()
  }

  async #load (seq: number): Promise<void> {
    const disk = this.#disk as QueueDisk
    this.#loading ??= disk.readFrom(seq, READ_WINDOW).then(rows => {
      const bySeq = new Map(rows.map(row => [row.seq, row.record]))
      for (let i = this.#cursor; i < this.#entries.length && bySeq.size > 0; i++) {
        const entry = this.#entries[i] as QueueEntry
        const record = bySeq.get(entry.seq)
        if (record === undefined) continue
        bySeq.delete(entry.seq)
        if (!entry.gone && entry.record === undefined) entry.record = record
      }
    }).finally(() => { this.#loading = undefined })
    await this.#loading
  }

  #remove (entry: QueueEntry): void {
    entry.gone = true
    this.#count--
    this.#bytes -= entry.bytes
    if (entry.record !== undefined) {
      this.#hotBytes -= entry.record.payload.length
      entry.record = undefined
    }
    if (entry.durable) this.#disk?.del(entry.seq)
    // entries leave from the front once everything before them has gone
    while (this.#head < this.#entries.length && (this.#entries[this.#head] as QueueEntry).gone) this.#head++
    if (this.#cursor < this.#head) this.#cursor = this.#head
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head)
      this.#cursor -= this.#head
      this.#head = 0
    }
  }

  /** Drops the oldest until `messages` more messages of `bytes` more bytes fit. */
  #enforce (messages: number, bytes: number): void {
    this.#expire()
    let byCount = 0
    let byBytes = 0
    while (this.#count > 0 && (this.#count + messages > this.#bounds.maxMessages || this.#bytes + bytes > this.#bounds.maxBytes)) {
      if (this.#count + messages > this.#bounds.maxMessages) byCount++
      else byBytes++
      this.#remove(this.#entries[this.#head] as QueueEntry)
    }
    if (byCount > 0) this.#onDrop('maxMessages', byCount)
    if (byBytes > 0) this.#onDrop('maxBytes', byBytes)
  }

  /** Drops messages older than maxAgeMs (the oldest are at the front). */
  #expire (): void {
    const oldest = this.#now() - this.#bounds.maxAgeMs
    let expired = 0
    while (this.#count > 0 && (this.#entries[this.#head] as QueueEntry).at < oldest) {
      this.#remove(this.#entries[this.#head] as QueueEntry)
      expired++
    }
    if (expired > 0) this.#onDrop('maxAgeMs', expired)
  }
}
