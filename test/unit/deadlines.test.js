import assert from 'node:assert/strict'
import test from 'node:test'
import { Deadlines, UNTIMED } from '../../dist/util/deadlines.js'

/** @typedef {import('../../dist/util/deadlines.js').Timed & { name: string }} Named */
/** @param {string} name @returns {Named} */
const entry = name => ({ name, ...UNTIMED })
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
/** Waits until `done()` holds, however loaded the machine (timers then fire late, in bursts). */
async function until (done, what) {
  const giveUp = performance.now() + 10_000
  while (!done()) {
    if (performance.now() > giveUp) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

test('entries of many durations expire at their deadlines, earliest first; cleared ones never', async () => {
  const expired = []
  /** @type {Deadlines<Named>} */
  const deadlines = new Deadlines(e => expired.push([e.name, performance.now() - e.deadlineAt]), { unref: false })
  const now = performance.now()
  const a = entry('a'); const b = entry('b'); const c = entry('c'); const d = entry('d'); const e = entry('e')
  deadlines.set(a, now + 60)
  deadlines.set(b, now + 20)
  deadlines.set(c, now + 60)
  deadlines.set(d, now + 40)
  deadlines.set(e, now + 30)
  deadlines.clear(c)
  deadlines.set(e, now + 80) // moved later
  await until(() => expired.length >= 4, 'four expiries')
  await sleep(30) // c, cleared, must stay silent past its deadline
  assert.deepEqual(expired.map(([name]) => name), ['b', 'd', 'a', 'e'])
  for (const [name, late] of expired) assert.ok(late >= 0, `${name} expired ${-late} ms early`)
})

test('a callback that sets its entry again for a past time does not loop: it runs again on the next turn', async () => {
  let runs = 0
  const seen = []
  /** @type {Deadlines<Named>} */
  const deadlines = new Deadlines(e => {
    seen.push(e.name)
    if (e.name === 'again' && ++runs < 3) deadlines.set(e, performance.now() - 5)
  }, { unref: false })
  deadlines.set(entry('again'), performance.now() + 5)
  deadlines.set(entry('later'), performance.now() + 15)
  await until(() => seen.includes('later') && runs >= 3, 'the re-set entry to run three times')
  await sleep(20)
  assert.equal(seen.filter(n => n === 'again').length, 3)
  assert.ok(seen.includes('later'))
})

test('clearAll stops everything', async () => {
  const expired = []
  /** @type {Deadlines<Named>} */
  const deadlines = new Deadlines(e => expired.push(e.name), { unref: false })
  for (let i = 0; i < 10; i++) deadlines.set(entry(String(i)), performance.now() + 10 + i)
  deadlines.clearAll()
  await sleep(40)
  assert.deepEqual(expired, [])
})

test('deadlines are on the monotonic clock: a wall clock stepped forward expires nothing early, one stepped back keeps nothing late', async t => {
  const realNow = Date.now
  t.after(() => { Date.now = realNow })
  let step = 0
  // the injected clock's wall clock steps, and so does the process' Date.now (nothing may read it for an interval)
  const clock = { now: () => performance.now(), epoch: () => realNow() + step }
  Date.now = () => realNow() + step
  const expired = new Map()
  /** @type {Deadlines<Named>} */
  const deadlines = new Deadlines(e => expired.set(e.name, performance.now()), { unref: false, clock })

  const start = performance.now()
  deadlines.set(entry('long'), start + 400)
  deadlines.set(entry('short'), start + 50)
  step = 3600_000
  await until(() => expired.has('short'), 'the short entry')
  await sleep(100)
  assert.ok(!expired.has('long'), 'the long entry did not expire when the timer fired for the short one, after the wall clock went an hour forward')
  await until(() => expired.has('long'), 'the long entry')
  assert.ok(expired.get('long') - start >= 400, `expired after ${expired.get('long') - start} ms, not before its 400`)

  const back = performance.now()
  deadlines.set(entry('back'), back + 100)
  step = -3600_000
  await until(() => expired.has('back'), 'the entry set before the wall clock went an hour back')
  assert.ok(expired.get('back') - back < 5000, `expired after ${expired.get('back') - back} ms`)
})
