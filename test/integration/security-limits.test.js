// The limits of limits.*: topics, subscriptions, connections, half-open CONNECTs, calls in flight, invoke rate.
import assert from 'node:assert/strict'
import test from 'node:test'
import mqtt from 'mqtt'
import { hashSecret } from '../../dist/security/credentials.js'
import { connectClient, defined, rejection, startGateway, waitFor } from '../helpers.js'
import { connectFrame, rawSocket, within } from '../mqtt-frames.js'

async function rawClient (t, gw, options = {}) {
  const client = await mqtt.connectAsync(gw.url, { reconnectPeriod: 0, ...options })
  t.after(() => client.endAsync(true))
  return client
}

async function subscribeRefused (client, filter) {
  const err = await client.subscribeAsync(filter).then(() => null, e => e)
  return err !== null && err.name === 'ErrorWithSubackPacket'
}

test('topics: a filter over maxTopicBytes or maxTopicLevels is refused; such a PUBLISH closes the connection', async t => {
  const gw = await startGateway(t, { limits: { maxTopicBytes: 64, maxTopicLevels: 4 } })
  const client = await rawClient(t, gw)
  assert.ok(await subscribeRefused(client, 'x'.repeat(65)))
  assert.ok(await subscribeRefused(client, 'a/b/c/d/e'))
  await client.subscribeAsync('a/b/c/#')
  await client.subscribeAsync('é'.repeat(32), { qos: 0 }) // 64 bytes exactly
  const seen = []
  await gw.subscribe('#', topic => seen.push(topic))
  const closed = new Promise(resolve => client.once('close', () => resolve(undefined)))
  client.publish('a/b/c/d/e', 'too deep')
  assert.ok(await within(closed, 3000))
  const second = await rawClient(t, gw)
  const secondClosed = new Promise(resolve => second.once('close', () => resolve(undefined)))
  second.publish('y'.repeat(65), 'too long')
  assert.ok(await within(secondClosed, 3000))
  assert.deepEqual(seen, [])
})

test('an event payload over maxPayloadBytes (but within the frame) closes the publisher\'s connection', async t => {
  const gw = await startGateway(t, { limits: { maxPayloadBytes: 1000 } })
  const seen = []
  await gw.subscribe('#', topic => seen.push(topic))
  const client = await rawClient(t, gw)
  await client.publishAsync('ok', Buffer.alloc(1000))
  const closed = new Promise(resolve => client.once('close', () => resolve(undefined)))
  client.publish('big', Buffer.alloc(1001))
  assert.ok(await within(closed, 3000))
  assert.deepEqual(seen, ['ok'])
})

test('subscriptions per connection are bounded; unsubscribing frees a place', async t => {
  const gw = await startGateway(t, { limits: { maxSubscriptionsPerClient: 3 } })
  const client = await rawClient(t, gw, { clientId: 'subscriber' })
  await client.subscribeAsync(['s/1', 's/2', 's/3'])
  assert.ok(await subscribeRefused(client, 's/4'))
  await client.subscribeAsync('s/2') // the same filter again is not one more
  await client.unsubscribeAsync('s/1')
  await client.subscribeAsync('s/4')
  assert.ok(await subscribeRefused(client, 's/5'))
  assert.ok(client.connected)
})

test('connections beyond maxConnections are closed at once; a freed place is taken again', async t => {
  const gw = await startGateway(t, { limits: { maxConnections: 2 } })
  await gw.serve('Svc/ping', async () => 'pong')
  const first = await connectClient(t, gw)
  const second = await rawClient(t, gw)
  const third = await rawSocket(t, gw.port)
  assert.ok(await within(third.closed, 3000), 'the third connection was closed')
  assert.equal(gw.bus.connections, 2)
  assert.equal(await first.invoke('Svc/ping'), 'pong')
  await second.endAsync()
  await waitFor(() => gw.bus.connections === 1, 2000, 'the place freed')
  const again = await rawClient(t, gw)
  assert.ok(again.connected)
})

