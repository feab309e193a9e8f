import { systemClock, type Clock } from './clock.js'

/** What `Deadlines` keeps of an entry, on the entry itself: linking it in needs no allocation. */
export interface Timed {
  /** When the entry expires, on the monotonic clock of its `Deadlines`; meaningful while it is tracked. */
  deadlineAt: number
  deadlinePrev: Timed | undefined
  deadlineNext: Timed | undefined
  deadlineLane: Lane | undefined
}

/** The fields a new `Timed` entry starts with. */
export const UNTIMED = { deadlineAt: 0, deadlinePrev: undefined, deadlineNext: undefined, deadlineLane: undefined } as const

/** Empty lanes kept for reuse, at most. */
const MAX_IDLE_LANES = 16

/** Entries set for the same duration, oldest first: their deadlines come in the order they were added. */
interface Lane {
  readonly duration: number
  head: Timed | undefined
  tail: Timed | undefined
}

/**
 * Deadlines of many entries on one Node.js timer, instead of a timer per call (each a `Timeout` object, a
 * native-backed insert and a clear): a call sets and clears its deadline by relinking two pointers.
 *
 * As Node's own timer lists do, entries are grouped by duration: within a group, deadlines expire in the order they
 * were set, so the earliest deadline is always at the head of one group, and setting or clearing is O(1). The one
 * timer is armed for the earliest head; clearing an entry leaves it armed (it finds nothing due and re-arms), so a
 * steady flow of calls with one timeout touches the timer about once per timeout, not per call. An entry expires
 * no earlier than its deadline, as with setTimeout.
 *
 * Deadlines are instants of the clock's monotonic time (`clock.now()`), never of the wall clock: a wall clock set
 * forward would expire every entry the next time the timer fires for any one of them, and one set back would keep
 * them past their time by as much.
 */
export class Deadlines<T extends Timed> {
  readonly #lanes = new Map<number, Lane>()
  readonly #onExpired: (entry: T) => void
  readonly #unref: boolean
  readonly #clock: Clock
  #timer: NodeJS.Timeout | undefined
  #timerAt = Infinity
  #expiring = false

  /** `unref`: the timer does not keep the process alive. `clock`: whose `now()` the deadlines are on. */
  constructor (onExpired: (entry: T) => void, options: { readonly unref: boolean, readonly clock?: Clock }) {
    this.#onExpired = onExpired
    this.#unref = options.unref
    this.#clock = options.clock ?? systemClock
  }

  /** Sets (or moves) `entry`'s deadline to `at` (the clock's `now()` time); `now`, when the caller has just read it. */
  set (entry: T, at: number, now: number = this.#clock.now()): void {
    if (entry.deadlineLane !== undefined) this.clear(entry)
    // set again from an expiry callback: due on the next turn, never in the loop that is running (no endless loop)
    if (this.#expiring && at <= now) at = now + 1
    // whole milliseconds, so that one timeout is one lane whatever the fractions of the clock's readings (an entry
    // may then wait behind one due up to a millisecond after it)
    const duration = Math.max(Math.round(at - now), 0)
    let lane = this.#lanes.get(duration)
    if (lane === undefined) {
      lane = { duration, head: undefined, tail: undefined }
      this.#lanes.set(duration, lane)
    }
    entry.deadlineAt = at
    entry.deadlineLane = lane
    entry.deadlinePrev = lane.tail
    entry.deadlineNext = undefined
    if (lane.tail === undefined) lane.head = entry
    else lane.tail.deadlineNext = entry
    lane.tail = entry
    if (at < this.#timerAt) this.#arm(at, now)
  }

  /** Forgets `entry`'s deadline, if it has one. */
  clear (entry: T): void {
    const lane = entry.deadlineLane
    if (lane === undefined) return
    const { deadlinePrev: prev, deadlineNext: next } = entry
    if (prev === undefined) lane.head = next
    else prev.deadlineNext = next
    if (next === undefined) lane.tail = prev
    else next.deadlinePrev = prev
    entry.deadlinePrev = undefined
    entry.deadlineNext = undefined
    entry.deadlineLane = undefined
    // An empty lane stays for the next entry of its duration (serial calls would otherwise create and delete it each
    // time); empty lanes are dropped when the timer fires, or when there are many.
    if (lane.head === undefined && this.#lanes.size > MAX_IDLE_LANES) this.#lanes.delete(lane.duration)
  }

  /** Stops the timer and forgets every entry. */
  clearAll (): void {
    for (const lane of this.#lanes.values()) {
      for (let entry = lane.head; entry !== undefined;) {
        const next: Timed | undefined = entry.deadlineNext
        entry.deadlinePrev = undefined
        entry.deadlineNext = undefined
        entry.deadlineLane = undefined
        entry = next
      }
    }
    this.#lanes.clear()
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    this.#timerAt = Infinity
  }

  #arm (at: number, now: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timerAt = at
    // setTimeout's own limit; a later deadline is simply looked at again then
    this.#timer = setTimeout(fire, Math.min(Math.max(at - now, 1), 2_147_483_647), this)
    // a browser's setTimeout returns a number: there is no event loop to keep alive there (the SDK's browser build)
    if (this.#unref && typeof this.#timer.unref === 'function') this.#timer.unref()
  }

  /** The timer fired: expire what is due, oldest first in each lane, then arm for the earliest deadline left. */
  expire (): void {
    this.#timer = undefined
    this.#timerAt = Infinity
    const now = this.#clock.now()
    this.#expiring = true
    try {
      for (const lane of [...this.#lanes.values()]) {
        for (let entry = lane.head; entry !== undefined && entry.deadlineAt <= now; entry = lane.head) {
          this.clear(entry as T)
          this.#onExpired(entry as T)
          // the callback may have set the entry again, possibly into this lane: the loop reads the lane's head anew
        }
      }
    } finally {
      // also after a callback threw: what is still due runs on the next turn
      this.#expiring = false
      let earliest = Infinity
      for (const lane of this.#lanes.values()) {
        if (lane.head === undefined) {
          this.#lanes.delete(lane.duration)
          continue
        }
        const at = lane.head.deadlineAt
        if (at < earliest) earliest = at
      }
      // a callback may have armed the timer already, for something earlier
      if (earliest < this.#timerAt) this.#arm(earliest, this.#clock.now())
    }
  }
}

function fire (deadlines: { expire (): void }): void {
  deadlines.expire()
}
