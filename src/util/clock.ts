/**
 * fnbus' two time sources. Every interval (timeouts, deadlines, waits, backoff, rate and silence windows) is measured
 * on the monotonic one: the wall clock steps when NTP or an operator sets it — on a device without a real-time clock,
 * typically once, well after boot — and an interval computed from it would collapse or stretch by the step. Epoch
 * time is kept only where the wire or the store needs it: an invocation's `dl`, and a stored invocation's
 * `createdAt` and `notBefore`.
 *
 * Components take a Clock (tests step its wall clock); the default is the system's.
 */
export interface Clock {
  /** Milliseconds on a monotonic clock, fractional: only the difference between two readings means anything. */
  now (): number
  /** Milliseconds since the epoch: the wall clock, which steps whenever the system time is set. */
  epoch (): number
}

/**
 * `performance.now()` and `Date.now()`. Measured here, each costs about the same, ~45–55 ns a read (a vDSO
 * clock_gettime either way).
 */
export const systemClock: Clock = Object.freeze({
  now: () => performance.now(),
  epoch: () => Date.now(),
})

/**
 * Converts between the two clocks, reading the wall clock at most once per millisecond of the monotonic one: a
 * deadline goes on the wire in epoch ms and comes back into monotonic time where it arrives, and at a million
 * in-process calls a second a wall-clock read per call would cost a twentieth of each. A step shows at most a
 * millisecond late.
 */
export class ClockOffset {
  readonly #clock: Clock
  /** epoch − monotonic, as last read. */
  #offset = 0
  #readAt = -Infinity

  constructor (clock: Clock = systemClock) {
    this.#clock = clock
  }

  /** The epoch ms (whole) of the monotonic instant `at`; `now` is the monotonic clock read just before. */
  toEpoch (at: number, now: number): number {
    return Math.round(at + this.#offsetAt(now))
  }

  /** The monotonic instant of epoch ms `epoch`; `now` is the monotonic clock read just before. */
  toMonotonic (epoch: number, now: number): number {
    return epoch - this.#offsetAt(now)
  }

  #offsetAt (now: number): number {
    if (now - this.#readAt >= 1 || now < this.#readAt) {
      this.#offset = this.#clock.epoch() - now
      this.#readAt = now
    }
    return this.#offset
  }
}