test('a connection that does not complete its CONNECT within connectTimeoutMs is cut', async t => {
  const gw = await startGateway(t, { limits: { connectTimeoutMs: 300 } })
  const silent = await rawSocket(t, gw.port)
  const half = await rawSocket(t, gw.port)
  half.socket.write(connectFrame({ clientId: 'half-open' }).subarray(0, 10))
  const started = Date.now()
  assert.ok(await within(silent.closed, 3000), 'silent connection cut')
  assert.ok(await within(half.closed, 3000), 'half-open CONNECT cut')
  assert.ok(Date.now() - started < 3000)
  await waitFor(() => gw.bus.connections === 0, 2000, 'no connection left')
  // a prompt client is unaffected, and stays past the timeout
  const prompt = await rawClient(t, gw)
  await new Promise(resolve => setTimeout(resolve, 500))
  assert.ok(prompt.connected)
})

test('calls in flight per connection: one more than maxInFlightPerClient is FNBUS_RATE_LIMITED', async t => {
  const gw = await startGateway(t, { limits: { maxInFlightPerClient: 2 } })
  /** @type {((value?: unknown) => void) | undefined} */
  let release
  const gate = new Promise(resolve => { release = resolve })
  await gw.serve('Svc/slow', async () => { await gate; return 'done' }, { concurrency: 10 })
  const caller = await connectClient(t, gw)
  const first = caller.invoke('Svc/slow')
  const second = caller.invoke('Svc/slow')
  await waitFor(() => gw.stats().inFlight === 2, 2000, 'two calls running')
  const third = await rejection(caller.invoke('Svc/slow'))
  assert.equal(third.code, 'FNBUS_RATE_LIMITED')
  assert.equal(third.retryable, true)
  const other = await connectClient(t, gw)
  const fromOther = other.invoke('Svc/slow')
  defined(release)()
  assert.deepEqual(await Promise.all([first, second, fromOther]), ['done', 'done', 'done'])
  assert.equal(await caller.invoke('Svc/slow'), 'done', 'places freed as answers arrive')
})

test('invoke rate per identity: the bucket is shared by its connections and refills', async t => {
  const identities = { meter: { hash: await hashSecret('meter-secret', { ln: 10, r: 8, p: 1 }) } }
  const gw = await startGateway(t, { identities, allowAnonymous: true, limits: { invokeRatePerSec: 5, invokeBurst: 4 } })
  await gw.serve('Svc/ping', async () => 'pong')
  const a = await connectClient(t, gw, { username: 'meter', password: 'meter-secret' })
  const b = await connectClient(t, gw, { username: 'meter', password: 'meter-secret' })
  const results = await Promise.allSettled([a, b, a, b, a, b].map(client => client.invoke('Svc/ping')))
  const limited = results.filter(r => r.status === 'rejected')
  assert.equal(results.length - limited.length, 4, 'the burst')
  assert.ok(limited.every(r => r.reason.code === 'FNBUS_RATE_LIMITED'), 'the rest are refused with a code')
  const anonymous = await connectClient(t, gw)
  assert.equal(await anonymous.invoke('Svc/ping'), 'pong', 'another identity has its own bucket')
  assert.equal(await gw.invoke('Svc/ping'), 'pong', "the gateway's own calls are not limited")
  await new Promise(resolve => setTimeout(resolve, 450)) // two tokens at 5/s
  assert.equal(await a.invoke('Svc/ping'), 'pong', 'refilled')
})

test('new limits are validated and named', async () => {
  const { normalizeBusOptions } = await import('../../dist/options.js')
  // the ceilings are the schema's: one message form for every out-of-range limit
  assert.throws(() => normalizeBusOptions({ limits: { maxTopicLevels: 101 } }), /limits.maxTopicLevels must be an integer between 1 and 100, got 101/)
  assert.throws(() => normalizeBusOptions({ limits: { maxTopicBytes: 70_000 } }), /limits.maxTopicBytes must be an integer between 1 and 65535, got 70000/)
  assert.throws(() => normalizeBusOptions({ limits: { maxConnections: 0 } }), /limits.maxConnections must be an integer ≥ 1/)
  assert.throws(() => normalizeBusOptions({ limits: { invokeRatePerSec: -1 } }), /limits.invokeRatePerSec/)
  const { limits } = normalizeBusOptions({ limits: { invokeRatePerSec: 100 } })
  assert.equal(limits.invokeBurst, 100, 'the burst defaults to one second of the rate')
})
