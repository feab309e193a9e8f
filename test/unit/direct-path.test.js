// Both ends of a direct-path lease alone, over a real MessageChannel in this thread: what crosses, and what either
// end does with a peer that posts what it should not.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import test from 'node:test'
import { MessageChannel } from 'node:worker_threads'
import fc from 'fast-check'
import { DirectCaller } from '../../dist/client/direct-caller.js'
import { DirectWorker } from '../../dist/client/direct-worker.js'
import { Payload } from '../../dist/protocol/index.js'
import { packBatch, unpackBatch } from '../../dist/protocol/lease.js'
import { systemClock } from '../../dist/util/clock.js'
import { rejection } from '../helpers.js'

/** A worker's stand-in that serves S/f by echoing the event, and records the invocations it ran. */
function echoWorker () {
  /** @type {any[]} */
  const ran = []
  return {
    ran,
    serves: (/** @type {string} */ name) => name === 'S/f',
    run (/** @type {any} */ invoke, /** @type {(fields: any) => void} */ answer) {
      ran.push(invoke)
      const value = Payload.fromWire(invoke.pk, invoke.p)
      answer({ pk: value.kind, p: value.bytes })
    },
  }
}

/** The lease's ports do not keep a thread alive (the connection to the gateway does): a test holds it open itself. */
function keepAlive (t) {
  const timer = setInterval(() => {}, 1000)
  t.after(() => clearInterval(timer))
}

function caller () {
  /** @type {any[]} */
  const side = []
  const direct = new DirectCaller({ clock: systemClock, epoch: () => 1, postSide: m => side.push(m), maxPayload: () => 1024 })
  return { direct, side }
}

function grant (port, slots = 4) {
  return { t: /** @type {const} */ ('lease'), id: 7, fn: 'S/f', slots, timeout: 1000, maxTimeout: 5000, rid: 'gw.', port }
}

test('calls cross a lease to the worker and back, with their request ids, deadlines and contexts; reports follow', async t => {
  keepAlive(t)
  const { port1, port2 } = new MessageChannel()
  const worker = echoWorker()
  new DirectWorker(/** @type {any} */ (worker), () => 1024).serve({ t: 'lease-serve', id: 7, fn: 'S/f', slots: 4, port: port2 })
  const { direct, side } = caller()
  direct.granted(grant(port1))
  t.after(() => direct.shutdown(/** @type {any} */ (new Error('done'))))
  assert.ok(direct.has('S/f') && !direct.has('S/g'))
  const answers = await Promise.all([1, 2, 3].map(i => direct.call('S/f', Payload.of({ i }), i === 2 ? { from: 'me' } : undefined, 500)))
  assert.deepEqual(answers.map(env => env.t === 'reply' && Payload.fromWire(env.pk, env.p).value), [{ i: 1 }, { i: 2 }, { i: 3 }])
  assert.deepEqual(worker.ran.map(r => r.rid), ['gw.1', 'gw.2', 'gw.3'])
  assert.deepEqual(worker.ran[1].ctx, { from: 'me' })
  assert.ok(worker.ran.every(r => r.dl > Date.now() && r.dl <= Date.now() + 500 && r.it === 'Sync'))
  direct.revoked(7)
  assert.equal(direct.has('S/f'), false)
  assert.deepEqual(side.map(m => m.t), ['lease-tally', 'lease-end'])
  assert.deepEqual(side[0].calls.filter((_, i) => i % 3 !== 2), ['gw.1', 'ok', 'gw.2', 'ok', 'gw.3', 'ok'])
})

test('a caller that posts what is not a batch of calls, a batch larger than its slots hold, or more calls than its slots, loses the lease (the port closes)', async t => {
  keepAlive(t)
  const hostile = {
    'not a buffer': port => port.postMessage({ calls: [] }),
    'not MessagePack': port => { const b = new ArrayBuffer(3); new Uint8Array(b).set([0xc1, 0xc1, 0xc1]); port.postMessage(b, [b]) },
    'a batch of what is not a call': port => port.postMessage(packBatch([[1, 2, 3]])),
    'a batch larger than its slots could hold': port => port.postMessage(packBatch([[1, 'r', Date.now() + 1000, 0, Buffer.alloc(300_000), null]])),
    'more calls than slots': port => port.postMessage(packBatch(Array.from({ length: 3 }, (_, i) => [i + 1, `r${i}`, Date.now() + 1000, 0, Buffer.from('x'), null]))),
  }
  for (const [what, post] of Object.entries(hostile)) {
    const { port1, port2 } = new MessageChannel()
    const worker = echoWorker()
    // an echo that never answers: the calls stay in flight
    worker.run = () => {}
    new DirectWorker(/** @type {any} */ (worker), () => 1024).serve({ t: 'lease-serve', id: 1, fn: 'S/f', slots: 2, port: port2 })
    const closed = once(port1, 'close')
    post(port1)
    await closed
    assert.ok(true, what)
  }
})

test('a call past the payload limit, or with a context that is not one, is refused as the gateway would refuse it', async t => {
  keepAlive(t)
  const { port1, port2 } = new MessageChannel()
  const worker = echoWorker()
  new DirectWorker(/** @type {any} */ (worker), () => 16).serve({ t: 'lease-serve', id: 7, fn: 'S/f', slots: 4, port: port2 })
  const { direct } = caller()
  direct.granted(grant(port1))
  t.after(() => direct.shutdown(/** @type {any} */ (new Error('done'))))
  const big = direct.call('S/f', Payload.of('x'.repeat(100)), undefined, 1000)
  assert.equal((await rejection(big)).code, 'FNBUS_PAYLOAD_TOO_LARGE')
  // a context the caller's own SDK would not send (its checks are the caller's to skip): a Date is not plain data
  const odd = direct.call('S/f', Payload.of(1), /** @type {any} */ ({ when: new Date() }), 1000)
  assert.equal((await rejection(odd)).code, 'FNBUS_INVALID_ARGUMENT')
  assert.equal(worker.ran.length, 0, 'neither ran')
})

test('a worker that answers with what is not an answer fails the calls with FNBUS_BAD_MESSAGE; a closed port with FNBUS_WORKER_LOST', async t => {
  keepAlive(t)
  {
    const { port1, port2 } = new MessageChannel()
    const { direct } = caller()
    direct.granted(grant(port1))
    const call = direct.call('S/f', Payload.of(1), undefined, 1000)
    port2.postMessage(packBatch([['not', 'an', 'answer', 'at all', 5]]))
    assert.equal((await rejection(call)).code, 'FNBUS_BAD_MESSAGE')
    assert.equal(direct.has('S/f'), false, 'the lease is given up')
  }
  {
    const { port1, port2 } = new MessageChannel()
    const { direct, side } = caller()
    direct.granted(grant(port1))
    const call = direct.call('S/f', Payload.of(1), undefined, 1000)
    port2.close()
    assert.equal((await rejection(call)).code, 'FNBUS_WORKER_LOST')
    assert.equal(side.at(-1).t, 'lease-end')
  }
})

test('whatever a peer posts on a lease\'s port, unpackBatch takes it or says no: nothing throws', () => {
  fc.assert(fc.property(fc.oneof(fc.anything(), fc.uint8Array({ maxLength: 64 }).map(u => u.buffer)), value => {
    const batch = unpackBatch(value)
    assert.ok(batch === undefined || Array.isArray(batch))
  }), { numRuns: 2000 })
})
