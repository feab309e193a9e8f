// Load generators and statistics, shared by every role. Latencies are kept as they are (not bucketed) and
// reported in microseconds.
import { performance } from 'node:perf_hooks'

/** A growable array of latencies in ms. */
export class Latencies {
  #values = new Float64Array(1 << 16)
  length = 0

  add (ms) {
    if (this.length === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2)
      grown.set(this.#values)
      this.#values = grown
    }
    this.#values[this.length++] = ms
  }

  /** { p50, p99 } in µs to 0.1 µs (null when empty). */
  summary () {
    const sorted = this.#values.slice(0, this.length).sort()
    return { p50: toMicros(percentile(sorted, 0.5)), p99: toMicros(percentile(sorted, 0.99)) }
  }
}

function toMicros (ms) {
  return ms === null ? null : Math.round(ms * 10_000) / 10
}

/** Nearest-rank percentile of sorted values. */
export function percentile (sorted, p) {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]
}

export function median (values) {
  const sorted = values.filter(v => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return null
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

/** The monotonic clock V8's CPU profiler stamps its samples with, in µs (to cut profiles to the measured window). */
export function monotonicMicros () {
  return Number(process.hrtime.bigint() / 1000n)
}

// A call stuck past the end of the window (a lost reply in a peer without timeouts) may not hang the run.
const DRAIN_GRACE_MS = 10_000
// Past this many failed calls the system is broken, not slow: stop measuring it.
const MAX_ERRORS = 1000

/**
 * A closed loop: `concurrency` lanes, each issuing `call()` as soon as its previous call completed, for
 * `warmupMs` unrecorded, then `durationMs` recorded. Calls completing inside the recorded window count for the
 * throughput and the latencies.
 */
export async function closedLoop ({ call, concurrency, warmupMs, durationMs }) {
  const start = performance.now()
  const windowStart = start + warmupMs
  const end = windowStart + durationMs
  const latencies = new Latencies()
  let calls = 0
  let totalCalls = 0
  let errors = 0
  /** @type {Error | undefined} */
  let firstError
  const window = { start: 0, end: 0 }

  const lane = async () => {
    while (performance.now() < end && errors < MAX_ERRORS) {
      const t0 = performance.now()
      try {
        await call()
      } catch (err) {
        errors++
        firstError ??= /** @type {Error} */ (err)
        continue
      }
      const t1 = performance.now()
      totalCalls++
      if (t1 >= windowStart && t1 <= end) {
        calls++
        latencies.add(t1 - t0)
      }
    }
  }
  setTimeout(() => { window.start = monotonicMicros() }, warmupMs).unref()
  const lanes = Promise.all(Array.from({ length: concurrency }, lane))
  const ended = await Promise.race([lanes.then(monotonicMicros), sleepThen(warmupMs + durationMs + DRAIN_GRACE_MS, 'stuck')])
  if (ended === 'stuck') throw new Error(`calls still pending ${DRAIN_GRACE_MS} ms after the end of the run`)
  window.end = ended
  if (errors >= MAX_ERRORS) throw new Error(`${errors} calls failed; the first: ${firstError?.message}`)
  const seconds = durationMs / 1000
  return { calls, seconds, rate: calls / seconds, ...latencies.summary(), totalCalls, errors, firstError: firstError?.message, window }
}

/**
 * A fixed number of calls through `concurrency` lanes (after `warmup` unrecorded ones): the rate is
 * count / elapsed time, with per-call latencies.
 */
export async function countLoop ({ call, concurrency, count, warmup = 0 }) {
  let remaining = warmup
  const warmLane = async () => { while (remaining-- > 0) await call() }
  await Promise.all(Array.from({ length: concurrency }, warmLane))

  const latencies = new Latencies()
  remaining = count
  const lane = async () => {
    while (remaining-- > 0) {
      const t0 = performance.now()
      await call()
      latencies.add(performance.now() - t0)
    }
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: concurrency }, lane))
  const seconds = (performance.now() - start) / 1000
  return { calls: count, seconds, rate: count / seconds, ...latencies.summary(), totalCalls: count + warmup }
}

function sleepThen (ms, value) {
  return new Promise(resolve => setTimeout(resolve, ms, value).unref())
}
