// The direct path between function threads (docs/isolation.md): real Workers of this process on a real gateway.
// Calls from one thread function to another go straight between their threads once the dispatcher leased the
// worker's slots, and still answer, time out, fail and count as calls through the gateway do.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import test from 'node:test'
import { fileURLToPath } from 'node:url'
import { MessageChannel } from 'node:worker_threads'
import { setStreamFactory } from '../../dist/client/streams.js'
import { FCClient } from '../../dist/index.js'
import { createPortDuplex } from '../../dist/util/port-duplex.js'
import { connectClient, defined, startGateway, waitFor } from '../helpers.js'
import { supervise } from '../supervise.js'
/** @typedef {import('../../dist/runtime/runner.js').SupervisedFunction} SupervisedFunction */

const FIXTURES = fileURLToPath(new URL('../fixtures/threads', import.meta.url))

/** @returns {SupervisedFunction} */
function fn (name, module, concurrency = 4) {
  return { service: 'Direct', function: name, name: `Direct/${name}`, module: join(FIXTURES, module), instances: 1, concurrency, env: {}, memoryLimitMb: undefined, isolation: 'thread' }
}

/** A gateway running the caller and the target as threads, and a client of it (a TCP client: not a thread). */
async function setup (t, { concurrency = 4, limits = {} } = {}) {
  const gw = await startGateway(t, { http: { port: 0 }, plugins: { metrics: { processMetrics: false } }, limits })
  await supervise(t, gw, [fn('caller', 'direct-caller.cjs'), fn('target', 'direct-target.cjs', concurrency)])
  const client = await connectClient(t, gw)
  /** @returns {Promise<{ answers: any[], errors: Record<string, number> }>} */
  const run = async event => /** @type {any} */ (await client.invoke('Direct/caller', { fn: 'Direct/target', ...event }, { timeout: 20_000 }))
  return { gw, client, run }
}

/** Sync outcomes of Direct/target counted so far. */
function targetOutcomes (gw) {
  return gw.invocations().find(tally => tally.function === 'Direct/target' && tally.type === 'Sync')?.outcomes ?? {}
}

test('calls from one thread function to another go direct after the first, with the same answers, request ids and tallies', async t => {
  /** @type {{ requestId: string, outcome: string, identity?: string }[]} */
  const seen = []
  const { gw, run } = await setup(t)
  gw.events.on('invocation', o => { if (o.function === 'Direct/target') seen.push(o) })
  const { answers, errors } = await run({ n: 200, payload: {} })
  assert.deepEqual(errors, {})
  assert.deepEqual(answers.map(a => a.i), Array.from({ length: 200 }, (_, i) => i))
  const rids = new Set(answers.map(a => a.rid))
  assert.equal(rids.size, 200, 'a request id of its own for each call')
  const direct = (await gw.status()).direct
  assert.ok(direct.calls >= 199 || (await waitFor(async () => (await gw.status()).direct.calls >= 199, 5000, 'the direct calls reported')), `direct calls: ${direct.calls}`)
  // the first went through the gateway and earned the lease; every call counts once, in the same tally
  await waitFor(() => targetOutcomes(gw).ok === 200, 5000, 'the tallies to count the 200 calls')
  await waitFor(() => seen.length === 200, 5000, 'an invocation observation for each call')
  assert.deepEqual(new Set(seen.map(o => o.requestId)), rids, 'the observers see the request ids the function saw')
  assert.ok(seen.every(o => o.outcome === 'ok' && o.identity === 'Direct/caller'), 'as the caller\'s identity')
  assert.equal((await gw.status()).direct.leases, 1)
  const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text()
  assert.match(metrics, /^fnbus_direct_leases 1$/m)
  assert.ok(Number(/^fnbus_direct_calls_total (\d+)$/m.exec(metrics)?.[1]) >= 199, 'the direct calls in the metrics')
  assert.match(metrics, /^fnbus_invocations_total\{function="Direct\/target",type="Sync",outcome="ok"\} 200$/m)
  assert.ok((await gw.status()).functions.find(f => f.name === 'Direct/target')?.workers[0]?.inFlight, 'the leased slots count as in flight')
})

test('on the direct path a deadline still holds, a function error is still one, and they count as such', async t => {
  const { gw, run } = await setup(t)
  await run({ n: 3, payload: {} })
  const started = performance.now()
  const slow = await run({ n: 2, payload: { op: 'sleep', ms: 3000 }, timeout: 150 })
  assert.deepEqual(slow.errors, { FNBUS_TIMEOUT: 2 })
  assert.ok(performance.now() - started < 2500, 'failed at the deadline, not when the function answered')
  const failed = await run({ n: 3, payload: { op: 'fail' } })
  assert.deepEqual(failed.errors, { FNBUS_FUNCTION_ERROR: 3 })
  await waitFor(() => targetOutcomes(gw).FNBUS_TIMEOUT === 2 && targetOutcomes(gw).handled === 3, 5000, `timeouts and function errors in the tally: ${JSON.stringify(targetOutcomes(gw))}`)
  assert.ok((await gw.status()).direct.calls >= 5)
})

