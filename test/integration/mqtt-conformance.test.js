// MQTT 3.1.1 conformance of what the gateway accepts: every malformed packet the specification says must close the
// network connection does close it (the frame guard refuses it before aedes acts on it), with the answer the
// specification asks for (CONNACK 1 for a protocol level the gateway does not speak, nothing at all for a client
// id that is not well-formed UTF-8 or holds U+0000), and the gateway keeps serving everyone else. Raw bytes, one row
// a case.
import assert from 'node:assert/strict'
import test from 'node:test'
import { connectClient, startGateway } from '../helpers.js'
import {
  ackFrame, connectFrame, frame, PINGREQ, publishFrame, rawSocket, remainingLength, str, subscribeFrame, u16, unsubscribeFrame, within,
} from '../mqtt-frames.js'

const CONNACK_ACCEPTED = Buffer.from([0x20, 2, 0, 0])
const CONNACK_UNACCEPTABLE_PROTOCOL = Buffer.from([0x20, 2, 0, 1])
const NOTHING = Buffer.alloc(0)

/** A SUBSCRIBE of filters given as raw strings (no QoS check), or as raw bytes after the packet id. */
const subscribeRaw = (id, body) => frame(0x82, Buffer.concat([u16(id), body]))

/** Resolves true once `count` bytes came back, false after `ms`. */
async function waitForBytes (raw, count, ms = 3000) {
  const until = Date.now() + ms
  while (raw.received().length < count) {
    if (Date.now() > until) return false
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  return true
}

let sessions = 0
/** A well-formed CONNECT for the rows that misbehave once connected: each its own client id. */
const connected = () => connectFrame({ clientId: `conformance-${++sessions}` })

/**
 * [what, bytes to send, what the gateway answers before it closes]. Rows that begin with a good CONNECT get exactly
 * its CONNACK and nothing for the bad packet (no PUBACK, SUBACK, PINGRESP…).
 */
const ACKS = /** @type {const} */ (['puback', 'pubrec', 'pubrel', 'pubcomp'])

/** @type {[string, () => Buffer[], Buffer][]} */
const CASES = [
  // CONNECT
  ['protocol level 5 (MQTT 5) [MQTT-3.1.2-2]', () => [connectFrame({ level: 5 })], CONNACK_UNACCEPTABLE_PROTOCOL],
  ['protocol level 2 [MQTT-3.1.2-2]', () => [connectFrame({ level: 2 })], CONNACK_UNACCEPTABLE_PROTOCOL],
  ['protocol level 6 [MQTT-3.1.2-2]', () => [connectFrame({ level: 6 })], CONNACK_UNACCEPTABLE_PROTOCOL],
  ['an unknown protocol name [MQTT-3.1.2-1]', () => [connectFrame({ protocol: 'MQTX' })], NOTHING],
  ['Will QoS 3 [MQTT-3.1.2-14]', () => [connectFrame({ will: { topic: 'w', qos: 3 } })], NOTHING],
  ['the reserved connect flag set [MQTT-3.1.2-3]', () => [connectFrame({ flags: 0x01 })], NOTHING],
  ['a password without a user name [MQTT-3.1.2-22]', () => [connectFrame({ rawFlags: 0x42, trailing: str('secret') })], NOTHING],
  ['Will QoS without the Will flag [MQTT-3.1.2-13]', () => [connectFrame({ flags: 0x08 })], NOTHING],
  ['Will retain without the Will flag [MQTT-3.1.2-15]', () => [connectFrame({ flags: 0x20 })], NOTHING],
  ['bytes beyond the declared fields', () => [connectFrame({ trailing: [0x00, 0x01, 0x78] })], NOTHING],
  ['bytes beyond the password', () => [connectFrame({ username: 'u', password: 'p', trailing: [0x78] })], NOTHING],
  ['a client id holding U+0000 [MQTT-1.5.3-2]', () => [connectFrame({ clientId: 'a\u0000b' })], NOTHING],
  ['a client id holding a lone surrogate [MQTT-1.5.3-1]', () => [connectFrame({ clientId: Buffer.from([0x61, 0xed, 0xa0, 0x80]) })], NOTHING],
  ['a client id that is not UTF-8 [MQTT-1.5.3-1]', () => [connectFrame({ clientId: Buffer.from([0x61, 0xc3, 0x28]) })], NOTHING],
  ['a CONNECT too short for its fields', () => [frame(0x10, Buffer.concat([str('MQTT'), Buffer.from([4, 2]), u16(60), u16(10), Buffer.from('abc')]))], NOTHING],
  // acknowledgements
  ...ACKS.flatMap(kind => /** @type {[string, () => Buffer[], Buffer][]} */ ([

    [`${kind.toUpperCase()} with remaining length 3 [MQTT-2.2, 3.4.1]`, () => [connected(), Buffer.concat([ackFrame(kind, 1).subarray(0, 1), remainingLength(3), u16(1), Buffer.from([0])])], CONNACK_ACCEPTED],
    [`${kind.toUpperCase()} with remaining length 0`, () => [connected(), Buffer.from([ackFrame(kind, 1)[0], 0])], CONNACK_ACCEPTED],
    [`${kind.toUpperCase()} with packet id 0 [MQTT-2.3.1-1]`, () => [connected(), ackFrame(kind, 0)], CONNACK_ACCEPTED],
  ])),
  // PUBLISH
  ['PUBLISH QoS 1 with packet id 0 [MQTT-2.3.1-1]', () => [connected(), publishFrame('t', 'x', { qos: 1, id: 0 })], CONNACK_ACCEPTED],
  ['PUBLISH QoS 2 with packet id 0 [MQTT-2.3.1-1]', () => [connected(), publishFrame('t', 'x', { qos: 2, id: 0 })], CONNACK_ACCEPTED],
  ['PUBLISH QoS 0 with DUP set [MQTT-3.3.1-2]', () => [connected(), publishFrame('t', 'x', { dup: true })], CONNACK_ACCEPTED],
  ['PUBLISH QoS 3 [MQTT-3.3.1-4]', () => [connected(), frame(0x36, Buffer.concat([str('t'), u16(1), Buffer.from('x')]))], CONNACK_ACCEPTED],
  ['PUBLISH QoS 1 too short for its packet id', () => [connected(), frame(0x32, Buffer.concat([str('t'), Buffer.from([1])]))], CONNACK_ACCEPTED],
  ['PUBLISH QoS 2 that ends with its topic', () => [connected(), frame(0x34, str('t'))], CONNACK_ACCEPTED],
  // SUBSCRIBE and UNSUBSCRIBE
  ['SUBSCRIBE with packet id 0 [MQTT-2.3.1-1]', () => [connected(), subscribeFrame(0, ['a/b'])], CONNACK_ACCEPTED],
  ['UNSUBSCRIBE with packet id 0 [MQTT-2.3.1-1]', () => [connected(), unsubscribeFrame(0, ['a/b'])], CONNACK_ACCEPTED],
  ['SUBSCRIBE without any filter [MQTT-3.8.3-3]', () => [connected(), subscribeRaw(1, NOTHING)], CONNACK_ACCEPTED],
  ['UNSUBSCRIBE without any filter [MQTT-3.10.3-2]', () => [connected(), unsubscribeFrame(1, [])], CONNACK_ACCEPTED],
  ['SUBSCRIBE to an empty filter [MQTT-4.7.3-1]', () => [connected(), subscribeFrame(1, [''])], CONNACK_ACCEPTED],
  ['UNSUBSCRIBE from an empty filter [MQTT-4.7.3-1]', () => [connected(), unsubscribeFrame(1, [''])], CONNACK_ACCEPTED],
  ['SUBSCRIBE to a filter with # not last [MQTT-4.7.1-2]', () => [connected(), subscribeFrame(1, ['a/#/b'])], CONNACK_ACCEPTED],
  ['SUBSCRIBE to a filter with # inside a level [MQTT-4.7.1-2]', () => [connected(), subscribeFrame(1, ['a/b#'])], CONNACK_ACCEPTED],
  ['SUBSCRIBE to a filter with + inside a level [MQTT-4.7.1-3]', () => [connected(), subscribeFrame(1, ['a/b+/c'])], CONNACK_ACCEPTED],
  ['UNSUBSCRIBE from a filter with + inside a level [MQTT-4.7.1-3]', () => [connected(), unsubscribeFrame(1, ['+x'])], CONNACK_ACCEPTED],
  ['SUBSCRIBE asking QoS 3 [MQTT-3.8.3-4]', () => [connected(), subscribeRaw(1, Buffer.concat([str('a'), Buffer.from([3])]))], CONNACK_ACCEPTED],
  ['SUBSCRIBE with reserved bits in its QoS byte [MQTT-3.8.3-4]', () => [connected(), subscribeRaw(1, Buffer.concat([str('a'), Buffer.from([0x40])]))], CONNACK_ACCEPTED],
  ['SUBSCRIBE whose last filter has no QoS byte', () => [connected(), subscribeRaw(1, Buffer.concat([str('a'), Buffer.from([0]), str('b')]))], CONNACK_ACCEPTED],
  // PINGREQ and DISCONNECT
  ['PINGREQ with remaining length 1 [MQTT-3.12.1]', () => [connected(), Buffer.from([0xc0, 1, 0])], CONNACK_ACCEPTED],
  ['DISCONNECT with remaining length 1 [MQTT-3.14.1]', () => [connected(), Buffer.from([0xe0, 1, 0])], CONNACK_ACCEPTED],
]

test('every malformed packet of the table closes its connection, with CONNACK 1 only for a protocol level; a bystander is served throughout', async t => {
  const gw = await startGateway(t)
  await gw.serve('Svc/ping', async () => 'pong')
  const bystander = await connectClient(t, gw)
  const failures = []
  for (const [what, bytes, answer] of CASES) {
    const raw = await rawSocket(t, gw.port)
    const [first, ...rest] = bytes()
    raw.socket.write(first)
    if (rest.length > 0) {
      // the bad packet after the CONNACK: the refusal is of that packet, not a race with the CONNECT's handling
      if (!await waitForBytes(raw, CONNACK_ACCEPTED.length)) {
        failures.push(`${what}: no CONNACK to the good CONNECT`)
        continue
      }
      raw.socket.write(Buffer.concat(rest))
    }
    if (!await within(raw.closed, 3000)) {
      failures.push(`${what}: still open after 3 s`)
      raw.socket.destroy()
      continue
    }
    if (!raw.received().equals(answer)) failures.push(`${what}: answered ${raw.received().toString('hex') || 'nothing'}, not ${answer.toString('hex') || 'nothing'}`)
  }
  assert.deepEqual(failures, [])
  assert.equal(bystander.connected, true, 'the bystander kept its connection')
  assert.equal(await bystander.invoke('Svc/ping'), 'pong')
  assert.equal(gw.bus.connections, 1, 'no refused connection lingers')
})

test('well-formed sessions of the same packets are served: MQTT 3.1 and 3.1.1, QoS 1 and 2, wildcards, pings', async t => {
  const gw = await startGateway(t)
  /** @type {[string, Buffer[], Buffer][]} */
  const checks = [
    ['MQTT 3.1 (MQIsdp, level 3)', [connectFrame({ protocol: 'MQIsdp', level: 3, clientId: 'old-31' })], CONNACK_ACCEPTED],
    ['a will with QoS 2 and retain', [connectFrame({ clientId: 'willing', will: { topic: 'w/x', qos: 2, retain: true } })], CONNACK_ACCEPTED],
    ['SUBSCRIBE with + and # as whole levels', [connectFrame({ clientId: 'sub' }), subscribeFrame(7, ['+/b/#', '#', 'a/+'])],
      Buffer.concat([CONNACK_ACCEPTED, Buffer.from([0x90, 5, 0, 7, 0, 0, 0])])],
    ['UNSUBSCRIBE', [connectFrame({ clientId: 'unsub' }), unsubscribeFrame(9, ['a/#'])], Buffer.concat([CONNACK_ACCEPTED, Buffer.from([0xb0, 2, 0, 9])])],
    ['PUBLISH QoS 1', [connectFrame({ clientId: 'q1' }), publishFrame('t/1', 'x', { qos: 1, id: 5 })], Buffer.concat([CONNACK_ACCEPTED, Buffer.from([0x40, 2, 0, 5])])],
    ['PUBLISH QoS 2', [connectFrame({ clientId: 'q2' }), publishFrame('t/2', 'x', { qos: 2, id: 6 })], Buffer.concat([CONNACK_ACCEPTED, Buffer.from([0x50, 2, 0, 6])])],
    ['PUBREL', [connectFrame({ clientId: 'rel' }), ackFrame('pubrel', 4)], Buffer.concat([CONNACK_ACCEPTED, Buffer.from([0x70, 2, 0, 4])])],
    ['PUBLISH QoS 1 re-sent with DUP', [connectFrame({ clientId: 'dup' }), publishFrame('t/3', 'x', { qos: 1, id: 8, dup: true })], Buffer.concat([CONNACK_ACCEPTED, Buffer.from([0x40, 2, 0, 8])])],
    ['PUBLISH QoS 1 with an empty payload', [connectFrame({ clientId: 'empty' }), publishFrame('t/4', '', { qos: 1, id: 3 })], Buffer.concat([CONNACK_ACCEPTED, Buffer.from([0x40, 2, 0, 3])])],
    ['PINGREQ', [connectFrame({ clientId: 'pinger' }), PINGREQ], Buffer.concat([CONNACK_ACCEPTED, Buffer.from([0xd0, 0])])],
  ]
  for (const [what, frames, answer] of checks) {
    const raw = await rawSocket(t, gw.port)
    raw.socket.write(Buffer.concat(frames))
    await waitForBytes(raw, answer.length)
    assert.equal(raw.received().toString('hex'), answer.toString('hex'), what)
    assert.equal(raw.socket.destroyed, false, `${what}: still connected`)
    raw.socket.destroy()
  }
})
