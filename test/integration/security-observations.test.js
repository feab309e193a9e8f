// The security branch's refusals as the operations branch observes them: every connection the authenticator, the
// frame guard or the connection limit refuses is a `rejected` observation, every connection cut for bad bytes a
// `frameDropped` one, each with its reason, and the metrics plugin counts them. A real gateway, real sockets.
import assert from 'node:assert/strict'
import test from 'node:test'
import mqtt from 'mqtt'
import { hashSecret } from '../../dist/security/credentials.js'
import { startGateway, waitFor } from '../helpers.js'
import { connectFrame, publishFrame, rawSocket } from '../mqtt-frames.js'

const IDENTITIES = { alice: { hash: await hashSecret('alice-secret') } }

/** A raw MQTT.js connection that does not retry: resolves with the CONNACK's return code (0: accepted). */
function rawConnect (t, url, options = {}) {
  const client = mqtt.connect(url, { reconnectPeriod: 0, protocolVersion: 4, ...options })
  t.after(() => client.end(true))
  return new Promise(resolve => {
    client.once('connect', () => resolve(0))
    client.once('error', err => resolve(/** @type {{ code?: number }} */ (err).code))
  })
}

/** The metrics plugin's samples: { name, labels, value }. */
async function scrape (gw) {
  const response = await fetch(`${gw.httpUrl}/metrics`)
  assert.equal(response.status, 200)
  const samples = []
  for (const line of (await response.text()).split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (line.startsWith('#') || match === null) continue
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, key, value]) => [key, value]))
    samples.push({ name: match[1], labels, value: Number(match[3]) })
  }
  return samples
}

function counted (samples, name, reason) {
  return samples.find(s => s.name === name && s.labels.reason === reason)?.value ?? 0
}

function observing (gw) {
  /** @type {{ rejected: string[], frameDropped: string[] }} */
  const seen = { rejected: [], frameDropped: [] }
  gw.events.on('rejected', o => seen.rejected.push(o.reason))
  gw.events.on('frameDropped', o => seen.frameDropped.push(o.reason))
  return seen
}

test('the authenticator\'s refusals are rejected observations with their reason, counted by the metrics plugin', async t => {
  const gw = await startGateway(t, { identities: IDENTITIES, http: { port: 0 }, plugins: { metrics: { processMetrics: false } } })
  const seen = observing(gw)
  assert.equal(await rawConnect(t, gw.url, { clientId: 'alice.a', username: 'alice', password: 'wrong' }), 4)
  assert.equal(await rawConnect(t, gw.url, { clientId: 'mallory', username: 'mallory', password: 'x' }), 4)
  // the client-id rule: a client id names one topic level, so it holds no space, /, + or #
  assert.equal(await rawConnect(t, gw.url, { clientId: 'a b', username: 'alice', password: 'alice-secret' }), 2)
  // identities exist, so anonymous clients are refused
  assert.equal(await rawConnect(t, gw.url, { clientId: 'anon' }), 5)
  assert.equal(await rawConnect(t, gw.url, { clientId: 'alice.ok', username: 'alice', password: 'alice-secret' }), 0)
  await waitFor(() => seen.rejected.length === 4, 5000, 'four refusals observed')
  assert.deepEqual(seen.rejected.sort(), ['bad_credentials', 'bad_credentials', 'identifier_rejected', 'not_authorized'])
  const samples = await scrape(gw)
  assert.equal(counted(samples, 'fnbus_rejected_connections_total', 'bad_credentials'), 2)
  assert.equal(counted(samples, 'fnbus_rejected_connections_total', 'identifier_rejected'), 1)
  assert.equal(counted(samples, 'fnbus_rejected_connections_total', 'not_authorized'), 1)
})

test('connections over limits.maxConnections and CONNECTs that never come are rejected observations', async t => {
  const gw = await startGateway(t, { limits: { maxConnections: 2, connectTimeoutMs: 200 }, http: { port: 0 }, plugins: { metrics: { processMetrics: false } } })
  const seen = observing(gw)
  // two connections that never send a CONNECT: the guard cuts each after connectTimeoutMs
  const first = await rawSocket(t, gw.port)
  const second = await rawSocket(t, gw.port)
  // a third while both are open: over the limit, closed at once
  const third = await rawSocket(t, gw.port)
  await third.closed
  await first.closed
  await second.closed
  await waitFor(() => seen.rejected.length === 3, 5000, 'three refusals observed')
  assert.deepEqual(seen.rejected.sort(), ['connect_timeout', 'connect_timeout', 'max_connections'])
  assert.deepEqual(seen.frameDropped, [])
  const samples = await scrape(gw)
  assert.equal(counted(samples, 'fnbus_rejected_connections_total', 'connect_timeout'), 2)
  assert.equal(counted(samples, 'fnbus_rejected_connections_total', 'max_connections'), 1)
})

test('bad bytes: a client id refused with CONNACK 2 is a rejected connection; a bad topic, a dropped frame; both counted', async t => {
  const gw = await startGateway(t, { http: { port: 0 }, plugins: { metrics: { processMetrics: false } } })
  const seen = observing(gw)
  const badId = await rawSocket(t, gw.port)
  badId.socket.write(connectFrame({ clientId: 'a\u001bb' }))
  await badId.closed
  assert.deepEqual([...badId.received()], [0x20, 2, 0, 2], 'CONNACK identifier rejected')
  const badTopic = await rawSocket(t, gw.port)
  badTopic.socket.write(connectFrame({ clientId: 'raw-topic' }))
  await waitFor(() => badTopic.received().length >= 4, 5000, 'the CONNACK')
  badTopic.socket.write(publishFrame(Buffer.from([0x61, 0x2f, 0xc3]), 'x'))
  await badTopic.closed
  const outOfOrder = await rawSocket(t, gw.port)
  outOfOrder.socket.write(publishFrame('a/b', 'x'))
  await outOfOrder.closed
  await waitFor(() => seen.rejected.length + seen.frameDropped.length === 3, 5000, 'three observations')
  assert.deepEqual(seen.rejected, ['identifier_rejected'])
  assert.deepEqual(seen.frameDropped.sort(), ['bad_string', 'protocol_violation'])
  const samples = await scrape(gw)
  assert.equal(counted(samples, 'fnbus_rejected_connections_total', 'identifier_rejected'), 1)
  assert.equal(counted(samples, 'fnbus_dropped_frames_total', 'bad_string'), 1)
  assert.equal(counted(samples, 'fnbus_dropped_frames_total', 'protocol_violation'), 1)
})
