// Stored invocations under many callers and made-up names: keys are each identity's own, only the caller or an
// operator cancels, the store has a total bound, and a name nobody serves costs no lane, timer or table entry.
import assert from 'node:assert/strict'
import test from 'node:test'
import mqtt from 'mqtt'
import { packr } from '../../dist/protocol/codec.js'
import { decodeMessage } from '../../dist/protocol/index.js'
import { hashSecret } from '../../dist/security/credentials.js'
import { connectClient, rejection, startGateway, waitFor } from '../helpers.js'

const NAMES = ['alice', 'bob', 'operator']
const identities = Object.fromEntries(await Promise.all(NAMES.map(async name =>
  [name, { hash: await hashSecret(`${name}-secret`, { ln: 10, r: 8, p: 1 }) }])))
const as = name => ({ username: name, password: `${name}-secret` })
const POLICY = [
  { identity: 'alice', allow: { invoke: ['Orders/*'] } },
  { identity: 'bob', allow: { invoke: ['Orders/*'] } },
  { identity: 'operator', allow: { manage: ['Orders/*'] } },
]

test("idempotency keys are each identity's own: another's key neither matches nor reveals its invocation", async t => {
  const gw = await startGateway(t, { identities, policy: POLICY })
  const alice = await connectClient(t, gw, as('alice'))
  const bob = await connectClient(t, gw, as('bob'))
  const first = await alice.invokeAsync('Orders/place', 'from alice', { idempotencyKey: 'order-1' })
  const again = await alice.invokeAsync('Orders/place', 'from alice', { idempotencyKey: 'order-1' })
  assert.equal(again.invocationId, first.invocationId, 'the same identity repeating itself stores once')
  const bobs = await bob.invokeAsync('Orders/place', 'from bob', { idempotencyKey: 'order-1' })
  assert.notEqual(bobs.invocationId, first.invocationId, "bob's key is not alice's")
  const seen = []
  await gw.serve('Orders/place', async event => { seen.push(event) })
  await waitFor(() => seen.length === 2, 3000, 'both deliveries')
  assert.deepEqual(seen.sort(), ['from alice', 'from bob'])
})

test('only the identity that made a waiting invocation, or one that manages its function, may cancel it', async t => {
  const gw = await startGateway(t, { identities, policy: POLICY })
  const alice = await connectClient(t, gw, as('alice'))
  const bob = await connectClient(t, gw, as('bob'))
  const operator = await connectClient(t, gw, as('operator'))
  const mine = await alice.invokeAsync('Orders/later', 'a')
  const other = await alice.invokeAsync('Orders/later', 'b')
  assert.equal((await rejection(bob.cancel(mine.invocationId))).code, 'FNBUS_NOT_AUTHORIZED', 'bob may invoke Orders/*, but this is not his')
  await alice.cancel(mine.invocationId)
  await operator.cancel(other.invocationId)
  assert.equal(gw.bus.queueStats('Orders/later')[0]?.pending ?? 0, 0, 'both cancelled')
})

test('limits.maxStoredTotal bounds waiting invocations of all functions together (FNBUS_QUEUE_FULL)', async t => {
  const gw = await startGateway(t, { limits: { maxStoredTotal: 20 } })
  const caller = await connectClient(t, gw)
  const outcomes = await Promise.all(Array.from({ length: 30 }, (_, i) =>
    caller.invokeAsync(`Made/up${i}`, i).then(() => 'stored', err => err.code)))
  assert.equal(outcomes.filter(o => o === 'stored').length, 20)
  assert.equal(outcomes.filter(o => o === 'FNBUS_QUEUE_FULL').length, 10)
  // delivered ones make room again
  const seen = []
  await gw.serve('Made/up0', async event => { seen.push(event) })
  await waitFor(() => seen.length === 1, 3000, 'a delivery')
  await waitFor(async () => await caller.invokeAsync('Made/again', 'x').then(() => true, () => false), 5000, 'room in the store')
})

test('a name nobody serves gets no dispatcher entry or lane for its stored work until a worker registers', async t => {
  const gw = await startGateway(t)
  const caller = await connectClient(t, gw)
  for (let i = 0; i < 300; i++) await caller.invokeAsync(`Nobody/f${i}`, i)
  assert.equal(gw.bus.dispatcher.trackedFunctions, 0)
  const seen = []
  const served = await gw.serve('Nobody/f7', async event => { seen.push(event) })
  await waitFor(() => seen.length === 1, 3000, 'the stored invocation, delivered once a worker came')
  assert.deepEqual(seen, [7])
  await served.close()
  await waitFor(() => gw.bus.dispatcher.trackedFunctions === 0, 3000, 'the entry gone with its worker')
})

test('a worker that answers FNBUS_SHUTTING_DOWN while the gateway runs has failed an attempt: the invocation is retried, not parked', async t => {
  const gw = await startGateway(t)
  gw.bus.setFunctionOptions('Flaky/fn', { async: { retryDelayMs: 10 } })
  // a worker in another language, answering its first invocation with the code
  const raw = await mqtt.connectAsync(gw.url, { clientId: 'flaky-worker', reconnectPeriod: 0 })
  t.after(() => raw.endAsync(true))
  await raw.subscribeAsync('$fn/in/flaky-worker')
  let attempts = 0
  raw.on('message', (_topic, payload) => {
    for (const env of decodeMessage(payload)) {
      if (env.t !== 'invoke') continue
      attempts++
      const answer = attempts === 1 ? { code: 'FNBUS_SHUTTING_DOWN', msg: 'stopping' } : { pk: 1, p: Buffer.from('done') }
      raw.publish('$fn/up', packr.pack({ v: 1, t: 'result', id: env.id, ...answer }))
    }
  })
  raw.publish('$fn/up', packr.pack({ v: 1, t: 'reg', id: 1, fn: 'Flaky/fn', conc: 1 }))
  const caller = await connectClient(t, gw)
  await caller.invokeAsync('Flaky/fn', 'x')
  await waitFor(() => attempts === 2, 5000, 'a second attempt')
  await waitFor(() => (gw.bus.queueStats('Flaky/fn')[0]?.pending ?? 0) === 0, 3000, 'completion')
})
