// Which slot a call goes to, alone: least in flight, this gateway's workers before another gateway's, never another
// gateway's for a call that came from one (src/dispatcher/pick.js).
import assert from 'node:assert/strict'
import test from 'node:test'
import { pickSlot } from '../../dist/dispatcher/pick.js'

/** An entry with slots of the given workers: [label, remote, inFlight, concurrency]. */
function entry (/** @type {[string, boolean, number, number][]} */ slots) {
  /** @type {any} */
  const e = { cursor: 0, slots: [] }
  e.slots = slots.map(([label, remote, inFlight, concurrency]) => ({ worker: { label, remote, deliver () {} }, entry: e, inFlight, concurrency }))
  return e
}

test('a local worker with room wins over a remote one with more room', () => {
  const e = entry([['gw:b', true, 0, 8], ['local', false, 3, 4]])
  assert.equal(pickSlot(e, false)?.worker.label, 'local')
})

test('no local room: the least loaded remote gateway; a call from another gateway waits instead', () => {
  const e = entry([['local', false, 4, 4], ['gw:b', true, 2, 8], ['gw:c', true, 1, 8]])
  assert.equal(pickSlot(e, false)?.worker.label, 'gw:c')
  assert.equal(pickSlot(e, true), undefined)
})

test('least in flight among local workers, ties round-robin; congested workers are skipped', () => {
  const e = entry([['w1', false, 1, 4], ['w2', false, 0, 4], ['w3', false, 0, 4]])
  const first = pickSlot(e, false)?.worker.label
  const second = pickSlot(e, false)?.worker.label
  assert.deepEqual([first, second].sort(), ['w2', 'w3'])
  const congested = entry([['w1', false, 0, 4], ['w2', false, 2, 4]])
  congested.slots[0].worker.congested = true
  assert.equal(pickSlot(congested, false)?.worker.label, 'w2')
})
