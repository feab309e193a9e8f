// Async calls in a cluster, stored in JetStream (a real nats-server: test/e2e/nats-cluster.js) by the gateway that
// takes them and delivered by whichever gateway has a worker: acceptance, delivery once each, retries and dead
// letters, the queue commands answering alike from every gateway, idempotency keys, cancel, bounds, and refusal
// without NATS. Gateways killed mid-delivery: test/e2e/cluster-async.test.js.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { natsCluster } from '../e2e/nats-cluster.js'
import { defined, rejection, startGateway, tempDir, waitFor } from '../helpers.js'

/**
 * A single-node NATS with JetStream and gateways on it, their Async store ready.
 * @param {import('node:test').TestContext} t
 * @param {string[]} names
 * @param {(name: string) => object} [extra]
 */
async function cluster (t, names, extra = () => ({})) {
  const nats = await natsCluster(t, await tempDir(t), { nodes: 1 })
  const gateways = []
  for (const name of names) {
    gateways.push(await startGateway(t, { cluster: { servers: nats.servers, name, ...nats.credentials, heartbeatMs: 200 }, ...extra(name) }))
  }
  for (const gw of gateways) await waitFor(() => gw.cluster?.()?.store.state === 'ready', 15_000, 'the JetStream store')
  return { nats, gateways }
}

test('accepted on one gateway, delivered once each by another\'s worker; retries, dead letters and the queue commands alike everywhere', async t => {
  const { gateways: [a, b] } = await cluster(t, ['a', 'b'])
  const a_ = defined(a)
  const b_ = defined(b)
  for (const gw of [a_, b_]) gw.bus.setFunctionOptions('S/flaky', { async: { maxRetries: 2, retryDelayMs: 20 } })
  /** @type {Map<string, number>} */
  const runs = new Map()
  await b_.serve('S/work', async (/** @type {any} */ event, /** @type {any} */ context) => {
    runs.set(context.requestId, (runs.get(context.requestId) ?? 0) + 1)
    return event
  })
  let flaky = 0
  await b_.serve('S/flaky', async () => { flaky++; throw new Error('not today') })
  await waitFor(() => a_.cluster?.()?.members.some(m => m.functions.includes('S/work')))

  const ids = []
  for (let i = 0; i < 50; i++) ids.push((await a_.bus.invokeAsync('S/work', { i })).invocationId)
  assert.equal(new Set(ids).size, 50)
  assert.ok(ids.every(id => /^js-\d+$/.test(id)), ids.join(' '))
  await waitFor(() => runs.size === 50, 10_000, 'the 50 deliveries')
  assert.ok([...runs.keys()].every(id => ids.includes(id)))
  assert.ok([...runs.values()].every(n => n === 1), 'each delivered once')

  // 1 + 2 retries, then a dead letter, listed alike by both gateways
  const { invocationId: doomed } = await a_.bus.invokeAsync('S/flaky', 'x')
  await waitFor(() => a_.bus.queueStats('S/flaky')[0]?.dead === 1 && b_.bus.queueStats('S/flaky')[0]?.dead === 1, 10_000, 'the dead letter counted')
  assert.equal(flaky, 3)
  for (const gw of [a_, b_]) {
    const [dead] = await gw.bus.listDead('S/flaky', 10)
    assert.equal(defined(dead).id, doomed)
    assert.equal(defined(dead).attempts, 3)
    assert.equal(defined(dead).lastError?.code, 'FNBUS_FUNCTION_ERROR')
  }
  // retried from the other gateway: delivered again (and dead again), then purged
  assert.equal(await a_.bus.retryDead({ id: doomed }), 1)
  await waitFor(() => flaky === 6, 10_000, 'the retried invocation to run again')
  await waitFor(async () => (await b_.bus.listDead('S/flaky', 10)).length === 1, 10_000, 'dead again')
  assert.equal(await b_.bus.purgeDead('S/flaky'), 1)
  assert.deepEqual(await a_.bus.listDead(undefined, 10), [])
})

