// The direct path's lease table and its messages, alone: fake links and slots, no threads.
import assert from 'node:assert/strict'
import test from 'node:test'
import { MessagePort } from 'node:worker_threads'
import fc from 'fast-check'
import { LeaseTable } from '../../dist/dispatcher/leases.js'
import { InvocationTally } from '../../dist/dispatcher/tally.js'
import { gatewaySide, threadSide } from '../../dist/protocol/lease.js'

/** A link that records what is posted on it (and closes the ports it is handed: nothing keeps the test alive). */
function link () {
  /** @type {any[]} */
  const posted = []
  return {
    posted,
    postSide (/** @type {any} */ message) {
      posted.push(message)
      message.port?.close()
    },
  }
}

function setup ({ concurrency = 4, callerLink = link(), workerLink = link(), grants = true } = {}) {
  /** @type {any} */
  const entry = { address: { serviceName: 'S', functionName: 'f', name: 'S/f' }, slots: [], waiting: 0, syncTally: new InvocationTally('S/f', 'Sync') }
  const slot = { worker: { label: 'w', leaseLink: workerLink, deliver () {} }, entry, concurrency, inFlight: 0 }
  entry.slots.push(slot)
  const owner = { queuedCalls: 0, queuedBytes: 0, leaseLink: callerLink }
  /** @type {any[]} */
  const pumped = []
  const leases = new LeaseTable({ pump: e => pumped.push(e), timeouts: () => [1000, 5000], events: undefined, grants })
  return { entry, slot, owner, leases, callerLink, workerLink, pumped }
}

test('a settled call between two threads earns a lease of half the free slots, counted as in flight; more settled calls grow it', () => {
  const { slot, owner, leases, callerLink, workerLink } = setup({ concurrency: 8 })
  leases.settled(owner, slot, 'me', 'rid1')
  assert.equal(slot.inFlight, 4)
  const grant = callerLink.posted[0]
  assert.deepEqual({ ...grant, port: undefined }, { t: 'lease', id: 1, fn: 'S/f', slots: 4, timeout: 1000, maxTimeout: 5000, rid: 'rid1.', port: undefined })
  assert.equal(workerLink.posted[0].t, 'lease-serve')
  leases.settled(owner, slot, 'me', 'rid2')
  assert.equal(slot.inFlight, 6)
  assert.deepEqual(callerLink.posted[1], { t: 'lease-grow', id: 1, slots: 2 })
  assert.equal(leases.size, 1)
})

test('no lease while a call or stored work waits, for a full worker, a caller or worker that is not a thread, or where grants are off', () => {
  const waiting = setup()
  waiting.entry.waiting = 1
  waiting.leases.settled(waiting.owner, waiting.slot, undefined, 'r')
  const full = setup({ concurrency: 1 })
  full.slot.inFlight = 1
  full.leases.settled(full.owner, full.slot, undefined, 'r')
  const socket = setup()
  // a caller over a socket: its connection has no side channel
  socket.leases.settled({ queuedCalls: 0, queuedBytes: 0 }, socket.slot, undefined, 'r')
  const stored = setup()
  stored.entry.source = { next: () => undefined, waiting: true }
  stored.leases.settled(stored.owner, stored.slot, undefined, 'r')
  const off = setup({ grants: false })
  off.leases.settled(off.owner, off.slot, undefined, 'r')
  for (const { leases } of [waiting, full, socket, stored, off]) assert.equal(leases.size, 0, 'no lease')
  assert.equal(socket.slot.inFlight, 0)
})

test('pressure revokes; the caller ending the lease gives the slots back and pumps; a gone owner or worker ends it too', () => {
  const a = setup()
  a.leases.settled(a.owner, a.slot, undefined, 'r')
  a.leases.pressure(a.entry)
  assert.deepEqual(a.callerLink.posted.at(-1), { t: 'lease-revoke', id: 1 })
  assert.equal(a.slot.inFlight, 2, 'still held until the caller ends it')
  assert.equal(a.leases.fromThread(a.owner, { t: 'lease-end', id: 1 }), true)
  assert.equal(a.slot.inFlight, 0)
  assert.equal(a.pumped.length, 1)

  const b = setup()
  b.leases.settled(b.owner, b.slot, undefined, 'r')
  b.leases.revokeAll()
  assert.deepEqual(b.callerLink.posted.at(-1), { t: 'lease-revoke', id: 1 }, 'a gateway shutting down takes every lease back')
  b.leases.ownerGone(b.owner)
  assert.equal(b.slot.inFlight, 0)
  assert.equal(b.leases.size, 0)

  const c = setup()
  c.leases.settled(c.owner, c.slot, undefined, 'r')
  c.leases.detached(c.slot)
  assert.deepEqual(c.callerLink.posted.at(-1), { t: 'lease-revoke', id: 1 })
  assert.equal(c.leases.size, 0)
  // the caller's late end of a lease that is gone is harmless
  assert.equal(c.leases.fromThread(c.owner, { t: 'lease-end', id: 1 }), true)
})

test('reports count in the tally; a report of another owner\'s lease or of an outcome that is not one is refused', () => {
  const { slot, owner, leases, entry } = setup()
  leases.settled(owner, slot, undefined, 'r')
  assert.equal(leases.fromThread(owner, { t: 'lease-tally', id: 1, calls: ['r.1', 'ok', 1, 'r.2', 'FNBUS_TIMEOUT', 20, 'r.3', 'handled', 2] }), true)
  const snapshot = entry.syncTally.snapshot()
  assert.deepEqual(snapshot.outcomes, { ok: 1, handled: 1, FNBUS_TIMEOUT: 1 })
  assert.equal(snapshot.latency.count, 3)
  assert.equal(leases.directCalls, 3)
  assert.equal(leases.fromThread({ queuedCalls: 0, queuedBytes: 0 }, { t: 'lease-tally', id: 1, calls: [] }), false)
  assert.equal(leases.fromThread(owner, { t: 'lease-tally', id: 1, calls: ['r.4', 'MADE_UP', 1] }), false)
})

test('whatever a thread or a gateway posts beside the stream, the guards take it or say no: nothing throws', () => {
  fc.assert(fc.property(fc.oneof(
    fc.anything(),
    fc.record({ t: fc.constantFrom('lease', 'lease-grow', 'lease-revoke', 'lease-serve', 'lease-end', 'lease-tally'), id: fc.anything(), slots: fc.anything(), calls: fc.anything(), fn: fc.anything() })
  ), value => {
    if (value === null || typeof value !== 'object') return
    const fromThread = threadSide(value)
    if (fromThread !== undefined) assert.ok(['lease-ready', 'lease-end', 'lease-tally'].includes(fromThread.t))
    const fromGateway = gatewaySide(value, MessagePort)
    // a grant or a lease to serve carries a port, which no generated value has
    if (fromGateway !== undefined) assert.ok(fromGateway.t === 'lease-grow' || fromGateway.t === 'lease-revoke')
  }), { numRuns: 2000 })
})