test('a worker thread that dies mid-call fails the direct calls in flight with FNBUS_WORKER_LOST; its restart serves again', async t => {
  const { gw, run } = await setup(t)
  await run({ n: 5, payload: {} })
  const before = (await gw.status()).direct.calls
  const lost = await run({ n: 3, parallel: true, payload: { op: 'die' }, timeout: 10_000 })
  assert.deepEqual(lost.errors, { FNBUS_WORKER_LOST: 3 })
  await waitFor(async () => (await gw.status()).functions.find(f => f.name === 'Direct/target')?.workers.length === 1, 10_000, 'the restarted target')
  const again = await run({ n: 20, payload: {} })
  assert.deepEqual(again.errors, {})
  await waitFor(async () => (await gw.status()).direct.calls >= before + 19, 5000, 'direct calls to the restarted worker')
})

test('a lease gives its slots back as soon as another caller waits: a client is served while a thread calls flat out', async t => {
  const { gw, client, run } = await setup(t, { concurrency: 1 })
  const busy = run({ n: 3000, payload: {} })
  await waitFor(async () => (await gw.status()).direct.calls > 100, 10_000, 'the thread calling direct')
  for (let i = 0; i < 20; i++) {
    const started = performance.now()
    const answer = /** @type {any} */ (await client.invoke('Direct/target', { i }, { timeout: 5000 }))
    assert.equal(answer.i, i)
    assert.ok(performance.now() - started < 1000, `served in ${performance.now() - started} ms`)
  }
  const { errors } = await busy
  assert.deepEqual(errors, {})
  const target = defined((await gw.status()).functions.find(f => f.name === 'Direct/target'), 'Direct/target')
  assert.ok(target.workers[0] !== undefined && target.workers[0].inFlight <= 1, 'never more in flight than its concurrency')
})

test('a gateway that rate-limits calls grants no lease: every call passes the limit', async t => {
  const { gw, run } = await setup(t, { limits: { invokeRatePerSec: 100_000 } })
  const { errors } = await run({ n: 50, payload: {} })
  assert.deepEqual(errors, {})
  assert.deepEqual((await gw.status()).direct, { leases: 0, calls: 0 })
  await waitFor(() => targetOutcomes(gw).ok === 50, 5000, 'the calls in the tally')
})

test('leases go only to links whose client said it knows the direct path; a link that forges a side message is cut', async t => {
  const gw = await startGateway(t)
  /** @type {any[]} */
  const links = []
  let oldSdk = false
  // every client's connection a thread link in this thread: a MessageChannel, the gateway's end handed to the bus
  setStreamFactory(() => {
    const { port1, port2 } = new MessageChannel()
    gw.bus.handle(createPortDuplex(port1))
    const client = /** @type {any} */ (createPortDuplex(port2))
    if (oldSdk) {
      // an older copy of the SDK bundled by a function: its link never says it knows the direct path
      const post = client.postSide.bind(client)
      client.postSide = (/** @type {any} */ message, /** @type {any} */ transfer) => { if (message.t !== 'lease-ready') post(message, transfer) }
    }
    links.push(client)
    return client
  })
  t.after(() => setStreamFactory(undefined))
  const url = 'mqtt://in-memory.invalid:1883'
  const worker = new FCClient({ url })
  t.after(() => worker.close())
  await worker.serve('Mem/echo', value => value)
  oldSdk = true
  const old = new FCClient({ url })
  t.after(() => old.close())
  for (let i = 0; i < 20; i++) assert.equal(await old.invoke('Mem/echo', i), i)
  assert.deepEqual((await gw.status()).direct, { leases: 0, calls: 0 }, 'no lease for a client that did not say it knows the path')
  oldSdk = false
  const caller = new FCClient({ url })
  t.after(() => caller.close())
  for (let i = 0; i < 20; i++) assert.equal(await caller.invoke('Mem/echo', i), i)
  assert.equal((await gw.status()).direct.leases, 1, 'a lease for the one that did')
  await waitFor(async () => (await gw.status()).direct.calls >= 19, 5000, 'its direct calls reported')

  const disconnected = new Promise(resolve => caller.once('disconnect', resolve))
  links[2].postSide({ t: 'lease-end', id: 'not a lease' })
  await disconnected
  assert.equal((await gw.status()).direct.leases, 0, 'its lease ended with its connection')
  assert.equal(await worker.invoke('Mem/echo', 'still serving'), 'still serving')
})
