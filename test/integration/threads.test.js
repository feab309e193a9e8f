// Functions as threads: real Workers of this process, a real gateway, the supervisor's policy. Each way a thread
// can break ends and restarts that function alone while a bystander thread keeps answering; the samples answer as
// threads exactly as they do as processes.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import test from 'node:test'
import { fileURLToPath } from 'node:url'
import { Supervisor } from '../../dist/runtime/supervisor.js'
import { ThreadHost } from '../../dist/runtime/thread-host.js'
import { formatStatus } from '../../dist/cli/commands/status.js'
import { connectClient, defined, rejection, startGateway, waitFor } from '../helpers.js'
import { FAST, supervise } from '../supervise.js'
/** @typedef {import('../../dist/runtime/runner.js').SupervisedFunction} SupervisedFunction */

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const FIXTURES = join(ROOT, 'test/fixtures/threads')

/**
 * @param {Partial<SupervisedFunction>} [overrides]
 * @returns {SupervisedFunction}
 */
function fn (service, name, module, overrides = {}) {
  return { service, function: name, name: `${service}/${name}`, module, instances: 1, concurrency: 4, env: {}, memoryLimitMb: undefined, isolation: 'thread', ...overrides }
}

/** Calls `Test/bystander` one after another until stopped; counts what succeeded and what failed. */
function keepCalling (client) {
  /** @type {{ ok: number, failed: unknown[] }} */
  const tally = { ok: 0, failed: [] }
  let running = true
  const done = (async () => {
    while (running) {
      try {
        assert.equal(await client.invoke('Test/bystander', 'still here', { timeout: 2000 }), 'still here')
        tally.ok++
      } catch (err) {
        tally.failed.push(err)
      }
    }
  })()
  return { tally, stop: async () => { running = false; await done } }
}

const CASES = {
  throw: /^threw Error: thrown from a timer$/,
  reject: /^threw Error: rejected, never caught$/,
  exit: /^exited with code 7$/,
  oom: /^ran out of heap \(over its memoryLimitMb of 32\)$/,
  block: /^stopped answering \(no heartbeat for \d+ ms\)$/,
}

test('a thread that throws, rejects, exits, outgrows its heap or blocks its loop is restarted alone; a bystander thread answers throughout', async t => {
  const gw = await startGateway(t)
  const { supervisor } = await supervise(t, gw, [
    fn('Test', 'hostile', join(FIXTURES, 'hostile.cjs'), { memoryLimitMb: 32 }),
    fn('Test', 'bystander', join(FIXTURES, 'hostile.cjs')),
  ])
  const client = await connectClient(t, gw)
  const bystander = () => defined(supervisor.instances().find(i => i.label === 'Test/bystander#1'), 'Test/bystander#1')
  const { threadId } = bystander()
  const calls = keepCalling(client)
  for (const [how, reason] of Object.entries(CASES)) {
    const restarted = once(supervisor, 'restart')
    const err = await rejection(client.invoke('Test/hostile', how, { timeout: 10_000 }))
    // its calls in flight are lost with it
    assert.ok(['FNBUS_WORKER_LOST', 'FNBUS_TIMEOUT'].includes(String(err.code)), `${how}: ${err.code}`)
    const [label, why] = await restarted
    assert.equal(label, 'Test/hostile#1')
    assert.match(why, reason, how)
    assert.equal(await client.invoke('Test/hostile', `back after ${how}`, { waitForWorker: 10_000 }), `back after ${how}`)
  }
  await calls.stop()
  assert.deepEqual(calls.tally.failed, [], 'no call of the bystander failed')
  assert.ok(calls.tally.ok > 20, `${calls.tally.ok} calls of the bystander`)
  assert.equal(bystander().restarts, 0)
  assert.equal(bystander().threadId, threadId)
  assert.equal(defined(supervisor.instances().find(i => i.label === 'Test/hostile#1'), 'Test/hostile#1').restarts, Object.keys(CASES).length)
})

