import { statfs } from 'node:fs/promises'
import type { Logger } from '../logger.js'

/** How often the free space of the data directory's filesystem is read: a statfs is cheap, but not free per call. */
const POLL_MS = 1000

/**
 * The free space of the filesystem under the data directory, read once a second. Below `minFreeBytes` the gateway
 * takes no new stored (Async) invocations: a client that sends them without end fills the disk the broker's
 * sessions, the logs and the system share, and a full disk fails every writer at once. What was accepted is
 * still delivered, which frees space again.
 */
export class DiskSpace {
  readonly #dir: string
  readonly #minFreeBytes: number
  readonly #logger: Logger
  #free = Infinity
  #timer: NodeJS.Timeout | undefined
  #reading = false

  constructor (dir: string, minFreeBytes: number, logger: Logger) {
    this.#dir = dir
    this.#minFreeBytes = minFreeBytes
    this.#logger = logger
  }

  /** Reads the free space once, then keeps it current. */
  async start (): Promise<void> {
    await this.#read()
    this.#timer = setInterval(() => { void this.#read() }, POLL_MS)
    this.#timer.unref()
  }

  stop (): void {
    clearInterval(this.#timer)
  }

  /** Bytes available to the gateway's user on the data directory's filesystem, as last read. */
  get freeBytes (): number {
    return this.#free
  }

  /** Why a new stored invocation is refused now, or undefined when there is room. */
  refusal (): string | undefined {
    if (this.#free >= this.#minFreeBytes) return undefined
    return `the data directory's filesystem has ${this.#free} bytes free (limits.minFreeDiskBytes: ${this.#minFreeBytes})`
  }

  async #read (): Promise<void> {
    if (this.#reading) return
    this.#reading = true
    try {
      const stats = await statfs(this.#dir)
      const free = stats.bavail * stats.bsize
      const wasLow = this.#free < this.#minFreeBytes
      this.#free = free
      const low = free < this.#minFreeBytes
      if (low && !wasLow) this.#logger.warn({ dir: this.#dir, freeBytes: free, limit: this.#minFreeBytes }, 'the data directory is low on disk space: Async invocations are refused (limits.minFreeDiskBytes)')
      else if (!low && wasLow && free !== Infinity) this.#logger.info({ dir: this.#dir, freeBytes: free }, 'disk space is back above limits.minFreeDiskBytes: Async invocations are accepted again')
    } catch (err) {
      // a filesystem that cannot say leaves the last figure in force; the store's own write errors still apply
      this.#logger.debug({ err, dir: this.#dir }, 'reading the free disk space failed')
    } finally {
      this.#reading = false
    }
  }
}
