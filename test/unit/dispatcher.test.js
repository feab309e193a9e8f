import assert from 'node:assert/strict'
import test from 'node:test'
import { Dispatcher } from '../../dist/dispatcher/index.js'
import { parseFunctionName, Payload } from '../../dist/protocol/index.js'
import { codeOf as errorCode, fakeCaller, fakeWorker, fn, payloadOf, request } from '../dispatcher-fakes.js'
import { mockTime } from '../mock-time.js'

const options = { maxQueuedCalls: 2, defaultTimeoutMs: 1000, maxTimeoutMs: 60_000 }

/**
 * @param {unknown} value
 * @returns {import('../../dist/dispatcher/index.js').Outcome}
 */
const ok = value => ({ ok: true, payload: Payload.of(value) })
/** The rest of this turn of the event loop: what promises settled in it have done. */
const turn = () => new Promise(resolve => setImmediate(resolve))

test('each call goes to exactly one worker, spread across workers', () => {
  const d = new Dispatcher({ ...options, maxQueuedCalls: 100 })
  const workers = [fakeWorker('a'), fakeWorker('b'), fakeWorker('c')]
  for (const w of workers) d.register(fn, w, 10)
  const callers = Array.from({ length: 30 }, () => fakeCaller())
  for (const c of callers) d.call(request(), c)
  const ids = workers.flatMap(w => w.deliveries.map(x => x.deliveryId))
  assert.equal(ids.length, 30)
  assert.equal(new Set(ids).size, 30)
  for (const w of workers) assert.equal(w.deliveries.length, 10)
})

test('least in flight wins: a worker that answers gets the next call', () => {
  const d = new Dispatcher(options)
  const a = fakeWorker('a')
  const b = fakeWorker('b')
  d.register(fn, a, 5)
  d.register(fn, b, 5)
  d.call(request(), fakeCaller())
  d.call(request(), fakeCaller())
  assert.equal(a.deliveries.length + b.deliveries.length, 2)
  const first = a.deliveries[0] ?? b.deliveries[0]
  const idle = a.deliveries.length === 1 ? a : b
  d.complete(first.deliveryId, idle, ok(1))
  d.call(request(), fakeCaller())
  assert.equal(idle.deliveries.length, 2)
})

test('concurrency is respected; excess waits in a bounded FIFO; past the bound FNBUS_QUEUE_FULL', () => {
  const d = new Dispatcher(options)
  const w = fakeWorker('w')
  d.register(fn, w, 1)
  const callers = [fakeCaller(), fakeCaller(), fakeCaller(), fakeCaller()]
  callers.forEach((c, i) => d.call(request({ payload: Payload.of(i) }), c))
  assert.equal(w.deliveries.length, 1)
  assert.equal(errorCode(callers[3]), 'FNBUS_QUEUE_FULL')
  assert.deepEqual(d.stats()[0].queued, 2)
  d.complete(w.deliveries[0].deliveryId, w, ok('r0'))
  assert.equal(payloadOf(callers[0].outcomes[0]).value, 'r0')
  assert.equal(w.deliveries.length, 2)
  assert.equal(w.deliveries[1].payload.value, 1)
  d.complete(w.deliveries[1].deliveryId, w, ok('r1'))
  assert.equal(w.deliveries[2].payload.value, 2)
})

test('no worker: FNBUS_FUNCTION_NOT_FOUND at once', () => {
  const d = new Dispatcher(options)
  const c = fakeCaller()
  d.call(request(), c)
  assert.equal(errorCode(c), 'FNBUS_FUNCTION_NOT_FOUND')
})

test('waitForWorker: the call waits for a worker that registers in time, else FNBUS_FUNCTION_NOT_FOUND', t => {
  const { clock, advance } = mockTime(t)
  const d = new Dispatcher({ ...options, clock })
  const waiting = fakeCaller()
  d.call(request({ waitForWorkerMs: 500 }), waiting)
  assert.equal(waiting.outcomes.length, 0)
  const w = fakeWorker('late')
  d.register(fn, w, 1)
  assert.equal(w.deliveries.length, 1)
  d.complete(w.deliveries[0].deliveryId, w, ok('hi'))
  assert.equal(waiting.outcomes[0].ok, true)

  const other = parseFunctionName('Svc/other')
  const gaveUp = fakeCaller()
  d.call(request({ fn: other, waitForWorkerMs: 30 }), gaveUp)
  advance(29)
  assert.equal(gaveUp.outcomes.length, 0, 'still waiting within its 30 ms')
  advance(1)
  assert.equal(errorCode(gaveUp), 'FNBUS_FUNCTION_NOT_FOUND')
})

