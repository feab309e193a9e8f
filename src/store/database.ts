import { mkdir } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { AbstractPutOptions } from 'abstract-level'
import { Level } from 'level'
import { FnbusError } from '../errors.js'
import { silentLogger, type Logger } from '../logger.js'

/** Bumped when the layout of stored data changes; a gateway refuses a directory written by a newer one. */
export const STORE_FORMAT_VERSION = 1
const FORMAT_KEY = 'format'
/** Written with sync after each reopen: the database counts as writable again only once a write has reached the disk. */
const RECOVERED_KEY = 'recovered'

/** First pause before reopening after a failed write; each failed attempt doubles it, up to RECOVERY_MAX_DELAY_MS. */
const RECOVERY_FIRST_DELAY_MS = 500
const RECOVERY_MAX_DELAY_MS = 10_000
/** Healthy this long, the next failure starts again from the first pause (a disk that keeps filling up backs off). */
const RECOVERY_RESET_AFTER_MS = 60_000

export interface DatabaseOptions {
  /** Where a failed write and the recovery from it are told. */
  readonly logger?: Logger
  /** First pause before reopening after a failed write (tests shorten it). Default 500 ms. */
  readonly recoveryDelayMs?: number
}

/** abstract-level's implementation methods: its types leave them out. */
interface LevelWrites {
  _put (key: unknown, value: unknown, options: unknown): Promise<void>
  _del (key: unknown, options: unknown): Promise<void>
  _batch (operations: unknown, options: unknown): Promise<void>
  _chainedBatch (): { _write (options: unknown): Promise<void> }
}

const levelWrites = Level.prototype as unknown as LevelWrites

// classic-level's option (fsync the write); abstract-level's types do not list it
const SYNC_PUT = { sync: true } as AbstractPutOptions<string, string>

/**
 * The one LevelDB of a data directory. aedes' persistence and the bus each get a sublevel of it: LevelDB admits one
 * opener per directory, even within a process.
 *
 * It watches every write that reaches LevelDB. After one fails (disk full, I/O error) LevelDB must not take another
 * before it is reopened: the failed write may have left part of a record in the log, and a write after it would
 * succeed, be acknowledged, and be dropped with the broken record when the log is next replayed (measured: every
 * Async invocation accepted after a full disk filled and emptied again was gone after a restart); and a failed
 * flush or fsync leaves LevelDB refusing every write until reopened. So the first failed write closes the database
 * at once and it reopens itself, with backoff, until a write with sync succeeds; `healthy` is false meanwhile.
 */
export class Database extends Level<string, Buffer> {
  readonly #logger: Logger
  readonly #firstDelayMs: number
  /** Run after each reopen, in order, before the database counts as healthy again: sublevels open again, stores reload. */
  readonly #reopenSteps: (() => Promise<void>)[] = []
  #healthy = true
  #failedWrites = 0
  #recovery: Promise<void> | undefined
  #nextDelayMs: number
  #healthySince = 0
  #shuttingDown = false
  #wake: (() => void) | undefined

  constructor (location: string, options: DatabaseOptions = {}) {
    super(location, { keyEncoding: 'utf8', valueEncoding: 'buffer' })
    this.#logger = options.logger ?? silentLogger
    this.#firstDelayMs = options.recoveryDelayMs ?? RECOVERY_FIRST_DELAY_MS
    this.#nextDelayMs = this.#firstDelayMs
  }

  /** False from a failed write until the database has reopened and written again. */
  get healthy (): boolean {
    return this.#healthy && this.status === 'open'
  }

  /**
   * Writes that failed since the start. A write that succeeds while this changes may have been logged after the
   * failed one, and may not survive the reopen: a store that reads it before and after a write treats such a write
   * as failed.
   */
  get failedWrites (): number {
    return this.#failedWrites
  }

  /** Runs `step` after each reopen (in the order given), before the database counts as healthy again. */
  onReopen (step: () => Promise<void>): void {
    this.#reopenSteps.push(step)
  }

  /** Also ends a recovery under way. */
  override async close (): Promise<void> {
    this.#shuttingDown = true
    this.#wake?.()
    await this.#recovery
    await super.close()
  }

  async _put (key: unknown, value: unknown, options: unknown): Promise<void> {
    await this.#watch(levelWrites._put.call(this, key, value, options))
  }

  async _del (key: unknown, options: unknown): Promise<void> {
    await this.#watch(levelWrites._del.call(this, key, options))
  }

