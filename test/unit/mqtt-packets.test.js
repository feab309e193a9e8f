// The MQTT packets the SDK's socket transport writes and reads (src/protocol/mqtt-packets.ts), held against
// mqtt-packet (aedes' and MQTT.js' codec), and its packet reader fed random and truncated bytes.
import assert from 'node:assert/strict'
import test from 'node:test'
import fc from 'fast-check'
import mqttPacket from 'mqtt-packet'
import {
  decodeConnack, decodePacketId, decodePublish, encodeAck, encodeConnect, encodePublish, encodeSubscribe, encodeSubscriptions, encodeUnsubscribe, PacketReader,
} from '../../dist/protocol/mqtt-packets.js'
import { defined } from '../helpers.js'

/** What mqtt-packet makes of `bytes`: one packet, and nothing left over. */
function parse (bytes) {
  const packets = []
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  parser.on('packet', packet => packets.push(packet))
  parser.on('error', err => { throw err })
  const left = parser.parse(bytes)
  assert.equal(left, 0)
  assert.equal(packets.length, 1)
  return packets[0]
}

const gen = packet => mqttPacket.generate(packet, { protocolVersion: 4 })

/** Splits `bytes` into a reader's packets, as `[type, flags, body]`. */
function readAll (reader, chunks) {
  const packets = []
  for (const chunk of chunks) {
    const broken = reader.push(chunk, (type, flags, body) => packets.push([type, flags, Buffer.from(body)]))
    if (broken !== undefined) return { packets, broken }
  }
  return { packets }
}

test('CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBLISH and the acknowledgements parse as mqtt-packet reads them', () => {
  const connect = parse(encodeConnect({ clientId: 'S:f.abc', username: 'S/f', password: 'sécret', keepalive: 30 }))
  assert.equal(connect.cmd, 'connect')
  assert.equal(connect.protocolId, 'MQTT')
  assert.equal(connect.protocolVersion, 4)
  assert.equal(connect.clean, true)
  assert.equal(connect.keepalive, 30)
  assert.equal(connect.clientId, 'S:f.abc')
  assert.equal(connect.username, 'S/f')
  assert.equal(connect.password.toString(), 'sécret')
  const anonymous = parse(encodeConnect({ clientId: 'fnbus-x', keepalive: 30 }))
  assert.equal(anonymous.username, undefined)
  assert.equal(anonymous.password, undefined)
  assert.equal(parse(encodeConnect({ clientId: 'gw', keepalive: 60, clean: false })).clean, false)

  assert.deepEqual(parse(encodeSubscribe(7, ['$fn/in/x', 'a/+'], 1)).subscriptions, [{ topic: '$fn/in/x', qos: 1 }, { topic: 'a/+', qos: 1 }])
  assert.equal(parse(encodeSubscribe(7, ['a'], 0)).messageId, 7)
  assert.deepEqual(parse(encodeUnsubscribe(9, 'a/#')).unsubscriptions, ['a/#'])
  assert.deepEqual(parse(encodeSubscriptions(8, [{ filter: 'a/#', qos: 1 }, { filter: 'b', qos: 0 }])).subscriptions, [{ topic: 'a/#', qos: 1 }, { topic: 'b', qos: 0 }])

  for (const qos of /** @type {const} */ ([0, 1, 2])) {
    const payload = Buffer.alloc(20000, qos) // a remaining length of three bytes
    const publish = parse(encodePublish('événements/x', payload, qos, qos === 1, qos === 0 ? 0 : 513))
    assert.equal(publish.topic, 'événements/x')
    assert.deepEqual(publish.payload, payload)
    assert.equal(publish.qos, qos)
    assert.equal(publish.retain, qos === 1)
    if (qos > 0) assert.equal(publish.messageId, 513)
    // byte for byte what mqtt-packet writes, a resend's DUP flag too
    assert.deepEqual(encodePublish('t', payload, qos, false, qos === 0 ? 0 : 7, qos > 0), gen({ cmd: 'publish', topic: 't', payload, qos, retain: false, dup: qos > 0, ...qos > 0 ? { messageId: 7 } : {} }))
  }
  for (const [type, cmd] of /** @type {const} */ ([[4, 'puback'], [5, 'pubrec'], [6, 'pubrel'], [7, 'pubcomp']])) {
    assert.deepEqual(encodeAck(type, 65535), gen({ cmd, messageId: 65535 }))
    assert.equal(parse(encodeAck(type, 258)).messageId, 258)
  }
})