test('a call past its deadline fails FNBUS_TIMEOUT and its late answer is dropped', t => {
  const { clock, advance } = mockTime(t)
  const d = new Dispatcher({ ...options, clock })
  const w = fakeWorker('slow')
  d.register(fn, w, 1)
  const first = fakeCaller()
  d.call(request({ timeoutMs: 20 }), first)
  advance(19)
  assert.equal(first.outcomes.length, 0, 'running within its 20 ms')
  advance(1)
  assert.equal(errorCode(first), 'FNBUS_TIMEOUT')
  const second = fakeCaller()
  d.call(request(), second)
  assert.equal(w.deliveries.length, 2, 'the timed-out call freed the slot')
  assert.equal(d.complete(w.deliveries[0].deliveryId, w, ok('late')), false)
  assert.equal(second.outcomes.length, 0, 'the late answer did not reach a later call')
  assert.equal(first.outcomes.length, 1)
  d.complete(w.deliveries[1].deliveryId, w, ok('mine'))
  assert.equal(payloadOf(second.outcomes[0]).value, 'mine')
})

test('queued calls time out too', t => {
  const { clock, advance } = mockTime(t)
  const d = new Dispatcher({ ...options, clock })
  const w = fakeWorker('busy')
  d.register(fn, w, 1)
  d.call(request({ timeoutMs: 1000 }), fakeCaller())
  const queued = fakeCaller()
  d.call(request({ timeoutMs: 20 }), queued)
  advance(19)
  assert.equal(queued.outcomes.length, 0, 'waiting within its 20 ms')
  advance(1)
  assert.equal(errorCode(queued), 'FNBUS_TIMEOUT')
  assert.equal(d.stats()[0].queued, 0)
})

test('only the worker that got the call can answer it, and only once', () => {
  const d = new Dispatcher(options)
  const w = fakeWorker('w')
  const intruder = fakeWorker('x')
  d.register(fn, w, 1)
  d.register(fn, intruder, 1)
  const c = fakeCaller()
  d.call(request(), c)
  const [holder, other] = w.deliveries.length === 1 ? [w, intruder] : [intruder, w]
  const id = holder.deliveries[0].deliveryId
  assert.equal(d.complete(id, other, ok('forged')), false)
  assert.equal(c.outcomes.length, 0)
  assert.equal(d.complete(id, holder, ok('real')), true)
  assert.equal(d.complete(id, holder, ok('again')), false)
  assert.equal(c.outcomes.length, 1)
  assert.equal(payloadOf(c.outcomes[0]).value, 'real')
})

test('a lost worker fails its calls with FNBUS_WORKER_LOST; queued calls move to the others', () => {
  const d = new Dispatcher(options)
  const a = fakeWorker('a')
  const b = fakeWorker('b')
  d.register(fn, a, 1)
  d.register(fn, b, 1)
  const running = [fakeCaller(), fakeCaller()]
  running.forEach(c => d.call(request(), c))
  const queued = fakeCaller()
  d.call(request(), queued)
  d.workerGone(a)
  const lost = running.find(c => c.outcomes.length === 1)
  assert.equal(errorCode(lost), 'FNBUS_WORKER_LOST')
  d.complete(b.deliveries[0].deliveryId, b, ok(1))
  assert.equal(b.deliveries.length, 2, 'the queued call went to the remaining worker')
  d.workerGone(b)
  assert.equal(errorCode(queued), 'FNBUS_WORKER_LOST')
})

test('when the last worker leaves, queued calls fail FNBUS_FUNCTION_NOT_FOUND', () => {
  const d = new Dispatcher(options)
  const w = fakeWorker('w')
  d.register(fn, w, 1)
  d.call(request(), fakeCaller())
  const queued = fakeCaller()
  d.call(request(), queued)
  d.unregister(fn, w)
  assert.equal(errorCode(queued), 'FNBUS_FUNCTION_NOT_FOUND')
  // the call it was running may still finish
  assert.equal(d.complete(w.deliveries[0].deliveryId, w, ok('done')), true)
})

test('calls of a caller that left are not started', () => {
  const d = new Dispatcher(options)
  const w = fakeWorker('w')
  d.register(fn, w, 1)
  d.call(request(), fakeCaller())
  const gone = fakeCaller()
  d.call(request(), gone)
  gone.alive = false
  d.complete(w.deliveries[0].deliveryId, w, ok(1))
  assert.equal(w.deliveries.length, 1)
  assert.equal(gone.outcomes.length, 0)
})

test('drain fails queued calls at once and running ones after the grace', async t => {
  const { clock, advance } = mockTime(t)
  const d = new Dispatcher({ ...options, clock })
  const w = fakeWorker('w')
  d.register(fn, w, 1)
  const running = fakeCaller()
  const queued = fakeCaller()
  d.call(request(), running)
  d.call(request(), queued)
  const drained = d.drain(20)
  assert.equal(errorCode(queued), 'FNBUS_SHUTTING_DOWN')
  advance(19)
  await turn()
  assert.equal(running.outcomes.length, 0, 'running within the grace')
  advance(1)
  await turn()
  assert.equal(errorCode(running), 'FNBUS_SHUTTING_DOWN', 'failed as the grace ran out')
  await drained
  const late = fakeCaller()
  d.call(request(), late)
  assert.equal(errorCode(late), 'FNBUS_SHUTTING_DOWN')
})

