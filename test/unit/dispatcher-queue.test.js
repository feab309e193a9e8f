// The queue of calls waiting for a worker (src/dispatcher/queue.ts) under hostile peers: a full queue shared fairly
// between connections, payload bytes bounded per function and per connection, a departed caller's calls dropped.
import assert from 'node:assert/strict'
import test from 'node:test'
import { Dispatcher } from '../../dist/dispatcher/index.js'
import { parseFunctionName } from '../../dist/protocol/index.js'
import { fn, options, fakeWorker, fakeCaller, owner, wire, request, codeOf, errorOf } from '../dispatcher-fakes.js'

test('a full queue is shared: a connection with fewer waiting calls pushes out the newest call of the one with most', () => {
  const d = new Dispatcher(options)
  const w = fakeWorker('w')
  d.register(fn, w, 1)
  d.call(request(), fakeCaller(owner())) // takes the one slot
  const greedy = owner()
  const greedyCalls = Array.from({ length: 10 }, () => fakeCaller(greedy))
  for (const c of greedyCalls) d.call(request(), c)
  assert.equal(greedy.queuedCalls, 10)
  const polite = owner()
  const mine = fakeCaller(polite)
  d.call(request(), mine)
  assert.equal(mine.outcomes.length, 0, 'the bystander waits rather than failing')
  assert.equal(polite.queuedCalls, 1)
  assert.equal(codeOf(greedyCalls[9]), 'FNBUS_QUEUE_FULL', "the greedy connection's newest call made room")
  assert.equal(greedyCalls[0].outcomes.length, 0)
  assert.equal(greedy.queuedCalls, 9)
  // the greedy connection itself cannot push its own calls out
  const more = fakeCaller(greedy)
  d.call(request(), more)
  assert.equal(codeOf(more), 'FNBUS_QUEUE_FULL')
})

test('queued payload bytes are bounded per function and per connection', () => {
  const d = new Dispatcher({ ...options, maxQueuedCalls: 100, maxQueuedBytes: 3000, maxQueuedBytesPerClient: 2000 })
  d.register(fn, fakeWorker('w'), 1)
  d.call(request(), fakeCaller(owner()))
  const a = owner()
  const first = fakeCaller(a)
  const second = fakeCaller(a)
  const third = fakeCaller(a)
  d.call(request({ payload: wire(1000) }), first)
  d.call(request({ payload: wire(1000) }), second)
  d.call(request({ payload: wire(1000) }), third)
  assert.deepEqual([first, second].map(c => c.outcomes.length), [0, 0])
  assert.equal(codeOf(third), 'FNBUS_QUEUE_FULL')
  assert.match(errorOf(third.outcomes[0])?.message ?? '', /maxQueuedBytesPerClient/)
  assert.equal(a.queuedBytes, 2000)
  const b = owner()
  const other = fakeCaller(b)
  d.call(request({ payload: wire(1000) }), other)
  assert.equal(other.outcomes.length, 0)
  const c = owner()
  const over = fakeCaller(c)
  d.call(request({ payload: wire(1000) }), over)
  // 3000 bytes wait already: the newest call of the connection with most (a) makes room, as for counts
  assert.equal(over.outcomes.length, 0)
  assert.equal(codeOf(second), 'FNBUS_QUEUE_FULL')
  assert.equal(a.queuedBytes, 1000)
})

test("a departed connection's waiting calls are dropped with their payloads, and the name is forgotten", () => {
  const d = new Dispatcher({ ...options, maxQueuedCalls: 1000 })
  const gone = owner()
  for (let i = 0; i < 500; i++) {
    const caller = fakeCaller(gone)
    d.call(request({ fn: parseFunctionName(`Nobody/fn${i % 5}`), payload: wire(1024), waitForWorkerMs: 60_000 }), caller)
  }
  assert.equal(gone.queuedCalls, 500)
  assert.equal(gone.queuedBytes, 500 * 1024)
  assert.equal(d.trackedFunctions, 5)
  d.callerGone(gone)
  assert.equal(gone.queuedCalls, 0)
  assert.equal(gone.queuedBytes, 0)
  assert.equal(d.trackedFunctions, 0, 'no state stays for names nobody serves or waits for')
})
