import type { GroupCommit, Operation } from './group-commit.js'
import { KeyFilter, KeyHashes } from './key-filter.js'
import { BULK, Keys, SCAN_PAGE, type AsyncSublevel } from './keys.js'
import { decodeIdempotencyEntry, storeFailure } from './records.js'

export interface IdempotencySweepOptions {
  /** How often expired idempotency keys are deleted (also at start). */
  readonly intervalMs: number
  /** The clock that says which keys have expired. */
  readonly now: () => number
}

/**
 * The idempotency keys on disk (`k!{fn}!{key}` → `{ id, exp }`), as the invocation store's appends see them: the
 * Bloom filter that answers "never seen" for a new key without a disk read, and the sweep that deletes expired
 * keys, periodically and whenever the filter is full, and rebuilds the filter from the keys left.
 *
 * A key enters the filter in the step that queues its write (`remember`): the filter never says "never seen" for a
 * key on disk or on its way there. Expired keys stay in the filter until the next sweep rebuilds it.
 */
export class IdempotencySweep {
  readonly #db: AsyncSublevel
  readonly #commits: GroupCommit
  readonly #intervalMs: number
  readonly #now: () => number
  #filter = new KeyFilter()
  /** Idempotency keys written while a sweep runs: it neither deletes them nor leaves them out of its filter. */
  #writtenDuringSweep: Set<string> | undefined
  #sweep: Promise<void> | undefined
  #timer: NodeJS.Timeout | undefined
  /** From start() to stop(): sweeps run. */
  #running = false

  /** `db`: the sublevel the keys are in; `commits`: its writer, which deletes them. */
  constructor (db: AsyncSublevel, commits: GroupCommit, options: IdempotencySweepOptions) {
    this.#db = db
    this.#commits = commits
    this.#intervalMs = options.intervalMs
    this.#now = options.now
  }

  /** False: `diskKey` is neither on disk nor on its way there. True: it may be (a false positive costs a read). */
  mightContain (diskKey: string): boolean {
    return this.#filter.mightContain(diskKey)
  }

  /** `diskKey` is being written: called in the step that queues its write. */
  remember (diskKey: string): void {
    this.#filter.add(diskKey)
    this.#writtenDuringSweep?.add(diskKey)
    // past its capacity the filter says "maybe" too often: a sweep rebuilds it, sized for what is on disk
    if (this.#filter.full && this.#sweep === undefined && this.#running) this.sweep().catch(noop)
  }

  /** Sweeps now (building the filter from what is on disk), then every `intervalMs`. */
  async start (): Promise<void> {
    this.#running = true
    await this.sweep()
    if (!this.#running) return // stopped meanwhile
    this.#timer = setInterval(() => { this.sweep().catch(noop) }, this.#intervalMs)
    this.#timer.unref()
  }

  /** No more sweeps; one under way stops at its next page of keys (the next start sweeps again). */
  async stop (): Promise<void> {
    this.#running = false
    clearInterval(this.#timer)
    await this.#sweep?.catch(noop)
  }

  /** Deletes expired idempotency keys and rebuilds the key filter from the keys left; joins a sweep under way. */
  sweep (): Promise<void> {
    this.#sweep ??= this.#sweepExpiredKeys().finally(() => { this.#sweep = undefined })
    return this.#sweep
  }

  async #sweepExpiredKeys (): Promise<void> {
    const now = this.#now()
    const written = new Set<string>()
    this.#writtenDuringSweep = written
    try {
      // a key queued before the sweep began but written after its iterator's snapshot would be in neither the
      // snapshot nor `written`: left out of the filter, or deleted as the expired key it replaces
      await this.#commits.barrier()
      const live = new KeyHashes()
      if (!await this.#collectExpiredKeys(now, live, written)) return
      this.#filter = KeyFilter.of(live, written)
    } catch (err) {
      throw storeFailure('sweeping idempotency keys', err)
    } finally {
      this.#writtenDuringSweep = undefined
    }
  }

  /** Deletes the expired keys and hashes the live ones into `live`; false when stop() cut it short. */
  async #collectExpiredKeys (now: number, live: KeyHashes, written: ReadonlySet<string>): Promise<boolean> {
    let expired: string[] = []
    const iterator = this.#db.iterator(Keys.allIdempotency)
    try {
      for (let entries = await iterator.nextv(SCAN_PAGE); entries.length > 0; entries = await iterator.nextv(SCAN_PAGE)) {
        if (!this.#running) return false // the next start sweeps again
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
    await this.#commits.commit(operations)
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
