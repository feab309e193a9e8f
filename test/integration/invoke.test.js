import assert from 'node:assert/strict'
import test from 'node:test'
import { connectClient, defined, rejection, startGateway, waitFor } from '../helpers.js'

const base64Json = value => Buffer.from(JSON.stringify(value)).toString('base64')

test('the seed call: invokeFunction Sync with a callback returns statusCode 200 and the payload', async t => {
  const gw = await startGateway(t)
  const worker = await connectClient(t, gw)
  await worker.serve('EdgeFC/helloworld', function (event, context, callback) {
    callback(null, 'Message from helloworld: ' + event)
  })
  const caller = await connectClient(t, gw)
  const data = await new Promise((resolve, reject) => {
    caller.invokeFunction({
      serviceName: 'EdgeFC',
      functionName: 'helloworld',
      invocationType: 'Sync',
      invokerContext: base64Json({ custom: 'ctx' }),
      payload: 'String message from Invoker.',
    }, (err, result) => err ? reject(err) : resolve(result))
  })
  assert.deepEqual(data, { statusCode: 200, payload: 'Message from helloworld: String message from Invoker.' })
  // promise form, and Link's functionId addressing
  const again = await caller.invokeFunction({ functionId: 'service:EdgeFC:function:helloworld', payload: 'x' })
  assert.deepEqual(again, { statusCode: 200, payload: 'Message from helloworld: x' })
})

test('the handler gets the payload with its type kept, and the context', async t => {
  const gw = await startGateway(t)
  const worker = await connectClient(t, gw)
  const seen = []
  await worker.serve('Svc/echo', async (event, context) => {
    seen.push({ event, context })
    return event
  })
  const caller = await connectClient(t, gw)
  for (const value of ['text', Buffer.from([1, 2, 3]), { nested: [1, { a: true }] }, 7, null]) {
    assert.deepEqual(await caller.invoke('Svc/echo', value), value)
  }
  assert.ok(Buffer.isBuffer(seen[1].event))
  const before = Date.now()
  await caller.invokeFunction({ serviceName: 'Svc', functionName: 'echo', invokerContext: base64Json({ user: 'u1' }), payload: 'p', timeout: 5000 })
  const { context } = seen.at(-1)
  assert.deepEqual(context.invokerContext, { user: 'u1' })
  assert.equal(context.serviceName, 'Svc')
  assert.equal(context.functionName, 'echo')
  assert.equal(context.invocationType, 'Sync')
  assert.match(context.requestId, /^[\w-]{21}$/)
  assert.ok(context.deadline >= before + 4000 && context.deadline <= Date.now() + 5000, 'deadline reflects the timeout')
  assert.deepEqual(seen[0].context.invokerContext, {}, 'no invoker context reads as {}')
  // the idiomatic form takes the context as an object
  await caller.invoke('Svc/echo', 1, { context: { k: 'v' } })
  assert.deepEqual(seen.at(-1).context.invokerContext, { k: 'v' })
})

test('function errors: Handled when called back with one, Unhandled when thrown; the worker keeps serving', async t => {
  const gw = await startGateway(t)
  const worker = await connectClient(t, gw)
  await worker.serve('Svc/moody', (event, context, callback) => {
    if (event === 'handled') return callback(new Error('refused politely'))
    if (event === 'throw') throw new Error('exploded')
    if (event === 'reject') return Promise.reject(new Error('rejected'))
    callback(null, 'fine')
  })
  const caller = await connectClient(t, gw)
  assert.deepEqual(await caller.invokeFunction({ serviceName: 'Svc', functionName: 'moody', payload: 'handled' }),
    { statusCode: 200, payload: 'refused politely', functionError: 'Handled' })
  assert.deepEqual(await caller.invokeFunction({ serviceName: 'Svc', functionName: 'moody', payload: 'throw' }),
    { statusCode: 200, payload: 'exploded', functionError: 'Unhandled' })
  const err = await rejection(caller.invoke('Svc/moody', 'reject'))
  assert.equal(err.code, 'FNBUS_FUNCTION_ERROR')
  assert.equal(err.handled, false)
  assert.equal(err.message, 'rejected')
  const handled = await rejection(caller.invoke('Svc/moody', 'handled'))
  assert.equal(handled.handled, true)
  assert.equal(await caller.invoke('Svc/moody', 'ok'), 'fine')
})

