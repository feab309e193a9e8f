// The bridge's store-and-forward (docs/bridge.md#store-and-forward) against real Mosquitto brokers: an outage in the
// middle of a stream, a gateway SIGKILLed with a backlog, a queue bound hit.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { tempDir } from '../helpers.js'
import { freePort, terminate } from './cli.js'
import { bridgeStatus, client, gatewayWith, mosquitto } from './mosquitto.js'

/** The distinct payloads of `messages`, in the order they first arrived (at least once: a resend may repeat one). */
function firstArrivals (messages) {
  const seen = new Set()
  const out = []
  for (const m of messages) {
    const value = m.payload.toString()
    if (seen.has(value)) continue
    seen.add(value)
    out.push(value)
  }
  return out
}

const range = (from, to) => Array.from({ length: to - from }, (_, i) => String(from + i))

/** Publishes `count` QoS 1 messages `from`, `from + 1`, … on `topic`, at most `window` unacknowledged at once. */
async function stream (publisher, topic, from, count, window = 200) {
  let next = from
  const end = from + count
  await Promise.all(Array.from({ length: window }, async () => {
    while (next < end) await publisher.mqtt.publishAsync(topic, String(next++), { qos: 1 })
  }))
}

const BRIDGE = { name: 'cloud', out: [{ from: 'telemetry/#', to: 'sites/7/telemetry/#', qos: 1 }], reconnect: { minDelayMs: 50, maxDelayMs: 500 } }

test('an outage during a stream of 5,000 QoS 1 messages: all arrive, in order', async t => {
  const remote = await mosquitto(t, await tempDir(t))
  const cloud = await client(t, remote.url, { clientId: 'cloud-app', clean: false })
  await cloud.mqtt.subscribeAsync('sites/7/telemetry/#', { qos: 1 })
  const dir = await tempDir(t)
  const gateway = await gatewayWith(t, dir, { dataDir: './data', bridges: [{ ...BRIDGE, url: remote.url }] })
  const local = await client(t, gateway.url)

  const publishing = stream(local, 'telemetry/seq', 0, 5000)
  await cloud.next(m => m.payload.toString() === '1000')
  await remote.stop()
  await publishing
  // every message is acknowledged locally, most of them while the remote broker is down
  await remote.start()
  await cloud.next(m => m.payload.toString() === '4999', 60_000)
  assert.deepEqual(firstArrivals(cloud.messages), range(0, 5000))
  assert.match(gateway.stderr, /bridge cloud: .*retrying/)
  assert.deepEqual(await terminate(gateway), { code: 0, signal: null })
})

test('a gateway SIGKILLed with a backlog sends it after its restart, in order', async t => {
  const remote = await mosquitto(t, await tempDir(t), { start: false })
  const dir = await tempDir(t)
  const config = { dataDir: './data', bridges: [{ ...BRIDGE, url: remote.url }] }
  const gateway = await gatewayWith(t, dir, config, { connected: 0 })
  const local = await client(t, gateway.url)
  // each PUBACK comes once the message is on disk
  await stream(local, 'telemetry/seq', 0, 500, 50)
  gateway.child.kill('SIGKILL')
  await gateway.exited
  local.mqtt.end(true)

  await remote.start()
  const cloud = await client(t, remote.url, { clientId: 'cloud-app', clean: false })
  await cloud.mqtt.subscribeAsync('sites/7/telemetry/#', { qos: 1 })
  const restarted = await gatewayWith(t, dir, config)
  await cloud.next(m => m.payload.toString() === '499')
  assert.deepEqual(firstArrivals(cloud.messages), range(0, 500))
  assert.match(restarted.stderr, /messages queued before the restart will be sent/)
})

test('a bound hit: the oldest are dropped, counted and logged; the rest are sent', async t => {
  const remote = await mosquitto(t, await tempDir(t))
  // the cloud application's session, kept by the remote broker through its outage, gets what the bridge sends first
  const session = await client(t, remote.url, { clientId: 'cloud-app', clean: false })
  await session.mqtt.subscribeAsync('sites/7/telemetry/#', { qos: 1 })
  await session.mqtt.endAsync()
  await remote.stop()
  const dir = await tempDir(t)
  const httpPort = await freePort()
  const gateway = await gatewayWith(t, dir, {
    dataDir: './data',
    http: { port: httpPort },
    bridges: [{ ...BRIDGE, url: remote.url, queue: { maxMessages: 10 } }],
  }, { connected: 0 })
  const local = await client(t, gateway.url)
  await stream(local, 'telemetry/seq', 0, 25, 1)
  const [bridge] = await bridgeStatus(httpPort)
  assert.equal(bridge?.connected, false)
  assert.equal(bridge?.queuedMessages, 10)
  assert.equal(bridge?.dropped.maxMessages, 15)
  await gateway.waitFor(/outbound messages dropped \(\d+ by queue\.maxMessages/)

  await remote.start()
  const cloud = await client(t, remote.url, { clientId: 'cloud-app', clean: false })
  await cloud.next(m => m.payload.toString() === '24')
  assert.deepEqual(firstArrivals(cloud.messages), range(15, 25))
})