test("the reader splits mqtt-packet's packets at any chunk boundary and decodes them", () => {
  const packets = [
    gen({ cmd: 'connack', returnCode: 0, sessionPresent: false }),
    gen({ cmd: 'suback', messageId: 3, granted: [128] }),
    gen({ cmd: 'publish', topic: '$fn/in/c', payload: Buffer.alloc(300, 1), qos: 0 }),
    gen({ cmd: 'publish', topic: 'e/1', payload: Buffer.from('x'), qos: 2, messageId: 77, retain: true }),
    gen({ cmd: 'pingresp' }),
  ]
  const bytes = Buffer.concat(packets)
  fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: bytes.length - 1 }), { maxLength: 6 }), cuts => {
    const at = [0, ...new Set(cuts)].sort((a, b) => a - b)
    const chunks = at.map((from, i) => bytes.subarray(from, at[i + 1] ?? bytes.length))
    const { packets: read, broken } = readAll(new PacketReader(() => 1 << 20), chunks)
    assert.equal(broken, undefined)
    assert.deepEqual(read.map(([type]) => type), [2, 9, 3, 3, 13])
    assert.equal(decodeConnack(read[0][2]), 0)
    assert.equal(decodePacketId(read[1][2]), 3)
    assert.equal(read[1][2][2], 128)
    const inbox = defined(decodePublish(read[2][1], read[2][2]), 'a PUBLISH')
    assert.deepEqual({ ...inbox, payload: inbox.payload.length }, { topic: '$fn/in/c', payload: 300, qos: 0, retain: false, packetId: 0 })
    const event = defined(decodePublish(read[3][1], read[3][2]), 'a PUBLISH')
    assert.deepEqual({ ...event, payload: event.payload.toString() }, { topic: 'e/1', payload: 'x', qos: 2, retain: true, packetId: 77 })
  }))
})

test('a packet above the bound is refused from its header, before its body is buffered; the bound is read per packet', () => {
  let max = 100
  const reader = new PacketReader(() => max)
  const small = gen({ cmd: 'publish', topic: 't', payload: Buffer.alloc(50), qos: 0 })
  const big = gen({ cmd: 'publish', topic: 't', payload: Buffer.alloc(5000), qos: 0 })
  assert.equal(readAll(reader, [small]).packets.length, 1)
  const refused = readAll(reader, [big.subarray(0, 4)])
  assert.match(refused.broken, /5003 bytes, above the limit of 100/)
  assert.ok(reader.pending <= 4)
  max = 10_000 // the gateway's welcome raised it
  const fresh = new PacketReader(() => max)
  assert.equal(readAll(fresh, [big.subarray(0, 1000), big.subarray(1000)]).packets.length, 1)
  assert.match(readAll(new PacketReader(() => max), [Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])]).broken, /more than four bytes/)
})

test('malformed fields decode as undefined, never as a throw', () => {
  assert.equal(decodePublish(0x06, Buffer.from([0, 1, 0x61, 0, 1])), undefined) // QoS 3
  assert.equal(decodePublish(0x00, Buffer.from([0, 9, 0x61])), undefined) // topic past the end
  assert.equal(decodePublish(0x02, Buffer.from([0, 1, 0x61, 0])), undefined) // packet id cut short
  assert.equal(decodePublish(0x00, Buffer.from([0])), undefined)
  assert.equal(decodeConnack(Buffer.from([0])), undefined)
  assert.equal(decodePacketId(Buffer.from([1])), undefined)
})

test('random and truncated bytes: the reader never throws, holds at most one bounded packet, and decoders never throw', () => {
  const MAX = 4096
  const packetBytes = fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    fc.record({ topic: fc.string({ maxLength: 30 }), payload: fc.uint8Array({ maxLength: 600 }), qos: fc.constantFrom(0, 1, 2), id: fc.integer({ min: 1, max: 65535 }) })
      .map(({ topic, payload, qos, id }) => encodePublish(topic, Buffer.from(payload), qos, false, id)),
    fc.constant(Buffer.from([0x30, 0xff, 0xff, 0x7f])), // declares ~2 MB
    fc.constant(encodePublish('big', Buffer.alloc(3 * MAX), 0, false))
  )
  fc.assert(fc.property(fc.array(packetBytes, { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 97 }), { maxLength: 8 }), (pieces, sizes) => {
    const bytes = Buffer.concat(pieces.map(p => Buffer.from(p)))
    const reader = new PacketReader(() => MAX)
    let at = 0
    let i = 0
    while (at < bytes.length) {
      const size = sizes.length === 0 ? bytes.length : sizes[i++ % sizes.length]
      const broken = reader.push(bytes.subarray(at, at + size), (type, flags, body) => {
        assert.ok(body.length <= MAX)
        if (type === 3) decodePublish(flags, body)
        if (type === 2) decodeConnack(body)
        decodePacketId(body)
      })
      at += size
      if (broken !== undefined) break
      assert.ok(reader.pending <= MAX + 5, `holds ${reader.pending} bytes`)
    }
  }), { numRuns: 500 })
})
