// Invoke rates and latencies over time, for the dashboard's chart: one bucket per second, built from the same
// `invocation` observations the metrics plugin counts. Fixed memory: a ring of seconds, each with a small
// log-scale latency histogram.
import type { InvocationObservation } from 'fnbus'

/** Upper bounds (ms) of the latency histogram's buckets: 50 µs growing by half each, up to ~6 min; then +Inf. */
const LATENCY_BOUNDS_MS: readonly number[] = Array.from({ length: 40 }, (_, i) => 0.05 * 1.5 ** i)
const BUCKETS = LATENCY_BOUNDS_MS.length + 1

export interface SecondPoint {
  /** Epoch ms of the second's start. */
  readonly t: number
  readonly count: number
  /** Invocations whose outcome was not `ok` (function errors and bus errors). */
  readonly errors: number
  /** ms; null when the second had no invocation. */
  readonly p50: number | null
  readonly p95: number | null
}

export interface FunctionRate {
  /** Invocations since the dashboard started, and how many of them did not end `ok`. */
  readonly total: number
  readonly totalErrors: number
  /** Invocations per second over the window. */
  readonly rate: number
  readonly errorRate: number
  readonly p50: number | null
  readonly p95: number | null
}

export interface SeriesSnapshot {
  /** Seconds, oldest first; the current, unfinished second is left out. */
  readonly points: readonly SecondPoint[]
  /** Per function, over the last `windowSeconds`. */
  readonly functions: Readonly<Record<string, FunctionRate>>
  readonly windowSeconds: number
}

class Second {
  t = 0
  count = 0
  errors = 0
  readonly latencies = new Uint32Array(BUCKETS)

  reset (t: number): void {
    this.t = t
    this.count = 0
    this.errors = 0
    this.latencies.fill(0)
  }

  add (durationMs: number, failed: boolean): void {
    this.count++
    if (failed) this.errors++
    this.latencies[bucketOf(durationMs)]!++
  }
}

/** A ring of one-second buckets. */
class Ring {
  readonly #seconds: Second[]

  constructor (length: number) {
    this.#seconds = Array.from({ length }, () => new Second())
  }

  at (t: number): Second {
    const second = this.#seconds[Math.floor(t / 1000) % this.#seconds.length]!
    if (second.t !== t) second.reset(t)
    return second
  }

  /** The buckets of the seconds in [from, to), oldest first, those with no data as empty ones. */
  * range (from: number, to: number): Generator<Second | undefined> {
    for (let t = from; t < to; t += 1000) {
      const second = this.#seconds[Math.floor(t / 1000) % this.#seconds.length]!
      yield second.t === t ? second : undefined
    }
  }
}

export class InvocationSeries {
  readonly #seconds: number
  readonly #windowSeconds: number
  readonly #total: Ring
  readonly #functions = new Map<string, Ring>()
  readonly #totals = new Map<string, { count: number, errors: number }>()

  /** `seconds` of history for the chart; per-function figures over the last `windowSeconds`. */
  constructor (seconds = 300, windowSeconds = 10) {
    this.#seconds = seconds
    this.#windowSeconds = windowSeconds
    this.#total = new Ring(seconds)
  }

  record (observation: InvocationObservation, now = Date.now()): void {
    const t = now - (now % 1000)
    const failed = observation.outcome !== 'ok'
    this.#total.at(t).add(observation.durationMs, failed)
    let ring = this.#functions.get(observation.function)
    if (ring === undefined) {
      ring = new Ring(this.#windowSeconds + 1)
      this.#functions.set(observation.function, ring)
    }
    ring.at(t).add(observation.durationMs, failed)
    let total = this.#totals.get(observation.function)
    if (total === undefined) {
      total = { count: 0, errors: 0 }
      this.#totals.set(observation.function, total)
    }
    total.count++
    if (failed) total.errors++
  }

  snapshot (now = Date.now()): SeriesSnapshot {
    const current = now - (now % 1000)
    const points: SecondPoint[] = []
    const from = current - this.#seconds * 1000 + 1000
    let t = from
    for (const second of this.#total.range(from, current)) {
      points.push(second === undefined || second.count === 0
        ? { t, count: 0, errors: 0, p50: null, p95: null }
        : { t, count: second.count, errors: second.errors, p50: quantile(second.latencies, second.count, 0.5), p95: quantile(second.latencies, second.count, 0.95) })
      t += 1000
    }
    const functions: Record<string, FunctionRate> = {}
    const windowFrom = current - this.#windowSeconds * 1000
    for (const [name, ring] of this.#functions) {
      const latencies = new Uint32Array(BUCKETS)
      let count = 0
      let errors = 0
      for (const second of ring.range(windowFrom, current)) {
        if (second === undefined) continue
        count += second.count
        errors += second.errors
        for (let i = 0; i < BUCKETS; i++) latencies[i]! += second.latencies[i]!
      }
      const total = this.#totals.get(name)
      functions[name] = {
        total: total?.count ?? 0,
        totalErrors: total?.errors ?? 0,
        rate: count / this.#windowSeconds,
        errorRate: errors / this.#windowSeconds,
        p50: count === 0 ? null : quantile(latencies, count, 0.5),
        p95: count === 0 ? null : quantile(latencies, count, 0.95),
      }
    }
    return { points, functions, windowSeconds: this.#windowSeconds }
  }
}

function bucketOf (durationMs: number): number {
  // a binary search would do fewer comparisons; the bounds grow fast, so most calls stop within a dozen
  for (let i = 0; i < LATENCY_BOUNDS_MS.length; i++) {
    if (durationMs <= LATENCY_BOUNDS_MS[i]!) return i
  }
  return LATENCY_BOUNDS_MS.length
}

/** The upper bound of the bucket holding the q-quantile: an estimate within the bucket's width (+50%). */
function quantile (latencies: Uint32Array, count: number, q: number): number {
  const rank = Math.max(Math.ceil(count * q), 1)
  let seen = 0
  for (let i = 0; i < LATENCY_BOUNDS_MS.length; i++) {
    seen += latencies[i]!
    if (seen >= rank) return round(LATENCY_BOUNDS_MS[i]!)
  }
  return round(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1]!)
}

function round (ms: number): number {
  return Math.round(ms * 1000) / 1000
}
