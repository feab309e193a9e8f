// Durable Async invocations: accepted once stored, delivered when a worker can take them, settled in the store.
import assert from 'node:assert/strict'
import test from 'node:test'
import { createGateway, FnbusError } from '../../dist/index.js'
import { MemoryInvocationStore } from '../../dist/store/memory-store.js'
import { connectClient, defined, rejection, startGateway, tempDir, waitFor } from '../helpers.js'

const fast = { retryDelayMs: 20 }

test('invokeFunction Async: 202 with an invocationId once stored, even with no worker; delivered when one comes', async t => {
  const gw = await startGateway(t)
  const caller = await connectClient(t, gw)
  const data = await caller.invokeFunction({ serviceName: 'Later', functionName: 'job', invocationType: 'Async', payload: 'work item' })
  assert.equal(data.statusCode, 202)
  assert.match(data.invocationId, /^[\w-]{10,}$/)
  assert.deepEqual(gw.bus.queueStats('Later/job'), [{ fn: 'Later/job', pending: 1, inFlight: 0, dead: 0, unknown: true }])

  const seen = []
  const worker = await connectClient(t, gw)
  await worker.serve('Later/job', async (event, context) => { seen.push({ event, context }) })
  await waitFor(() => seen.length === 1, 3000, 'the delivery')
  assert.equal(seen[0].event, 'work item')
  assert.equal(seen[0].context.requestId, data.invocationId, 'context.requestId is the invocationId')
  assert.equal(seen[0].context.invocationType, 'Async')
  await waitFor(() => gw.bus.queueStats('Later/job')[0]?.pending === 0, 2000, 'completion to remove it')
})

test('delivery is FIFO per function and each invocation runs once', async t => {
  const gw = await startGateway(t)
  const caller = await connectClient(t, gw)
  for (let i = 0; i < 200; i++) await caller.invokeAsync('Ordered/fn', i)
  const seen = []
  const worker = await connectClient(t, gw)
  await worker.serve('Ordered/fn', async event => { seen.push(event) }, { concurrency: 1 })
  await waitFor(() => seen.length === 200, 5000, 'all deliveries')
  assert.deepEqual(seen, Array.from({ length: 200 }, (_, i) => i))
})

test('a failed invocation is retried with backoff, then succeeds; onSuccess receives the result', async t => {
  const gw = await startGateway(t)
  gw.bus.setFunctionOptions('Flaky/fn', { async: { ...fast, maxRetries: 2, onSuccess: 'results/flaky' } })
  const results = []
  await gw.subscribe('results/#', (topic, payload) => results.push(JSON.parse(payload.toString())))
  let attempts = 0
  const times = []
  await gw.serve('Flaky/fn', async (event) => {
    attempts++
    times.push(Date.now())
    if (attempts < 3) throw new Error(`failure ${attempts}`)
    return { done: event }
  })
  const caller = await connectClient(t, gw)
  const { invocationId } = await caller.invokeAsync('Flaky/fn', 'x')
  await waitFor(() => results.length === 1, 5000, 'the onSuccess event')
  assert.equal(attempts, 3)
  assert.ok(times[2] - times[1] >= times[1] - times[0] - 5, 'the second wait is not shorter than the first (exponential)')
  assert.deepEqual(results[0], { invocationId, function: 'Flaky/fn', statusCode: 200, payload: { done: 'x' } })
})