test('no worker: FNBUS_FUNCTION_NOT_FOUND at once, not at the timeout', async t => {
  const gw = await startGateway(t)
  const caller = await connectClient(t, gw)
  const started = Date.now()
  const err = await rejection(caller.invoke('Nobody/home', 'x', { timeout: 20_000 }))
  assert.equal(err.code, 'FNBUS_FUNCTION_NOT_FOUND')
  assert.ok(Date.now() - started < 5000, 'failed without waiting for the 20 s timeout')
  const viaCallback = await new Promise(resolve => caller.invokeFunction({ serviceName: 'Nobody', functionName: 'home' }, err => resolve(err)))
  assert.equal(viaCallback.code, 'FNBUS_FUNCTION_NOT_FOUND')
})

test('waitForWorker: a call waits for a worker that comes online', async t => {
  const gw = await startGateway(t)
  const caller = await connectClient(t, gw)
  const answer = caller.invoke('Late/worker', 'x', { waitForWorker: 5000 })
  await waitFor(() => gw.stats().functions.find(f => f.name === 'Late/worker')?.queued === 1, 2000, 'the call waiting at the gateway')
  const worker = await connectClient(t, gw)
  await worker.serve('Late/worker', async () => 'arrived')
  assert.equal(await answer, 'arrived')
})

test('a call past its timeout fails FNBUS_TIMEOUT, and the late reply is not delivered to a later call', async t => {
  const gw = await startGateway(t)
  const worker = await connectClient(t, gw)
  /** @type {(value?: unknown) => void} */
  let releaseSlow = () => {}
  const slowReleased = new Promise(resolve => { releaseSlow = resolve })
  /** @type {(value?: unknown) => void} */
  let slowAnswered = () => {}
  const slowDone = new Promise(resolve => { slowAnswered = resolve })
  await worker.serve('Svc/slow', async (event) => {
    if (event === 'slow') {
      await slowReleased
      slowAnswered()
    }
    // the later call's answer leaves the worker after the late one, on the same connection: the gateway reads the
    // late answer while the later call is running
    if (event === 'fast') await slowDone
    return `answer to ${event}`
  }, { concurrency: 4 })
  const caller = await connectClient(t, gw)
  const err = await rejection(caller.invoke('Svc/slow', 'slow', { timeout: 100 }))
  assert.equal(err.code, 'FNBUS_TIMEOUT')
  const later = caller.invoke('Svc/slow', 'fast')
  await waitFor(() => gw.stats().inFlight === 1, 2000, 'the later call running')
  releaseSlow()
  assert.equal(await later, 'answer to fast')
})

test('several workers: each call runs exactly once, and load spreads across them', async t => {
  const gw = await startGateway(t)
  const counts = new Map()
  for (const name of ['w1', 'w2', 'w3']) {
    const worker = await connectClient(t, gw)
    await worker.serve('Pool/work', async (event) => {
      counts.set(name, (counts.get(name) ?? 0) + 1)
      await new Promise(resolve => setTimeout(resolve, 2))
      return event
    }, { concurrency: 4 })
  }
  const caller = await connectClient(t, gw)
  const results = await Promise.all(Array.from({ length: 300 }, (_, i) => caller.invoke('Pool/work', i)))
  assert.deepEqual(results, Array.from({ length: 300 }, (_, i) => i))
  const total = [...counts.values()].reduce((a, b) => a + b, 0)
  assert.equal(total, 300, 'every call ran once')
  for (const name of ['w1', 'w2', 'w3']) assert.ok((counts.get(name) ?? 0) >= 30, `${name} took a share: ${counts.get(name)}`)
})

test("a worker's concurrency limit holds; past the queue bound calls fail FNBUS_QUEUE_FULL", async t => {
  const gw = await startGateway(t, { limits: { maxQueuedCalls: 5 } })
  let running = 0
  let peak = 0
  /** @type {((value?: unknown) => void) | undefined} */
  let release
  const gate = new Promise(resolve => { release = resolve })
  const worker = await connectClient(t, gw)
  await worker.serve('Svc/narrow', async () => {
    running++
    peak = Math.max(peak, running)
    await gate
    running--
    return 'done'
  }, { concurrency: 2 })
  const caller = await connectClient(t, gw)
  let refused = 0
  const calls = Array.from({ length: 10 }, () => caller.invoke('Svc/narrow').then(v => v, e => { refused++; return e.code }))
  // the calls past the queue are answered at once: then all ten have reached the gateway
  await waitFor(() => refused === 3, 2000, 'the calls past the queue refused')
  defined(release)()
  const outcomes = await Promise.all(calls)
  assert.equal(peak, 2)
  assert.equal(outcomes.filter(o => o === 'done').length, 7, '2 running + 5 queued')
  assert.equal(outcomes.filter(o => o === 'FNBUS_QUEUE_FULL').length, 3)
})

