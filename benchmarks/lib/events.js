// One-way event throughput: a publisher that sends QoS 0 events as fast as the broker takes them, and a
// subscriber that counts what arrives. The throughput is what the subscriber receives, so a broker that
// accepts events faster than it delivers them does not look faster than it is.
import { performance } from 'node:perf_hooks'
import { sleep } from './measure.js'

// Events per burst: the last one's write callback paces the next burst, so the publisher never runs ahead of
// its socket (MQTT.js calls it at once, or on 'drain' when the kernel's buffer is full).
const BURST = 64

/**
 * Publishes for `durationMs`. `publish(payload, written)` sends one event; `written` is given for the last of
 * each burst only and must be called (with an error or nothing) once that event is written.
 */
export async function publishFlatOut ({ durationMs, payload, publish }) {
  const end = performance.now() + durationMs
  let sent = 0
  while (performance.now() < end) {
    for (let i = 1; i < BURST; i++) publish(payload, undefined)
    await new Promise((resolve, reject) => publish(payload, err => err ? reject(err) : resolve()))
    sent += BURST
  }
  return { sent, seconds: durationMs / 1000 }
}

/** Counts arriving events; the orchestrator asks for the rate over a window while a publisher runs. */
export class EventCounter {
  received = 0
  #lastAt = 0

  onMessage () {
    this.received++
    this.#lastAt = performance.now()
  }

  /**
   * Waits for the first event of the next run, lets `warmupMs` pass, then counts for `durationMs`. Timers run
   * late on a busy event loop, so the window is measured, not assumed.
   */
  async measure ({ warmupMs, durationMs, firstEventTimeoutMs = 10_000 }) {
    const before = this.received
    const deadline = performance.now() + firstEventTimeoutMs
    while (this.received === before) {
      if (performance.now() > deadline) throw new Error(`no event arrived within ${firstEventTimeoutMs} ms`)
      await sleep(5)
    }
    await sleep(warmupMs)
    const c0 = this.received
    const t0 = performance.now()
    await sleep(durationMs)
    const calls = this.received - c0
    const seconds = (performance.now() - t0) / 1000
    return { calls, seconds, rate: calls / seconds }
  }

  /** Resolves once no event arrived for `idleMs`: the broker's backlog from the last run is delivered. */
  async quiet ({ idleMs = 300, maxMs = 30_000 } = {}) {
    const deadline = performance.now() + maxMs
    while (performance.now() - this.#lastAt < idleMs && performance.now() < deadline) await sleep(50)
    return { received: this.received }
  }
}
