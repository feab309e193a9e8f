import type { Logger } from '../logger.js'
import type { InvocationStore } from '../store/types.js'
import type { Clock } from '../util/clock.js'
import { DEFAULT_ASYNC_OPTIONS, type AsyncFunctionOptions } from './async-options.js'
import type { Destinations } from './destinations.js'
import { READ_BATCH, type Lane } from './lane.js'

const SWEEP_INTERVAL_MS = 60_000

/** What the sweep reads of the async engine: given once, when the engine is made. */
export interface SweepHost {
  readonly store: InvocationStore
  /** `createdAt` in the store is on its epoch. */
  readonly clock: Clock
  readonly logger: Logger
  readonly destinations: Destinations
  closed (): boolean
  options (fn: string): AsyncFunctionOptions
  /** The options of every function configured: the sweep comes as often as the shortest maxEventAge needs. */
  configured (): Iterable<AsyncFunctionOptions>
  laneOf (fn: string): Lane | undefined
  /** Keeps a store operation visible to the engine's close(). */
  track<T> (write: Promise<T>): Promise<T>
}

/**
 * Dead-letters invocations older than their function's maxEventAge, every function with stored work, served or
 * not: those of a function nobody serves are read from disk, a window at a time, and dead-lettered there. One
 * timer for every function, served or not: no timer per name.
 */
export class AgeSweep {
  readonly #host: SweepHost
  #timer: NodeJS.Timeout | undefined
  #sweeping = false

  constructor (host: SweepHost) {
    this.#host = host
  }

  schedule (): void {
    if (this.#host.closed()) return
    let interval = Math.min(SWEEP_INTERVAL_MS, DEFAULT_ASYNC_OPTIONS.maxEventAgeMs)
    for (const options of this.#host.configured()) interval = Math.min(interval, options.maxEventAgeMs)
    this.#timer = setTimeout(() => {
      this.#sweeping = true
      // #sweepAll catches what each function's sweep throws: nothing is left to reject
      void this.#sweepAll().finally(() => {
        this.#sweeping = false
        this.schedule()
      })
    }, interval)
    this.#timer.unref()
  }

  /** A function's options changed: a shorter maxEventAge needs the sweep sooner. */
  reschedule (): void {
    if (this.#timer !== undefined && !this.#sweeping) {
      clearTimeout(this.#timer)
      this.schedule()
    }
  }

  stop (): void {
    clearTimeout(this.#timer)
  }

  async #sweepAll (): Promise<void> {
    const host = this.#host
    for (const [fn, counts] of [...host.store.counts()]) {
      if (counts.pending === 0 || host.closed()) continue
      try {
        const lane = host.laneOf(fn)
        if (lane !== undefined) await lane.sweep()
        else await this.#sweepUnserved(fn)
      } catch (err) {
        host.logger.error({ err, fn }, 'sweeping aged invocations failed; the next sweep tries again')
      }
    }
  }

  async #sweepUnserved (fn: string): Promise<void> {
    const host = this.#host
    const maxAge = host.options(fn).maxEventAgeMs
    let after = 0
    for (;;) {
      const records = await host.track(host.store.readPending(fn, after, READ_BATCH))
      const now = host.clock.epoch()
      for (const record of records) {
        // queue order is acceptance order: the first young one ends the sweep
        if (now - record.createdAt <= maxAge || host.closed() || host.laneOf(fn) !== undefined) return
        const error = { code: 'FNBUS_TIMEOUT', message: 'older than maxEventAge before it could be delivered' }
        const dead = await host.track(host.store.deadLetter(record, error, now, false))
        host.destinations.reportDead(fn, record, dead, error)
      }
      const last = records.at(-1)
      if (records.length < READ_BATCH || last === undefined) return
      after = last.seq
    }
  }
}
