import assert from 'node:assert/strict'
import test from 'node:test'
import { Deadlines, UNTIMED } from '../../dist/util/deadlines.js'
import { mockTime } from '../mock-time.js'

/** @typedef {import('../../dist/util/deadlines.js').Timed & { name: string }} Named */
/** @param {string} name @returns {Named} */
const entry = name => ({ name, ...UNTIMED })

test('entries of many durations expire at their deadlines, earliest first; cleared ones never', t => {
  const { clock, advance } = mockTime(t)
  const expired = []
  /** @type {Deadlines<Named>} */
  const deadlines = new Deadlines(e => expired.push([e.name, clock.now()]), { unref: false, clock })
  const a = entry('a'); const b = entry('b'); const c = entry('c'); const d = entry('d'); const e = entry('e')
  deadlines.set(a, 60)
  deadlines.set(b, 20)
  deadlines.set(entry('f'), 22) // close behind b: not taken with it
  deadlines.set(c, 60)
  deadlines.set(d, 40)
  deadlines.set(e, 30)
  deadlines.clear(c)
  deadlines.set(e, 80) // moved later
  advance(19)
  assert.deepEqual(expired, [], 'nothing before the earliest deadline')
  advance(100) // c, cleared, stays silent past its deadline
  assert.deepEqual(expired, [['b', 20], ['f', 22], ['d', 40], ['a', 60], ['e', 80]])
})

test('a callback that sets its entry again for a past time does not loop: it runs again on the next turn', t => {
  const { clock, advance } = mockTime(t)
  let runs = 0
  const seen = []
  /** @type {Deadlines<Named>} */
  const deadlines = new Deadlines(e => {
    seen.push([e.name, clock.now()])
    if (e.name === 'again' && ++runs < 3) deadlines.set(e, clock.now() - 5)
  }, { unref: false, clock })
  deadlines.set(entry('again'), 5)
  deadlines.set(entry('later'), 15)
  advance(5)
  assert.deepEqual(seen, [['again', 5]], 'set again for a past time: not run again within the same turn')
  advance(30)
  assert.deepEqual(seen, [['again', 5], ['again', 6], ['again', 7], ['later', 15]])
})

test('clearAll stops everything', t => {
  const { clock, advance } = mockTime(t)
  const expired = []
  /** @type {Deadlines<Named>} */
  const deadlines = new Deadlines(e => expired.push(e.name), { unref: false, clock })
  for (let i = 0; i < 10; i++) deadlines.set(entry(String(i)), 10 + i)
  deadlines.clearAll()
  advance(40)
  assert.deepEqual(expired, [])
})

test('deadlines are on the monotonic clock: a wall clock stepped forward expires nothing early, one stepped back keeps nothing late', t => {
  const { clock, advance } = mockTime(t)
  const realNow = Date.now
  t.after(() => { Date.now = realNow })
  let step = 0
  // the injected clock's wall clock steps, and so does the process' Date.now (nothing may read it for an interval)
  const stepped = { now: clock.now, epoch: () => clock.epoch() + step }
  Date.now = () => realNow() + step
  const expired = new Map()
  /** @type {Deadlines<Named>} */
  const deadlines = new Deadlines(e => expired.set(e.name, clock.now()), { unref: false, clock: stepped })

  deadlines.set(entry('long'), 400)
  deadlines.set(entry('short'), 50)
  step = 3600_000
  advance(399)
  assert.deepEqual([...expired], [['short', 50]], 'the long entry did not expire when the timer fired for the short one, after the wall clock went an hour forward')
  advance(1)
  assert.equal(expired.get('long'), 400)

  deadlines.set(entry('back'), clock.now() + 100)
  step = -3600_000
  advance(100)
  assert.equal(expired.get('back'), 500, 'the entry set before the wall clock went an hour back expired on time')
})
