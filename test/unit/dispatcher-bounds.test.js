// The dispatcher under broken peers: a congested worker skipped, and no port's failure thrown out of a timer or
// into another call's answer.
import assert from 'node:assert/strict'
import test from 'node:test'
import { Dispatcher } from '../../dist/dispatcher/index.js'
import { Payload } from '../../dist/protocol/index.js'
import { fn, options, fakeWorker, fakeCaller, owner, request, codeOf } from '../dispatcher-fakes.js'
import { mockTime } from '../mock-time.js'

test('a congested worker gets no calls until it is ready again', () => {
  const d = new Dispatcher(options)
  const w = fakeWorker('w')
  d.register(fn, w, 10)
  w.congested = true
  const caller = fakeCaller(owner())
  d.call(request(), caller)
  assert.equal(w.deliveries.length, 0)
  w.congested = false
  d.workerReady(w)
  assert.equal(w.deliveries.length, 1)
})

test('a worker port that throws when handed a call from a timer fails that call, not the process', t => {
  const { clock, advance } = mockTime(t)
  const d = new Dispatcher({ ...options, clock })
  let throwing = false
  const w = { label: 'w', deliveries: /** @type {unknown[]} */ ([]), deliver (delivery) { if (throwing) throw new RangeError('cannot encode'); this.deliveries.push(delivery) } }
  d.register(fn, w, 1)
  const first = fakeCaller(owner())
  const second = fakeCaller(owner())
  d.call(request({ timeoutMs: 20 }), first)
  d.call(request(), second)
  throwing = true
  // the first call's deadline fires from the dispatcher's timer and hands the queued call to the throwing port
  advance(20)
  assert.equal(codeOf(first), 'FNBUS_TIMEOUT')
  assert.equal(codeOf(second), 'FNBUS_WORKER_LOST')
})

test("a caller port that throws on its answer does not break the worker's answer", () => {
  const d = new Dispatcher(options)
  const w = fakeWorker('w')
  d.register(fn, w, 1)
  const bad = { alive: true, settle () { throw new Error('boom') } }
  d.call(request(), bad)
  assert.equal(d.complete(w.deliveries[0].deliveryId, w, { ok: true, payload: Payload.of(1) }), true)
  assert.equal(d.inFlight, 0)
})
