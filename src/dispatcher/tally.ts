import type { InvocationOutcome } from '../observations.js'
import type { Outcome } from './types.js'

/**
 * Upper bounds, in seconds, of the latency buckets the dispatcher keeps: from 100 µs (an in-process call) to 60 s
 * (a slow function near its deadline). Prometheus' `le` values of `fnbus_invocation_duration_seconds`.
 */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
])

/** Calls timed per function and type in one millisecond, at most (when nobody observes every call). */
export const TIMED_PER_MS = 8

/** Tallies made for names nobody served (calls refused FNBUS_FUNCTION_NOT_FOUND, or waiting for a first worker), at most; then they share `_other`. */
export const MAX_UNSERVED_TALLIES = 1000
/** The name tallies of further never-served names share. */
export const OTHER_FUNCTIONS = '_other'

/**
 * The settled invocations of one function and type, as plain numbers the dispatcher adds to (a few nanoseconds a
 * call): what `/metrics` and the status read when asked, instead of an event per call. Every invocation is counted;
 * latencies are a sample above 8,000 calls a second (see `timeCall`).
 */
export class InvocationTally {
  ok = 0
  handled = 0
  unhandled = 0
  /** Bus errors by code: rare next to answers, so a small map. */
  readonly errors = new Map<string, number>()
  /** Timed calls per latency bucket (not cumulative; the last one past 60 s). */
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length + 1)
  /** Seconds, over the timed calls. */
  timedSeconds = 0
  timedCount = 0
  /** When the millisecond of the sample began (the dispatcher's monotonic clock), and how many calls were timed in it. */
  sampledAt = -Infinity
  timedInMs = 0

  constructor (readonly fn: string, readonly type: 'Sync' | 'Async') {}

  /**
   * `now` (the dispatcher's monotonic clock, read as it took the call) when the call is timed, else 0. `always`:
   * someone observes every call (an `invocation` listener, the debug log). Otherwise the first TIMED_PER_MS calls of
   * each millisecond are timed: every call up to 8,000 a second per function, and no more settling clock reads than
   * that above it — a gateway doing a million in-process calls a second (about 1 µs each, where a clock read costs
   * ~50 ns) times one in 125.
   */
  timeCall (now: number, always: boolean): number {
    if (now - this.sampledAt >= 1) {
      this.sampledAt = now
      this.timedInMs = 1
      return now
    }
    if (this.timedInMs < TIMED_PER_MS) {
      this.timedInMs++
      return now
    }
    return always ? now : 0
  }

  /** Counts one settled call; `seconds` is its duration when it was timed, else negative. */
  record (outcome: Outcome, seconds: number): void {
    if (!outcome.ok) this.countError(outcome.error.code)
    else if (outcome.functionError === undefined) this.ok++
    else if (outcome.functionError === 'Handled') this.handled++
    else this.unhandled++
    this.#time(seconds)
  }

  #time (seconds: number): void {
    if (seconds < 0) return
    let i = 0
    while (i < LATENCY_BUCKETS.length && seconds > (LATENCY_BUCKETS[i] as number)) i++
    this.buckets[i] = (this.buckets[i] as number) + 1
    this.timedSeconds += seconds
    this.timedCount++
  }

  /** Counts one call settled elsewhere (the direct path, leases.ts), as observers name its outcome. */
  recordOutcome (outcome: InvocationOutcome, seconds: number): void {
    if (outcome === 'ok') this.ok++
    else if (outcome === 'handled') this.handled++
    else if (outcome === 'unhandled') this.unhandled++
    else this.countError(outcome)
    this.#time(seconds)
  }

  countError (code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1)
  }

  snapshot (): InvocationTallySnapshot {
    const outcomes: Partial<Record<InvocationOutcome, number>> = {}
    if (this.ok > 0) outcomes.ok = this.ok
    if (this.handled > 0) outcomes.handled = this.handled
    if (this.unhandled > 0) outcomes.unhandled = this.unhandled
    for (const [code, count] of this.errors) outcomes[code as InvocationOutcome] = count
    return {
      function: this.fn,
      type: this.type,
      outcomes,
      latency: { bounds: LATENCY_BUCKETS, counts: Array.from(this.buckets), sumSeconds: this.timedSeconds, count: this.timedCount },
    }
  }
}

/** One function's settled invocations of one type, since the gateway started. */
export interface InvocationTallySnapshot {
  /** `Service/function`, or `_other` for calls to never-served names past the first 1,000 such tallies. */
  readonly function: string
  readonly type: 'Sync' | 'Async'
  /** Count by outcome (`ok`, `handled`, `unhandled`, or the bus error's code); outcomes never seen are absent. */
  readonly outcomes: Readonly<Partial<Record<InvocationOutcome, number>>>
  /**
   * Durations of the timed calls (a sample: every call while someone observes invocations one by one, else the
   * first 8 of each millisecond — all of them below 8,000 calls a second): `counts[i]` calls took at most `bounds[i]` seconds and more than the bound before
   * (not cumulative); `counts` has one more entry, for calls over the last bound.
   */
  readonly latency: {
    readonly bounds: readonly number[]
    readonly counts: readonly number[]
    readonly sumSeconds: number
    readonly count: number
  }
}