test('an invocation that exhausts its retries is dead-lettered with its last error; onFailure tells; retry and purge', async t => {
  const gw = await startGateway(t)
  gw.bus.setFunctionOptions('Broken/fn', { async: { ...fast, maxRetries: 1, onFailure: 'failures/broken' } })
  const failures = []
  await gw.subscribe('failures/+', (topic, payload) => failures.push(JSON.parse(payload.toString())))
  let calls = 0
  let healthy = false
  await gw.serve('Broken/fn', (event, context, callback) => {
    calls++
    if (healthy) return callback(null, 'ok')
    callback(new Error('cannot do it'))
  })
  const caller = await connectClient(t, gw)
  const { invocationId } = await caller.invokeAsync('Broken/fn', 'payload')
  await waitFor(() => failures.length === 1, 5000, 'the onFailure event')
  assert.equal(calls, 2, 'one delivery and one retry')
  assert.equal(failures[0].invocationId, invocationId)
  assert.equal(failures[0].attempts, 2)
  assert.deepEqual(failures[0].error, { code: 'FNBUS_FUNCTION_ERROR', message: 'Handled: cannot do it' })

  const dead = await caller.deadLetters('Broken/fn')
  assert.equal(dead.length, 1)
  assert.equal(dead[0].invocationId, invocationId)
  assert.equal(dead[0].error.message, 'Handled: cannot do it')
  assert.deepEqual(await caller.queueCounts('Broken/fn'), [{ function: 'Broken/fn', pending: 0, inFlight: 0, dead: 1 }])

  healthy = true
  assert.equal(await caller.retryDead({ invocationId }), 1)
  await waitFor(() => calls === 3, 3000, 'the revived delivery')
  await waitFor(async () => (await caller.queueCounts('Broken/fn'))[0]?.pending === 0, 2000, 'completion')

  healthy = false
  await caller.invokeAsync('Broken/fn', 'again')
  await waitFor(async () => (await caller.deadLetters('Broken/fn')).length === 1, 5000, 'a second dead letter')
  assert.equal(await caller.purgeDead('Broken/fn'), 1)
  assert.deepEqual(await caller.deadLetters(), [])
})

test('a function that keeps failing does not block the invocations behind it', async t => {
  const gw = await startGateway(t)
  gw.bus.setFunctionOptions('Mixed/fn', { async: { retryDelayMs: 300, maxRetries: 2 } })
  const order = []
  await gw.serve('Mixed/fn', async event => {
    order.push(event)
    if (event === 'poison') throw new Error('always fails')
  }, { concurrency: 1 })
  const caller = await connectClient(t, gw)
  await caller.invokeAsync('Mixed/fn', 'poison')
  for (const event of ['a', 'b', 'c']) await caller.invokeAsync('Mixed/fn', event)
  await waitFor(() => order.length >= 4, 3000, 'the first deliveries')
  assert.deepEqual(order.slice(0, 4), ['poison', 'a', 'b', 'c'], 'the others went while the failed one waited')
  await waitFor(() => order.length === 6, 5000, 'the retries')
})

test('maxEventAge: an invocation nobody takes in time is dead-lettered as expired', async t => {
  const gw = await startGateway(t)
  gw.bus.setFunctionOptions('Stale/fn', { async: { maxEventAgeSec: 1 } })
  const caller = await connectClient(t, gw)
  const { invocationId } = await caller.invokeAsync('Stale/fn', 'old news')
  const dead = await waitFor(async () => (await caller.deadLetters('Stale/fn'))[0], 5000, 'expiry')
  assert.equal(dead.invocationId, invocationId)
  assert.equal(dead.error.code, 'FNBUS_TIMEOUT')
  assert.match(dead.error.message, /maxEventAge/)
})

test('past maxStored, Async calls are refused with FNBUS_QUEUE_FULL, never dropped silently', async t => {
  const gw = await startGateway(t)
  gw.bus.setFunctionOptions('Small/queue', { async: { maxStored: 3 } })
  const caller = await connectClient(t, gw)
  const outcomes = await Promise.all(Array.from({ length: 5 }, (_, i) => caller.invokeAsync('Small/queue', i).then(() => 'stored', e => e.code)))
  assert.deepEqual(outcomes.sort(), ['FNBUS_QUEUE_FULL', 'FNBUS_QUEUE_FULL', 'stored', 'stored', 'stored'])
  const other = await caller.invokeAsync('Other/queue', 'x')
  assert.ok(other.invocationId, 'the bound is per function')
})

