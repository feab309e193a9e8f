// A subscriber gets every QoS 1 message however QoS 0, QoS 1 and retained messages interleave. aedes numbers a
// message when it is published and gives a connection a message only if its number is above the last it got
// (lib/client.js, `dedupe`); a QoS 1 or retained message reaches subscribers after its persistence calls, so one
// published before a QoS 0 message could reach them after it and be dropped (src/broker/emit-order.ts).
import assert from 'node:assert/strict'
import test from 'node:test'
import mqtt from 'mqtt'
import { startGateway, tempDir, waitFor } from '../helpers.js'

/** Messages each test publishes, a quarter of each kind: enough that the race shows every run without the fix. */
const COUNT = 4000

async function mqttClient (t, url, options = {}) {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, ...options })
  t.after(() => client.endAsync(true))
  return client
}

/** The `i`th message: its topic and options, in turn QoS 1, QoS 0, QoS 1 retained, QoS 0 retained. */
function kindOf (i) {
  switch (i % 4) {
    case 0: return { topic: `o/q1/${i % 16}`, qos: /** @type {const} */ (1), retain: false }
    case 1: return { topic: `o/q0/${i % 16}`, qos: /** @type {const} */ (0), retain: false }
    case 2: return { topic: `o/r1/${i % 8}`, qos: /** @type {const} */ (1), retain: true }
    default: return { topic: `o/r0/${i % 8}`, qos: /** @type {const} */ (0), retain: true }
  }
}

/**
 * Publishes COUNT messages, numbered in their payload, 500 at a time without waiting between them (MQTT.js adds a
 * listener per message waiting for its socket); resolves once all are sent.
 */
async function publishInterleaved (publisher) {
  for (let start = 0; start < COUNT; start += 500) {
    const sent = []
    for (let i = start; i < Math.min(start + 500, COUNT); i++) {
      const { topic, qos, retain } = kindOf(i)
      sent.push(publisher.publishAsync(topic, String(i), { qos, retain }))
    }
    await Promise.all(sent)
  }
}

const ALL = Array.from({ length: COUNT }, (_, i) => i)
/** The numbers of the QoS 1 messages published. */
const QOS1 = ALL.filter(i => kindOf(i).qos === 1)

/** Which of `expected` are not in `got`, counted by kind, for the failure message. */
function missingOf (expected, got) {
  const seen = new Set(got)
  const missing = expected.filter(n => !seen.has(n))
  const byKind = {}
  for (const n of missing) {
    const { qos, retain } = kindOf(n)
    const kind = `QoS ${qos}${retain ? ' retained' : ''}`
    byKind[kind] = (byKind[kind] ?? 0) + 1
  }
  return { missing, byKind }
}

/** Collects the numbers `subscriber` receives, QoS 1 ones apart. */
function collect (subscriber) {
  const all = []
  const qos1 = []
  subscriber.on('message', (_topic, payload, packet) => {
    const n = Number(payload.toString())
    all.push(n)
    if (packet.qos === 1) qos1.push(n)
  })
  return { all, qos1 }
}

test('a # subscriber at QoS 1 gets every message, QoS 0, QoS 1 and retained ones interleaved, in order within each QoS', async t => {
  const gw = await startGateway(t)
  const subscriber = await mqttClient(t, gw.url, { clientId: 'hash' })
  const got = collect(subscriber)
  await subscriber.subscribeAsync('#', { qos: 1 })
  const publisher = await mqttClient(t, gw.url, { clientId: 'mixed' })
  await publishInterleaved(publisher)
  // a subscriber this fast loses nothing, QoS 0 included (no bound is near)
  await waitFor(() => got.all.length >= COUNT, 10_000, 'every message').catch(() => {})
  const { missing, byKind } = missingOf(ALL, got.all)
  assert.deepEqual(byKind, {}, `${missing.length} of ${COUNT} messages never arrived`)
  // in the order published within each QoS (aedes routes a QoS 1 PUBLISH once its PUBACK is written, so QoS 0 ones
  // read with it may go first: MQTT orders messages per topic and QoS, [MQTT-4.6.0-6])
  assert.deepEqual(got.qos1, QOS1, 'the QoS 1 messages arrive in the order they were published')
  assert.deepEqual(got.all.filter(n => kindOf(n).qos === 0), ALL.filter(n => kindOf(n).qos === 0), 'the QoS 0 ones too')
})

test('a connected persistent session subscribed to # gets every QoS 1 message, and its stored queue empties as it acknowledges', async t => {
  const gw = await startGateway(t, { dataDir: await tempDir(t) })
  const subscriber = await mqttClient(t, gw.url, { clientId: 'kept', clean: false })
  const got = collect(subscriber)
  await subscriber.subscribeAsync('#', { qos: 1 })
  const publisher = await mqttClient(t, gw.url, { clientId: 'mixed' })
  await publishInterleaved(publisher)
  await waitFor(() => got.qos1.length >= QOS1.length, 20_000, 'the QoS 1 messages').catch(() => {})
  const { missing, byKind } = missingOf(QOS1, got.qos1)
  assert.deepEqual(byKind, {}, `${missing.length} of ${QOS1.length} QoS 1 messages never arrived`)
  assert.deepEqual([...got.qos1].sort((a, b) => a - b), QOS1, 'each QoS 1 message once')
  // each one stored for the session was found again when written (aedes keys it by its number) and cleared on PUBACK
  await waitFor(() => gw.brokerStorage().queuedMessages === 0, 10_000, 'the stored queue to empty')
  assert.ok(subscriber.connected, 'the session stayed connected')
})
