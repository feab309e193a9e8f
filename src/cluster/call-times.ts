import { LATENCY_BUCKETS } from '../dispatcher/tally.js'

/** Calls timed at once: a call past this many in flight overwrites an older one's start, which then goes untimed. */
const SLOTS = 4096

/** A histogram of latencies, as status and metrics read it (the buckets of `fnbus_invocation_duration_seconds`). */
export interface LatencyHistogram {
  readonly bounds: readonly number[]
  /** Calls per bucket, not cumulative; the last one past the last bound. */
  readonly counts: readonly number[]
  readonly sumSeconds: number
  readonly count: number
}

/**
 * The round trips of calls handed to one other gateway, from the hand-over to its answer. Starts are kept in a ring
 * by delivery id rather than a Map (an add and a delete per call: see docs/architecture.md on Maps), so timing costs
 * two clock reads and a few stores per call.
 */
export class CallTimes {
  readonly #ids = new Uint32Array(SLOTS)
  readonly #starts = new Float64Array(SLOTS)
  readonly #buckets = new Float64Array(LATENCY_BUCKETS.length + 1)
  #sumSeconds = 0
  #count = 0

  start (id: number): void {
    const slot = id % SLOTS
    this.#ids[slot] = id
    this.#starts[slot] = performance.now()
  }

  end (id: number): void {
    const slot = id % SLOTS
    if (this.#ids[slot] !== id) return
    this.#ids[slot] = 0
    const seconds = (performance.now() - (this.#starts[slot] as number)) / 1000
    let bucket = 0
    while (bucket < LATENCY_BUCKETS.length && seconds > (LATENCY_BUCKETS[bucket] as number)) bucket++
    this.#buckets[bucket] = (this.#buckets[bucket] as number) + 1
    this.#sumSeconds += seconds
    this.#count++
  }

  histogram (): LatencyHistogram {
    return { bounds: LATENCY_BUCKETS, counts: Array.from(this.#buckets), sumSeconds: this.#sumSeconds, count: this.#count }
  }
}
