// Time under a test's control. (Not a test file; it imports nothing of fnbus, so a unit test that uses it loads only
// the module it tests.)

/**
 * For code that takes a Clock (the dispatcher, Deadlines): node:test's mock setTimeout, and a monotonic clock, from
 * 0, that moves with it. `advance(ms)` moves both a millisecond at a time, so each timer fires at its own instant and
 * reads the clock as it would then; what a timer's promise does next runs on the event loop's next turn.
 * @param {import('node:test').TestContext} t
 */
export function mockTime (t) {
  t.mock.timers.enable({ apis: ['setTimeout'] })
  let now = 0
  /** @type {import('../dist/util/clock.js').Clock} */
  const clock = { now: () => now, epoch: () => 1_700_000_000_000 + now }
  /** @param {number} ms */
  const advance = ms => {
    for (let i = 0; i < ms; i++) {
      now++
      t.mock.timers.tick(1)
    }
  }
  return { clock, advance }
}
