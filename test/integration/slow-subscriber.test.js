// limits.maxEventBufferBytes and limits.eventBufferTimeoutMs: what waits for one subscriber's socket is bounded; past
// it the subscriber loses its own QoS 0 messages, and its connection when it stays there or asks for QoS 1.
import assert from 'node:assert/strict'
import test from 'node:test'
import mqtt from 'mqtt'
import mqttPacket from 'mqtt-packet'
import { MetricsPlugin } from '../../dist/plugins/metrics/index.js'
import { startGateway, waitFor } from '../helpers.js'
import { connectFrame, frame, rawSocket, str, u16 } from '../mqtt-frames.js'

const PAYLOAD = Buffer.alloc(64 * 1024, 0x2a)

async function mqttClient (t, gw, options = {}) {
  const client = await mqtt.connectAsync(gw.url, { reconnectPeriod: 0, ...options })
  t.after(() => client.endAsync(true))
  return client
}

/** A raw subscriber to `filter` that stops reading once subscribed. */
async function frozenSubscriber (t, gw, { clientId = 'frozen', filter = '#', qos = 0, clean = true } = {}) {
  const raw = await rawSocket(t, gw.port)
  const subscribe = frame(0x82, Buffer.concat([u16(1), str(filter), Buffer.from([qos])]))
  raw.socket.write(Buffer.concat([connectFrame({ clientId, clean }), subscribe]))
  await waitFor(() => raw.received().length >= 9, 5000, 'CONNACK and SUBACK')
  raw.socket.pause()
  return raw
}

/**
 * Publishes `count` numbered messages (the number in the first 4 bytes of each payload), keeping within 20 messages
 * (1.25 MiB) of what `received()` says a subscriber that keeps up has: it shares this process with the publisher.
 */
async function publishNumbered (publisher, topic, count, received, options = {}) {
  for (let i = 0; i < count; i++) {
    if (i - received() > 20) await waitFor(() => i - received() <= 20, 20_000, `the bystander to keep up (message ${i})`)
    const payload = Buffer.from(PAYLOAD)
    payload.writeUInt32BE(i)
    await publisher.publishAsync(topic, payload, options)
  }
}

test('a subscriber that pauses within limits.maxEventBufferBytes gets every message, in order, once it reads again', async t => {
  const gw = await startGateway(t, { limits: { maxEventBufferBytes: 64 * 1024 * 1024 } })
  const dropped = []
  gw.events.on('messageDropped', o => dropped.push(o))
  const paused = await frozenSubscriber(t, gw, { filter: 'seq/#' })
  const bystander = await mqttClient(t, gw)
  await bystander.subscribeAsync('seq/#')
  let seen = 0
  bystander.on('message', () => { seen++ })
  const publisher = await mqttClient(t, gw)
  // 20 MB: more than the kernel's socket buffers take, so most of it waits in the gateway
  await publishNumbered(publisher, 'seq/a', 320, () => seen)
  await waitFor(() => seen === 320, 10_000, 'the bystander')

  const numbers = []
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  parser.on('packet', packet => { if (packet.cmd === 'publish') numbers.push(/** @type {Buffer} */ (packet.payload).readUInt32BE(0)) })
  parser.parse(paused.received().subarray(9))
  paused.socket.on('data', chunk => parser.parse(chunk))
  paused.socket.resume()
  await waitFor(() => numbers.length === 320, 10_000, 'all 320 at the paused subscriber')
  assert.deepEqual(numbers, Array.from({ length: 320 }, (_, i) => i))
  assert.deepEqual(dropped, [])
})

test('past limits.maxEventBufferBytes a QoS 0 subscriber loses its own messages, counted, and is cut after eventBufferTimeoutMs', async t => {
  const metrics = new MetricsPlugin()
  const gw = await startGateway(t, { limits: { maxEventBufferBytes: 4 * 1024 * 1024, eventBufferTimeoutMs: 1500 }, plugins: [metrics] })
  const cuts = []
  gw.events.on('connectionCut', o => cuts.push(o))
  const frozen = await frozenSubscriber(t, gw)
  const bystander = await mqttClient(t, gw)
  await bystander.subscribeAsync('load/#')
  let seen = 0
  bystander.on('message', () => { seen++ })
  const publisher = await mqttClient(t, gw)
  await publishNumbered(publisher, 'load/x', 400, () => seen)
  await waitFor(() => seen === 400, 10_000, 'the bystander\'s 400 messages')

  const text = await metrics.metrics()
  const lost = Number(/^fnbus_dropped_messages_total\{reason="subscriber_buffer_full"\} (\d+)$/m.exec(text)?.[1])
  // 25 MB published, a few MB in the kernel's buffers and 4 MiB in the gateway's
  assert.ok(lost > 150 && lost < 400, `${lost} of 400 dropped for the frozen subscriber`)
  assert.deepEqual(cuts, [], 'not cut before eventBufferTimeoutMs')
  assert.ok(gw.aedes.clients.frozen !== undefined)
  // the client, reading nothing, cannot see its end; the gateway forgets it
  await waitFor(() => gw.aedes.clients.frozen === undefined, 5000, 'the cut once it stayed over the bound')
  assert.deepEqual(cuts, [{ reason: 'slow_subscriber', clientId: 'frozen' }])
  void frozen
  assert.match(await metrics.metrics(), /^fnbus_cut_connections_total\{reason="slow_subscriber"\} 1$/m)
})

test('a QoS 1 message to a subscriber past the bound cuts its connection at once; its persistent session keeps the messages', async t => {
  const gw = await startGateway(t, { limits: { maxEventBufferBytes: 4 * 1024 * 1024, eventBufferTimeoutMs: 60_000, maxSessionQueueBytes: 32 * 1024 * 1024 } })
  const cuts = []
  gw.events.on('connectionCut', o => cuts.push(o))
  const frozen = await frozenSubscriber(t, gw, { clientId: 'durable', filter: 'load/#', qos: 1, clean: false })
  const bystander = await mqttClient(t, gw)
  await bystander.subscribeAsync('load/#', { qos: 1 })
  let seen = 0
  bystander.on('message', () => { seen++ })
  const publisher = await mqttClient(t, gw)
  await publishNumbered(publisher, 'load/x', 200, () => seen, { qos: 1 })
  await waitFor(() => seen === 200, 10_000, 'the bystander\'s 200 messages')
  await waitFor(() => gw.aedes.clients.durable === undefined, 5000, 'the cut, without waiting for eventBufferTimeoutMs')
  assert.deepEqual(cuts, [{ reason: 'slow_subscriber', clientId: 'durable' }])
  void frozen

  // the session comes back and gets what it had not acknowledged, every message once at least
  const numbers = new Set()
  const back = await mqttClient(t, gw, { clientId: 'durable', clean: false })
  back.on('message', (_topic, payload) => numbers.add(payload.readUInt32BE(0)))
  await waitFor(() => numbers.size === 200, 20_000, 'the returning session\'s 200 messages')
})