test('an idempotency key returns the first invocation id and stores once', async t => {
  const gw = await startGateway(t)
  const caller = await connectClient(t, gw)
  const first = await caller.invokeAsync('Idem/fn', 'a', { idempotencyKey: 'order-42' })
  const again = await caller.invokeAsync('Idem/fn', 'a', { idempotencyKey: 'order-42' })
  const viaLink = await caller.invokeFunction({ serviceName: 'Idem', functionName: 'fn', invocationType: 'Async', idempotencyKey: 'order-42', payload: 'a' })
  assert.equal(again.invocationId, first.invocationId)
  assert.ok('invocationId' in viaLink, 'an Async invocation is answered with its id')
  assert.equal(viaLink.invocationId, first.invocationId)
  const otherFunction = await caller.invokeAsync('Idem/other', 'a', { idempotencyKey: 'order-42' })
  assert.notEqual(otherFunction.invocationId, first.invocationId)
  const seen = []
  await gw.serve('Idem/fn', async event => { seen.push(event) })
  // a stored copy of 'a' would be delivered before an invocation made after it
  await caller.invokeAsync('Idem/fn', 'b')
  await waitFor(() => seen.includes('b'), 3000, 'the invocation made after')
  assert.deepEqual(seen, ['a', 'b'])
})

test('cancel removes a waiting invocation; an unknown or finished one is FNBUS_INVOCATION_NOT_FOUND', async t => {
  const gw = await startGateway(t)
  const caller = await connectClient(t, gw)
  const keep = await caller.invokeAsync('Cancel/fn', 'keep')
  const drop = await caller.invokeAsync('Cancel/fn', 'drop')
  await caller.cancel(drop.invocationId)
  assert.equal((await rejection(caller.cancel(drop.invocationId))).code, 'FNBUS_INVOCATION_NOT_FOUND')
  assert.equal((await rejection(caller.cancel('no-such-id'))).code, 'FNBUS_INVOCATION_NOT_FOUND')
  const seen = []
  await gw.serve('Cancel/fn', async (event, context) => { seen.push([event, context.requestId]) })
  // the cancelled one, had it stayed, would be delivered before an invocation made after it
  const last = await caller.invokeAsync('Cancel/fn', 'last')
  await waitFor(() => seen.some(([event]) => event === 'last'), 3000, 'the invocation made after')
  assert.deepEqual(seen, [['keep', keep.invocationId], ['last', last.invocationId]])
})

test('a worker lost mid-work: its invocation goes back to the queue and another worker gets it promptly', async t => {
  const gw = await startGateway(t)
  const doomed = await connectClient(t, gw, { reconnectPeriod: 0 })
  let started
  const running = new Promise(resolve => { started = resolve })
  await doomed.serve('Lost/fn', () => { started(); return new Promise(() => {}) })
  const caller = await connectClient(t, gw)
  const { invocationId } = await caller.invokeAsync('Lost/fn', 'survive me')
  await running
  const seen = []
  const healthy = await connectClient(t, gw)
  await healthy.serve('Lost/fn', async (event, context) => { seen.push([event, context.requestId]) })
  const cutAt = Date.now()
  defined(gw.aedes.clients[doomed.clientId]).conn.destroy()
  await waitFor(() => seen.length === 1, 3000, 'redelivery')
  assert.ok(Date.now() - cutAt < 3000)
  assert.deepEqual(seen, [['survive me', invocationId]])
})

