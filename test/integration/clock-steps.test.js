// The wall clock stepped while calls are pending, as NTP does on a device without a real-time clock: deadlines,
// waits and backoff are measured on the monotonic clock, so a step forward expires nothing early and a step back
// keeps nothing late. The gateway and the SDK take an injected clock; the process' own Date.now is stepped with it,
// so that no component can escape the step by reading the wall clock directly.
import assert from 'node:assert/strict'
import test from 'node:test'
import { connectClient, startGateway, waitFor } from '../helpers.js'

const HOUR = 3600_000

/** A wall clock that the test steps: the injected clock's epoch and the process' Date.now, both. */
function steppedClock (t) {
  const realNow = Date.now
  const clock = {
    step: 0,
    now: () => performance.now(),
    epoch: () => realNow() + clock.step,
  }
  Date.now = () => realNow() + clock.step
  t.after(() => { Date.now = realNow })
  return clock
}

/** Starts `call()`, resolving with how it settled and the monotonic ms it took. */
function timed (call) {
  const started = performance.now()
  /** @type {{ done: boolean, code?: string, ms: number, promise?: Promise<void> }} */
  const settled = { done: false, code: undefined, ms: NaN }
  settled.promise = call().then(
    () => { settled.code = 'ok' },
    err => { settled.code = err.code }
  ).finally(() => {
    settled.done = true
    settled.ms = performance.now() - started
  })
  return settled
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function hangingFunction (t, clock) {
  const gw = await startGateway(t, { clock })
  const worker = await connectClient(t, gw, { clock })
  const contexts = []
  // never answers: only deadlines end its calls
  await worker.serve('Clock/hang', (_event, context) => { contexts.push(context); return new Promise(() => {}) }, { concurrency: 100 })
  const caller = await connectClient(t, gw, { clock })
  return { gw, caller, contexts }
}

test('a wall clock stepped an hour forward expires no pending call early: not in the gateway, the SDK, or the handler\'s time left', async t => {
  const clock = steppedClock(t)
  const { gw, caller, contexts } = await hangingFunction(t, clock)
  const long = [
    ...Array.from({ length: 3 }, () => timed(() => caller.invoke('Clock/hang', 'long', { timeout: 3000 }))),
    timed(() => gw.invoke('Clock/hang', 'long, in process', { timeout: 3000 })),
  ]
  await waitFor(() => contexts.length === 4, 5000, 'the four calls at the worker')
  clock.step = HOUR
  assert.ok(contexts.every(context => context.getRemainingTimeInMillis() > 1500),
    `time left after the step: ${contexts.map(c => c.getRemainingTimeInMillis()).join(', ')} ms`)

  // a short call's expiry fires the timers of both the SDK and the gateway: it must take nobody else with it
  const short = timed(() => caller.invoke('Clock/hang', 'short', { timeout: 300 }))
  await short.promise
  assert.equal(short.code, 'FNBUS_TIMEOUT')
  await sleep(300)
  assert.deepEqual(long.map(call => call.done), [false, false, false, false], 'no long call expired when the short one did')

  await Promise.all(long.map(call => call.promise))
  for (const call of long) {
    assert.equal(call.code, 'FNBUS_TIMEOUT')
    assert.ok(call.ms >= 2950, `a 3000 ms call ended after ${Math.round(call.ms)} ms`)
  }
})

test('a wall clock stepped an hour back keeps no pending call past its timeout', async t => {
  const clock = steppedClock(t)
  const { gw, caller, contexts } = await hangingFunction(t, clock)
  const calls = [
    ...Array.from({ length: 3 }, () => timed(() => caller.invoke('Clock/hang', 'back', { timeout: 600 }))),
    timed(() => gw.invoke('Clock/hang', 'back, in process', { timeout: 600 })),
  ]
  await waitFor(() => contexts.length === 4, 5000, 'the four calls at the worker')
  clock.step = -HOUR
  assert.ok(contexts.every(context => context.getRemainingTimeInMillis() <= 600), 'the step back adds no time left')
  // generous for a loaded machine; without monotonic deadlines they would wait an hour
  await waitFor(() => calls.every(call => call.done), 10_000, 'the calls to time out')
  for (const call of calls) {
    assert.equal(call.code, 'FNBUS_TIMEOUT')
    assert.ok(call.ms < 5000, `a 600 ms call ended after ${Math.round(call.ms)} ms`)
  }
})

test('an Async retry waits its backoff on the monotonic clock: a wall clock stepped back after the failure does not hold it', async t => {
  const clock = steppedClock(t)
  const gw = await startGateway(t, { clock })
  gw.bus.setFunctionOptions('Clock/flaky', { async: { retryDelayMs: 200, maxRetries: 2 } })
  const attempts = []
  await gw.serve('Clock/flaky', async () => {
    attempts.push(performance.now())
    if (attempts.length === 1) throw new Error('first attempt fails')
    return 'ok'
  })
  const retried = new Promise(resolve => gw.events.on('retry', resolve))
  await gw.bus.invokeAsync('Clock/flaky', 'retry me')
  await retried
  const failedAt = performance.now()
  clock.step = -HOUR
  await waitFor(() => attempts.length >= 2, 10_000, 'the retry')
  assert.ok(attempts[1] - failedAt < 5000, `retried ${Math.round(attempts[1] - failedAt)} ms after its failure (backoff 100–200 ms)`)
})