test('drain waits for running calls that finish within the grace', async t => {
  const { clock, advance } = mockTime(t)
  const d = new Dispatcher({ ...options, clock })
  const w = fakeWorker('w')
  d.register(fn, w, 1)
  const running = fakeCaller()
  d.call(request({ timeoutMs: 10_000 }), running)
  const drained = d.drain(5000)
  advance(4999)
  await turn()
  assert.equal(running.outcomes.length, 0, 'running within the grace')
  d.complete(w.deliveries[0].deliveryId, w, ok('finished'))
  await drained
  assert.equal(payloadOf(running.outcomes[0]).value, 'finished')
})

test('calls to functions nobody serves are refused without growing the function table', () => {
  const d = new Dispatcher(options)
  for (let i = 0; i < 1000; i++) {
    const caller = fakeCaller()
    d.call(request({ fn: parseFunctionName(`Made/up${i}`) }), caller)
    assert.equal(errorCode(caller), 'FNBUS_FUNCTION_NOT_FOUND')
  }
  assert.equal(d.trackedFunctions, 0)
  // a served function is tracked, and a caller that waits for a worker of another is too, while it waits
  d.register(fn, fakeWorker('a'), 1)
  d.call(request({ fn: parseFunctionName('Later/fn'), waitForWorkerMs: 50 }), fakeCaller())
  assert.equal(d.trackedFunctions, 2)
})

test('tallies: every settled call counted by function, type and outcome; names nobody serves are bounded', () => {
  const d = new Dispatcher(options)
  const w = fakeWorker('a')
  d.register(fn, w, 10)
  for (let i = 0; i < 3; i++) d.call(request(), fakeCaller())
  d.complete(w.deliveries[0].deliveryId, w, ok('fine'))
  d.complete(w.deliveries[1].deliveryId, w, { ok: true, functionError: 'Handled', payload: Payload.of('no') })
  d.complete(w.deliveries[2].deliveryId, w, { ok: true, functionError: 'Unhandled', payload: Payload.of('boom') })
  d.call(request({ type: 'Async' }), fakeCaller())
  d.complete(w.deliveries[3].deliveryId, w, ok('later'))
  for (let i = 0; i < 1005; i++) d.call(request({ fn: parseFunctionName(`Made/up${i}`) }), fakeCaller())
  d.call(request({ fn: parseFunctionName('Made/up0') }), fakeCaller())

  const tallies = new Map(d.tallies().map(t => [`${t.type} ${t.function}`, t]))
  assert.deepEqual(tallies.get('Sync Svc/fn')?.outcomes, { ok: 1, handled: 1, unhandled: 1 })
  assert.deepEqual(tallies.get('Async Svc/fn')?.outcomes, { ok: 1 })
  assert.deepEqual(tallies.get('Sync Made/up0')?.outcomes, { FNBUS_FUNCTION_NOT_FOUND: 2 })
  // 1,000 names of their own (Svc/fn's two tallies are not among them), the rest under _other
  assert.ok(tallies.has('Sync Made/up999'))
  assert.ok(!tallies.has('Sync Made/up1000'))
  assert.deepEqual(tallies.get('Sync _other')?.outcomes, { FNBUS_FUNCTION_NOT_FOUND: 5 })
  assert.equal(d.trackedFunctions, 1, 'and no function entries for them')
  // a few calls a millisecond: every one of them timed
  const tally = tallies.get('Sync Svc/fn')
  assert.ok(tally)
  const sync = tally.latency
  assert.equal(sync.count, 3)
  assert.equal(sync.counts.reduce((a, b) => a + b), 3)
  assert.equal(sync.counts.length, sync.bounds.length + 1)
})

test('tallies: above 8 calls a millisecond only a sample is timed, unless someone observes every call', async t => {
  const { GatewayEvents } = await import('../../dist/plugins.js')
  const { clock, advance } = mockTime(t)
  for (const observed of [false, true]) {
    const events = new GatewayEvents()
    const seen = []
    if (observed) events.on('invocation', o => seen.push(o))
    const d = new Dispatcher({ ...options, events, clock })
    const w = { label: 'sync', deliver (delivery) { d.complete(delivery.deliveryId, this, ok(null)) } }
    d.register(fn, w, 1)
    // 5 ms of 4,000 calls each; 3 calls in the millisecond after
    for (let ms = 0; ms < 5; ms++) {
      advance(1)
      for (let i = 0; i < 4000; i++) d.call(request(), fakeCaller())
    }
    advance(1)
    for (let i = 0; i < 3; i++) d.call(request(), fakeCaller())
    const [tally] = d.tallies().filter(t => t.type === 'Sync')
    assert.equal(tally.outcomes.ok, 20_003, 'all counted')
    if (observed) {
      assert.equal(tally.latency.count, 20_003)
      assert.equal(seen.length, 20_003)
    } else {
      assert.equal(tally.latency.count, 5 * 8 + 3, 'the first 8 calls of each millisecond, all of a quieter one')
    }
  }
})
