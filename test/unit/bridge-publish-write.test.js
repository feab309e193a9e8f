// The bridge's PUBLISH writer (src/bridge/remote-link.ts, writePublishesWhole): the bytes MQTT.js' own writer
// (mqtt-packet) gives, in one write; anything else left to MQTT.js.
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { Writable } from 'node:stream'
import { test } from 'node:test'
import { createRequire } from 'node:module'
import { writePublishesWhole } from '../../dist/bridge/remote-link.js'

const requireFromMqtt = createRequire(import.meta.resolve('mqtt'))
const generate = requireFromMqtt('mqtt-packet').generate

function fakeClient (protocolVersion = 4) {
  const writes = []
  const stream = new Writable({ write (chunk, _enc, cb) { writes.push(Buffer.from(chunk)); cb() }, writev (chunks, cb) { for (const { chunk } of chunks) writes.push(Buffer.from(chunk)); cb() } })
  /** @type {any} */
  const client = new EventEmitter()
  const fallback = []
  Object.assign(client, { stream, options: { protocolVersion }, noop () {}, _writePacket (packet, cb) { fallback.push(packet); cb?.() } })
  writePublishesWhole(client)
  return { client, writes, fallback }
}

test('PUBLISH packets are written as mqtt-packet would, one write each, corked until the next tick', async () => {
  const { client, writes, fallback } = fakeClient()
  const packets = [
    { cmd: 'publish', topic: 'sites/7/telemetry/line-1', payload: Buffer.alloc(64, 'x'), qos: 1, retain: false, dup: false, messageId: 1 },
    { cmd: 'publish', topic: 'ünïcode/tópic', payload: Buffer.from('p'), qos: 1, retain: true, dup: true, messageId: 65535 },
    { cmd: 'publish', topic: 'a', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false, messageId: 0 },
    { cmd: 'publish', topic: 'b/c', payload: Buffer.alloc(200, 1), qos: 1, retain: false, dup: false, messageId: 300 },
    { cmd: 'publish', topic: 'b/d', payload: Buffer.alloc(20_000, 2), qos: 1, retain: false, dup: false, messageId: 301 },
    { cmd: 'publish', topic: 'b/e', payload: Buffer.alloc(3_000_000, 3), qos: 1, retain: false, dup: false, messageId: 302 },
  ]
  let sent = 0
  client.on('packetsend', () => sent++)
  let called = 0
  for (const packet of packets) client._writePacket(packet, () => called++)
  // past the socket's high water mark, a write's callback waits for 'drain', as MQTT.js' does
  assert.equal(called, 4)
  assert.equal(writes.length, 0)
  await new Promise(resolve => setImmediate(resolve))
  assert.equal(called, packets.length)
  assert.equal(sent, packets.length)
  assert.deepEqual(Buffer.concat(writes), Buffer.concat(packets.map(packet => generate(packet))))
  assert.equal(fallback.length, 0)
})

test('other packets, MQTT 5 and string payloads go to MQTT.js\' own writer', () => {
  const { client, fallback } = fakeClient()
  client._writePacket({ cmd: 'puback', messageId: 1 })
  client._writePacket({ cmd: 'publish', topic: 't', payload: 'text', qos: 0 })
  assert.equal(fallback.length, 2)
  const v5 = fakeClient(5)
  v5.client._writePacket({ cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 1, messageId: 1 })
  assert.equal(v5.fallback.length, 1)
})