test('functions whose names prefix each other (fn1, fn10) never see each other\'s invocations', async t => {
  const gw = await startGateway(t)
  const caller = await connectClient(t, gw)
  for (let i = 0; i < 5; i++) {
    await caller.invokeAsync('S/fn1', `one-${i}`)
    await caller.invokeAsync('S/fn10', `ten-${i}`)
  }
  /** @type {string[]} */
  const one = []
  /** @type {string[]} */
  const ten = []
  await gw.serve('S/fn1', async e => { one.push(e) })
  await waitFor(() => one.length === 5, 3000, 'fn1 deliveries')
  // fn10's stored invocations must not reach fn1's worker: after a while, fn1 has had its own five and no more
  await new Promise(resolve => setTimeout(resolve, 100))
  assert.deepEqual([...one].sort(), ['one-0', 'one-1', 'one-2', 'one-3', 'one-4'])
  await gw.serve('S/fn10', async e => { ten.push(e) })
  await waitFor(() => ten.length === 5, 3000, 'fn10 deliveries')
  assert.ok(one.every(e => e.startsWith('one-')) && ten.every(e => e.startsWith('ten-')))
})

test('Sync calls are not starved by a large Async backlog', async t => {
  const gw = await startGateway(t)
  const caller = await connectClient(t, gw)
  await Promise.all(Array.from({ length: 2000 }, (_, i) => caller.invokeAsync('Busy/fn', i)))
  let asyncRuns = 0
  const worker = await connectClient(t, gw)
  await worker.serve('Busy/fn', async event => {
    if (event === 'sync') return 'sync answered'
    asyncRuns++
    await new Promise(resolve => setTimeout(resolve, 2))
  }, { concurrency: 2 })
  await waitFor(() => asyncRuns > 10, 3000, 'the backlog to start draining')
  assert.equal(await caller.invoke('Busy/fn', 'sync', { timeout: 5000 }), 'sync answered')
  assert.ok(asyncRuns < 2000, `the Sync call was answered while the backlog still drained (${asyncRuns} done)`)
})

test('stored invocations survive a gateway restart and are delivered after it', async t => {
  const dataDir = await tempDir(t)
  let gw = await createGateway({ port: 0, dataDir })
  const port = gw.port
  t.after(() => gw.close())
  const caller = await connectClient(t, gw, { reconnectPeriod: 50 })
  const ids = []
  for (let i = 0; i < 50; i++) ids.push((await caller.invokeAsync('Durable/fn', i)).invocationId)
  await gw.close()
  gw = await createGateway({ port, dataDir })
  assert.deepEqual(gw.bus.queueStats('Durable/fn'), [{ fn: 'Durable/fn', pending: 50, inFlight: 0, dead: 0, unknown: true }])
  const seen = []
  const worker = await connectClient(t, gw)
  await worker.serve('Durable/fn', async (event, context) => { seen.push(context.requestId) })
  await waitFor(() => seen.length === 50, 5000, 'all deliveries after the restart')
  assert.deepEqual(seen, ids)
})

test('a store that cannot write refuses Async calls with FNBUS_STORE_FAILURE (never a false 202); Sync keeps working', async t => {
  const store = new MemoryInvocationStore()
  await store.open()
  const append = store.append.bind(store)
  let broken = true
  store.append = (...args) => broken ? Promise.reject(new FnbusError('FNBUS_STORE_FAILURE', 'disk full')) : append(...args)
  const gw = await startGateway(t, { store })
  await gw.serve('Sync/ok', async () => 'fine')
  const caller = await connectClient(t, gw)
  assert.equal((await rejection(caller.invokeAsync('Store/fn', 'x'))).code, 'FNBUS_STORE_FAILURE')
  assert.equal(await caller.invoke('Sync/ok'), 'fine')
  broken = false
  assert.ok((await caller.invokeAsync('Store/fn', 'x')).invocationId)
})

test('in process: gw.bus.invokeAsync stores and a remote worker runs it', async t => {
  const gw = await startGateway(t)
  const { invocationId } = await gw.bus.invokeAsync('InProc/fn', { n: 1 })
  const seen = []
  const worker = await connectClient(t, gw)
  await worker.serve('InProc/fn', async (event, context) => { seen.push([event, context.requestId]) })
  await waitFor(() => seen.length === 1, 3000, 'delivery')
  assert.deepEqual(seen, [[{ n: 1 }, invocationId]])
})