test('idempotency keys hold cluster-wide, per caller; cancel from any gateway; nothing accepted without the store', async t => {
  const { gateways: [a, b] } = await cluster(t, ['a', 'b'])
  const a_ = defined(a)
  const b_ = defined(b)
  const first = await a_.bus.invokeAsync('S/later', 'one', { idempotencyKey: 'order-1' })
  const again = await b_.bus.invokeAsync('S/later', 'one again', { idempotencyKey: 'order-1' })
  assert.equal(again.invocationId, first.invocationId)
  const other = await b_.bus.invokeAsync('S/later', 'one', { idempotencyKey: 'order-1', identity: 'someone-else' })
  assert.notEqual(other.invocationId, first.invocationId)
  await waitFor(() => a_.bus.queueStats('S/later')[0]?.pending === 2 && b_.bus.queueStats('S/later')[0]?.pending === 2, 5000, 'both counted as waiting')

  // nobody serves S/later: cancelled from the other gateway, gone for both
  await b_.bus.cancel(first.invocationId)
  assert.equal((await rejection(a_.bus.cancel(first.invocationId))).code, 'FNBUS_INVOCATION_NOT_FOUND')
  assert.equal((await rejection(a_.bus.cancel('js-999999'))).code, 'FNBUS_INVOCATION_NOT_FOUND')
  await waitFor(() => a_.bus.queueStats('S/later')[0]?.pending === 1, 5000, 'one left')

  // a worker that comes later gets what waits
  const got = []
  await a_.serve('S/later', async (/** @type {unknown} */ event) => { got.push(event) })
  await waitFor(() => got.length === 1, 5000, 'the waiting invocation')
  assert.deepEqual(got, ['one'])
})

test('a function\'s maxStored bounds its waiting invocations cluster-wide: FNBUS_QUEUE_FULL', async t => {
  const { gateways: [a, b] } = await cluster(t, ['a', 'b'])
  for (const gw of [defined(a), defined(b)]) gw.bus.setFunctionOptions('S/bounded', { async: { maxStored: 5 } })
  for (let i = 0; i < 5; i++) await defined(i % 2 === 0 ? a : b).bus.invokeAsync('S/bounded', i)
  await waitFor(() => defined(b).bus.queueStats('S/bounded')[0]?.pending === 5, 5000, 'the counts')
  assert.equal((await rejection(defined(b).bus.invokeAsync('S/bounded', 'six'))).code, 'FNBUS_QUEUE_FULL')
})

test('without NATS an Async call is refused FNBUS_STORE_FAILURE at once, and accepted again once it is back', async t => {
  const { nats, gateways: [a] } = await cluster(t, ['a'])
  const a_ = defined(a)
  await defined(nats.nodes[0]).kill()
  await waitFor(() => a_.cluster?.()?.state !== 'connected', 10_000, 'the gateway to notice')
  const started = Date.now()
  const refused = await rejection(a_.bus.invokeAsync('S/x', 1))
  assert.equal(refused.code, 'FNBUS_STORE_FAILURE')
  assert.ok(Date.now() - started < 500)
  await defined(nats.nodes[0]).start()
  await waitFor(async () => (await a_.bus.invokeAsync('S/x', 2).then(() => true, () => false)), 20_000, 'accepted again')
})

test('invocations a gateway stored before it joined a cluster move to JetStream, and a worker of another gateway gets them', async t => {
  const nats = await natsCluster(t, await tempDir(t), { nodes: 1 })
  const dataDir = await tempDir(t)
  const alone = await startGateway(t, { dataDir })
  for (let i = 0; i < 3; i++) await alone.bus.invokeAsync('S/kept', i)
  await alone.close()
  const joined = await startGateway(t, { dataDir, cluster: { servers: nats.servers, name: 'a', ...nats.credentials, heartbeatMs: 200 } })
  const other = await startGateway(t, { cluster: { servers: nats.servers, name: 'b', ...nats.credentials, heartbeatMs: 200 } })
  /** @type {unknown[]} */
  const got = []
  await other.serve('S/kept', async (/** @type {unknown} */ event) => { got.push(event) })
  await waitFor(() => got.length === 3, 15_000, 'the three moved invocations')
  assert.deepEqual(got.sort(), [0, 1, 2])
  await waitFor(() => joined.bus.queueStats('S/kept').every(q => q.pending === 0), 5000, 'nothing left waiting')
})