test("a thread function's own FCClient invokes, publishes and subscribes as its function's identity, with no socket", async t => {
  const gw = await startGateway(t)
  await supervise(t, gw, [fn('Test', 'relay', join(FIXTURES, 'relay.cjs')), fn('Test', 'bystander', join(FIXTURES, 'hostile.cjs'))])
  const client = await connectClient(t, gw)
  assert.equal(await client.invoke('Test/relay', { op: 'invoke', fn: 'Test/bystander', payload: 'via the relay' }), 'via the relay')

  const seen = []
  await client.subscribe('relay/#', (topic, payload) => seen.push(`${topic} ${payload}`))
  assert.equal(await client.invoke('Test/relay', { op: 'publish', topic: 'relay/direct', payload: 'from the thread' }), 'published')
  await waitFor(() => seen.includes('relay/direct from the thread'), 5000, 'the thread\'s event')
  await client.publish('relay/in', 'ping')
  await waitFor(() => seen.includes('relay/out relayed ping'), 5000, 'the thread\'s subscription relaying an event')

  const identity = await client.invoke('Test/relay', { op: 'identity' })
  assert.ok(identity !== null && typeof identity === 'object' && 'clientId' in identity, `an identity, got ${JSON.stringify(identity)}`)
  const { clientId, ...rest } = identity
  assert.match(String(clientId), /^Test:relay\./)
  assert.deepEqual(rest, { username: 'Test/relay', pid: process.pid }, 'its identity, and it runs in the gateway\'s process')
  // its connections are the gateway's clients like any other, authenticated as the function
  const { workers } = defined((await gw.status()).functions.find(f => f.name === 'Test/relay'), 'Test/relay in the status')
  assert.match(workers[0].label, /^Test:relay\./)
})

test('the samples (Link IoT Edge and Greengrass) give the same results as threads and as processes', async t => {
  const sample = name => join(ROOT, 'examples', name)
  const results = {}
  for (const isolation of /** @type {const} */ (['thread', 'process'])) {
    const gw = await startGateway(t)
    gw.bus.setFunctionOptions('Greengrass/invokee', { lambdaName: 'invokee' })
    const { output } = await supervise(t, gw, [
      fn('EdgeFC', 'helloworld', sample('helloworld.cjs'), { isolation }),
      fn('EdgeFC', 'invoker', sample('invoker.cjs'), { isolation }),
      fn('Greengrass', 'helloworld', sample('greengrass-helloworld.cjs'), { isolation }),
      fn('Greengrass', 'invokee', sample('greengrass-invokee.cjs'), { isolation }),
      fn('Greengrass', 'invoker', sample('greengrass-invoker.cjs'), { isolation }),
    ])
    const client = await connectClient(t, gw)
    const greetings = []
    await client.subscribe('hello/world', (_topic, payload) => greetings.push(JSON.parse(payload.toString()).message.replace(/platform \S+$/, 'platform …')))
    const hello = await client.invokeFunction({ serviceName: 'EdgeFC', functionName: 'helloworld', payload: 'hi' })
    const invoker = await client.invokeFunction({ serviceName: 'EdgeFC', functionName: 'invoker' })
    const invokee = await client.invoke('Greengrass/invokee', { message: 'direct' })
    await client.invoke('Greengrass/invoker', {})
    await waitFor(() => output().includes('[Greengrass/invoker#1] invokee answered'), 10_000, 'the Greengrass invoker\'s answer')
    await waitFor(() => output().includes('[EdgeFC/invoker#1] Message from helloworld'), 10_000, 'the invoker\'s log')
    await waitFor(() => greetings.length > 0, 10_000, 'a greeting (every 5 s)')
    results[isolation] = {
      hello,
      invoker,
      invokee,
      invokerLog: output().split('\n').find(line => line.startsWith('[Greengrass/invoker#1] invokee answered')),
      greeting: greetings[0],
    }
  }
  assert.deepEqual(results.thread, results.process)
  assert.deepEqual(results.thread.hello, { statusCode: 200, payload: 'Message from helloworld' })
  assert.equal(results.thread.invokerLog, '[Greengrass/invoker#1] invokee answered {"StatusCode":200,"Payload":"{\\"result\\":\\"message\\",\\"received\\":{\\"message\\":\\"payload message\\"}}"}')
})

test('a thread that floods its control port is ended; one that posts past its connection\'s window loses that connection; the gateway serves on', async t => {
  const gw = await startGateway(t)
  const { supervisor } = await supervise(t, gw, [
    fn('Test', 'flooder', join(FIXTURES, 'flooder.cjs')),
    fn('Test', 'bystander', join(FIXTURES, 'hostile.cjs')),
  ])
  const client = await connectClient(t, gw)
  assert.equal(await client.invoke('Test/flooder', 'link', { timeout: 10_000 }), 'cut')
  assert.equal(defined(supervisor.instances().find(i => i.label === 'Test/flooder#1'), 'Test/flooder#1').restarts, 0)

  const restarted = once(supervisor, 'restart')
  const err = await rejection(client.invoke('Test/flooder', 'control', { timeout: 10_000 }))
  assert.ok(['FNBUS_WORKER_LOST', 'FNBUS_TIMEOUT'].includes(String(err.code)), err.code)
  const [label, reason] = await restarted
  assert.equal(label, 'Test/flooder#1')
  assert.match(reason, /^flooded its control port/)
  assert.equal(await client.invoke('Test/bystander', 'fine'), 'fine')
  assert.equal(await client.invoke('Test/flooder', 'again', { waitForWorker: 10_000 }), 'again')
})