test('invalid names and arguments are FNBUS_INVALID_ARGUMENT naming the field', async t => {
  const gw = await startGateway(t)
  const caller = await connectClient(t, gw)
  const bad = await rejection(caller.invokeFunction({ serviceName: 'Edge FC', functionName: 'x' }))
  assert.equal(bad.code, 'FNBUS_INVALID_ARGUMENT')
  assert.match(bad.message, /serviceName/)
  assert.match((await rejection(caller.invokeFunction({ serviceName: 'S', functionName: '' }))).message, /functionName/)
  assert.equal((await rejection(caller.invoke('no-slash'))).code, 'FNBUS_INVALID_ARGUMENT')
  assert.equal((await rejection(caller.invokeFunction({ serviceName: 'S', functionName: 'f', invocationType: /** @type {any} */ ('Later') }))).code, 'FNBUS_INVALID_ARGUMENT')
  assert.equal((await rejection(caller.invokeFunction({ serviceName: 'S', functionName: 'f', invokerContext: 'not base64 json' }))).code, 'FNBUS_INVALID_ARGUMENT')
  assert.equal((await rejection(caller.serve('S/f', /** @type {any} */ ('not a function')))).code, 'FNBUS_INVALID_ARGUMENT')
})

test('in-process: gw.serve and gw.invoke, and remote callers reach in-process handlers', async t => {
  const gw = await startGateway(t)
  await gw.serve('Local/upper', (event, context, callback) => callback(null, String(event).toUpperCase()))
  assert.equal(await gw.invoke('Local/upper', 'abc'), 'ABC')
  const caller = await connectClient(t, gw)
  assert.equal(await caller.invoke('Local/upper', 'remote'), 'REMOTE')
  const worker = await connectClient(t, gw)
  await worker.serve('Remote/double', async n => n * 2)
  assert.equal(await gw.invoke('Remote/double', 21), 42)
  assert.equal((await rejection(gw.invoke('Local/none'))).code, 'FNBUS_FUNCTION_NOT_FOUND')
})

test('in-process: the handler gets the payload with its type kept, as its own copy: it cannot change the caller\'s object', async t => {
  const gw = await startGateway(t)
  await gw.serve('Local/scribble', event => {
    if (Buffer.isBuffer(event)) event.fill(0)
    else if (event !== null && typeof event === 'object') event.nested.push('changed')
    return event
  })
  const bytes = Buffer.from([1, 2, 3])
  assert.deepEqual(await gw.invoke('Local/scribble', bytes), Buffer.from([0, 0, 0]))
  assert.deepEqual(bytes, Buffer.from([1, 2, 3]))
  const view = new Uint8Array([4, 5])
  const answer = await gw.invoke('Local/scribble', view)
  assert.ok(Buffer.isBuffer(answer), 'a Uint8Array arrives as a Buffer, as from a remote caller')
  assert.deepEqual([...view], [4, 5])
  const object = { nested: [1, { a: true }] }
  assert.deepEqual(await gw.invoke('Local/scribble', object), { nested: [1, { a: true }, 'changed'] })
  assert.deepEqual(object, { nested: [1, { a: true }] })
  for (const value of ['text', 7, true, null, undefined]) assert.equal(await gw.invoke('Local/scribble', value), value)
})

test('in-process: a handler that answers synchronously completes after its delivery, so a long queue does not nest calls', async t => {
  const gw = await startGateway(t, { limits: { maxQueuedCalls: 50_000 } })
  /** @type {((value?: unknown) => void) | undefined} */
  let open
  const gate = new Promise(resolve => { open = resolve })
  // the first call holds the one slot until the queue is long; every later one answers synchronously
  await gw.serve('Local/sync', event => event === 'first' ? gate : event + 1, { concurrency: 1 })
  const first = gw.invoke('Local/sync', 'first')
  const queued = Array.from({ length: 40_000 }, (_, i) => gw.invoke('Local/sync', i))
  defined(open)('opened')
  assert.equal(await first, 'opened')
  // each answer starts the next queued call: completed inside its own delivery, that would be 40,000 frames deep
  const answers = await Promise.all(queued)
  assert.ok(answers.every((answer, i) => answer === i + 1))
})

test('a served function can stop serving; calls then fail FNBUS_FUNCTION_NOT_FOUND', async t => {
  const gw = await startGateway(t)
  const worker = await connectClient(t, gw)
  const served = await worker.serve('Svc/temp', async () => 'here')
  const caller = await connectClient(t, gw)
  assert.equal(await caller.invoke('Svc/temp'), 'here')
  await served.close()
  assert.equal((await rejection(caller.invoke('Svc/temp'))).code, 'FNBUS_FUNCTION_NOT_FOUND')
})