  async _batch (operations: unknown, options: unknown): Promise<void> {
    await this.#watch(levelWrites._batch.call(this, operations, options))
  }

  _chainedBatch (): unknown {
    const batch = levelWrites._chainedBatch.call(this)
    const write = batch._write
    batch._write = (options: unknown) => this.#watch(write.call(batch, options))
    return batch
  }

  #watch (write: Promise<void>): Promise<void> {
    return write.catch((err: unknown) => {
      this.#writeFailed(err)
      throw err
    })
  }

  #writeFailed (err: unknown): void {
    this.#failedWrites++
    if (!this.#healthy || this.#shuttingDown) return
    this.#healthy = false
    if (performance.now() - this.#healthySince > RECOVERY_RESET_AFTER_MS) this.#nextDelayMs = this.#firstDelayMs
    this.#logger.error({ err }, 'a write to the data directory failed: Async invocations are refused until the database reopens and writes again')
    // close() marks the database closing before its first pause: from here every write is refused, none joins the log
    const closed = super.close()
    this.#recovery = this.#recover(closed).catch((recoveryErr: unknown) => {
      this.#logger.error({ err: recoveryErr }, 'recovering the data directory failed; restart the gateway')
    }).finally(() => { this.#recovery = undefined })
  }

  async #recover (closed: Promise<void>): Promise<void> {
    const since = performance.now()
    await closed.catch((err: unknown) => this.#logger.warn({ err }, 'closing the data directory after a failed write failed'))
    for (let attempt = 1; ; attempt++) {
      const delay = this.#nextDelayMs
      await this.#pause(delay)
      if (this.#shuttingDown) return
      this.#nextDelayMs = Math.min(delay * 2, RECOVERY_MAX_DELAY_MS)
      const failedBefore = this.#failedWrites
      try {
        if (this.status !== 'open') await super.open()
        await this.sublevel<string, string>('meta', { valueEncoding: 'utf8' }).put(RECOVERED_KEY, new Date().toISOString(), SYNC_PUT)
        for (const step of this.#reopenSteps) await step()
        // a write of anyone's (aedes', say) that failed meanwhile is as bad as the probe failing
        if (this.#failedWrites !== failedBefore) throw new Error('a write failed while the database reopened')
      } catch (err) {
        this.#logger.warn({ err, attempt, nextInMs: this.#nextDelayMs }, 'the data directory cannot be written yet; trying again')
        if (this.status === 'open') await super.close().catch(noop)
        continue
      }
      this.#healthy = true
      this.#healthySince = performance.now()
      this.#logger.info({ attempts: attempt, outageMs: Math.round(performance.now() - since) }, 'the data directory is writable again: Async invocations are accepted')
      return
    }
  }

  #pause (ms: number): Promise<void> {
    return new Promise(resolve => {
      const timer = setTimeout(resolve, ms)
      timer.unref()
      this.#wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }
}

/** Opens the one LevelDB of a data directory (see Database). */
export async function openDatabase (dataDir: string, options: DatabaseOptions = {}): Promise<Database> {
  const dir = resolve(dataDir)
  await mkdir(dir, { recursive: true })
  const db = new Database(dir, options)
  try {
    await db.open()
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    if (cause?.code === 'LEVEL_LOCKED') {
      throw new FnbusError('FNBUS_DATA_DIR_LOCKED', `data directory ${dir} is in use by another fnbus gateway (or another LevelDB user)`, { cause: err })
    }
    throw new FnbusError('FNBUS_STORE_FAILURE', `cannot open data directory ${dir}: ${(err as Error).message}`, { cause: err })
  }
  try {
    await checkFormat(db, dir)
  } catch (err) {
    await db.close()
    throw err
  }
  return db
}

async function checkFormat (db: Database, dir: string): Promise<void> {
  const meta = db.sublevel<string, string>('meta', { valueEncoding: 'utf8' })
  const stored = await meta.get(FORMAT_KEY)
  if (stored === undefined) {
    await meta.put(FORMAT_KEY, String(STORE_FORMAT_VERSION))
    return
  }
  const version = Number(stored)
  if (!Number.isInteger(version) || version > STORE_FORMAT_VERSION) {
    throw new FnbusError('FNBUS_STORE_FAILURE',
      `data directory ${dir} holds store format ${stored}, newer than this gateway's ${STORE_FORMAT_VERSION}: upgrade fnbus, or point --data elsewhere`)
  }
}

function noop (): void {}