test('a thread module that does not load is reported as a process\'s is; restart() replaces a thread with a new one', async t => {
  const gw = await startGateway(t)
  const output = new PassThrough()
  output.resume()
  const supervisor = new Supervisor([fn('Test', 'broken', join(FIXTURES, 'broken.cjs'))], {
    url: gw.url, output, ...FAST, threads: new ThreadHost({ connect: stream => gw.bus.handle(stream) }),
  })
  t.after(() => supervisor.stop())
  const failed = once(supervisor, 'firstLoadFailed')
  supervisor.start()
  const [label, reason] = await failed
  assert.equal(label, 'Test/broken#1')
  assert.match(reason, /broken\.cjs: this module does not load$/)
  const lastFailure = await waitFor(() => supervisor.instances()[0].lastFailure, 5000, 'the instance\'s last failure')
  assert.match(lastFailure, /this module does not load/)
  await supervisor.stop()

  const { supervisor: replaced } = await supervise(t, gw, [fn('Test', 'bystander', join(FIXTURES, 'hostile.cjs'))])
  const before = replaced.instances()[0]
  assert.equal(before.isolation, 'thread')
  assert.equal(before.pid, process.pid)
  const heap = await waitFor(() => replaced.instances().find(i => i.heapUsedBytes !== undefined), 5000, 'a heartbeat')
  assert.ok(defined(heap.heapLimitBytes, 'a heap limit') > defined(heap.heapUsedBytes))
  const again = once(replaced, 'ready')
  assert.equal(replaced.restart('Test/bystander'), 1)
  await again
  assert.notEqual(replaced.instances()[0].threadId, before.threadId)
  const client = await connectClient(t, gw)
  assert.equal(await client.invoke('Test/bystander', 'new thread', { waitForWorker: 5000 }), 'new thread')
})

test('status, fnbus status and the metrics show each instance\'s isolation, host pid and heap', async t => {
  const gw = await startGateway(t, { http: { port: 0 }, plugins: { metrics: { processMetrics: false } } })
  await supervise(t, gw, [
    fn('Test', 'bystander', join(FIXTURES, 'hostile.cjs'), { memoryLimitMb: 48 }),
    fn('Test', 'proc', join(FIXTURES, 'hostile.cjs'), { isolation: 'process' }),
  ])
  await waitFor(() => gw.instances().every(i => i.heapUsedBytes !== undefined), 5000, 'heartbeats')
  const status = await gw.status()
  const thread = defined(status.functions.find(f => f.name === 'Test/bystander'), 'Test/bystander in the status').instances[0]
  const proc = defined(status.functions.find(f => f.name === 'Test/proc'), 'Test/proc in the status').instances[0]
  assert.equal(thread.isolation, 'thread')
  assert.equal(thread.pid, process.pid)
  assert.equal(typeof thread.threadId, 'number')
  assert.equal(thread.rssBytes, undefined, 'a thread has no resident memory of its own')
  // its heap bound is its memoryLimitMb (young generation included), give or take V8's own rounding
  const heapLimit = defined(thread.heapLimitBytes, 'the thread\'s heap limit')
  assert.ok(heapLimit >= 40 * 1024 * 1024 && heapLimit <= 64 * 1024 * 1024, `heap limit ${heapLimit}`)
  assert.equal(proc.isolation, 'process')
  assert.notEqual(proc.pid, process.pid)
  assert.ok(defined(proc.rssBytes, 'the process\'s resident memory') > 0)

  const text = formatStatus(status)
  assert.match(text, new RegExp(`^Test/bystander#1 +thread +${process.pid}/${thread.threadId} +up +[\\d.]+/[\\d.]+ +- +0$`, 'm'))
  assert.match(text, new RegExp(`^Test/proc#1 +process +${proc.pid} +up +[\\d.]+/[\\d.]+ +[\\d.]+ +0$`, 'm'))

  const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text()
  assert.match(metrics, new RegExp(`^fnbus_instance_info\\{function="Test/bystander",instance="Test/bystander#1",isolation="thread",pid="${process.pid}",host=""\\} 1$`, 'm'))
  assert.match(metrics, /^fnbus_instance_info\{function="Test\/proc",instance="Test\/proc#1",isolation="process",pid="\d+",host=""\} 1$/m)
  assert.match(metrics, /^fnbus_instance_heap_used_bytes\{function="Test\/bystander",instance="Test\/bystander#1"\} \d+$/m)
  assert.match(metrics, /^fnbus_instance_heap_limit_bytes\{function="Test\/bystander",instance="Test\/bystander#1"\} \d+$/m)
})
