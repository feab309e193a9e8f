import type { Duplex } from 'node:stream'
import type { Logger } from '../logger.js'

/** How often, at most, the log says that pending connections were shed (each one is counted by `onShed`). */
const WARN_EVERY_MS = 10_000

/**
 * The connections that have not completed their login, all listeners together, within their own budget
 * (`limits.maxPendingConnections`), so that sockets which never log in cannot fill `limits.maxConnections` and
 * keep real logins out. A connection is pending from its first byte until aedes registers it as a client (its
 * login accepted) or it closes.
 *
 * When the budget is full, a newcomer takes the place of the oldest pending connection that has not delivered its
 * CONNECT yet: an idle socket is the cheapest thing to give up, and a real client sends its CONNECT as soon as it
 * connects, so it is never the oldest idle one for long. When every pending connection is logging in (its CONNECT
 * delivered, its secret being checked), the newcomer is closed instead: those are bounded per source address by
 * the login queue.
 */
export class Admission {
  readonly #limit: number
  readonly #logger: Logger
  readonly #onShed: () => void
  readonly #pending = new Set<Duplex>()
  /** Pending connections without a CONNECT yet, oldest first: the ones a newcomer may displace. */
  readonly #idle = new Set<Duplex>()
  #shed = 0
  #warnedAt = -Infinity

  /** `onShed`: a pending connection was closed for the budget (displaced, or refused). */
  constructor (limit: number, logger: Logger, onShed: () => void) {
    this.#limit = limit
    this.#logger = logger
    this.#onShed = onShed
  }

  get pending (): number {
    return this.#pending.size
  }

  /** Takes `stream` in as pending, displacing the oldest idle one when the budget is full; false: `stream` was closed. */
  enter (stream: Duplex): boolean {
    if (this.#pending.size >= this.#limit) {
      const oldest = this.#idle.values().next()
      if (oldest.done === true) {
        this.#shedOne(stream, 'every pending connection is logging in')
        return false
      }
      this.#leave(oldest.value)
      this.#shedOne(oldest.value, 'the oldest pending connection without a CONNECT made room')
    }
    this.#pending.add(stream)
    this.#idle.add(stream)
    stream.once('close', () => this.#leave(stream))
    return true
  }

  /** The connection delivered a whole CONNECT: it logs in now, and may no longer be displaced. */
  connected (stream: Duplex): void {
    this.#idle.delete(stream)
  }

  /** The connection's login was accepted: it no longer counts. */
  admitted (stream: Duplex): void {
    this.#leave(stream)
  }

  #leave (stream: Duplex): void {
    this.#pending.delete(stream)
    this.#idle.delete(stream)
  }

  #shedOne (stream: Duplex, why: string): void {
    stream.destroy()
    this.#shed++
    this.#onShed()
    const now = performance.now()
    if (now - this.#warnedAt < WARN_EVERY_MS) return
    this.#warnedAt = now
    this.#logger.warn({ limit: this.#limit, closed: this.#shed, why }, 'connections closed: limits.maxPendingConnections reached')
    this.#shed = 0
  }
}
