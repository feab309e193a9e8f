import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import test from 'node:test'
import mqttPacket from 'mqtt-packet'
import { readInbox } from '../../dist/client/inbox-reader.js'

const INBOX = '$fn/in/fnbus-abc'
const gen = packet => mqttPacket.generate(packet, { protocolVersion: 4 })

/** A socket as far as the reader can tell (a Readable with setNoDelay), and what reaches MQTT.js through it. */
function fakeSocket () {
  const socket = /** @type {Readable & { setNoDelay (): void }} */ (new Readable({ read () {} }))
  socket.setNoDelay = () => {}
  const passed = []
  socket.on('data', chunk => passed.push(chunk))
  return { socket, passed }
}

// A stream as a gateway sends it: MQTT.js' packets and inbox frames mixed, including near misses.
function stream () {
  const ours = []
  const theirs = []
  const add = (packet, mine) => {
    const bytes = gen(packet)
    ;(mine ? ours : theirs).push(mine ? packet.payload : bytes)
    return bytes
  }
  const pieces = [
    add({ cmd: 'connack', returnCode: 0, sessionPresent: false }),
    add({ cmd: 'suback', messageId: 1, granted: [0] }),
    add({ cmd: 'publish', topic: INBOX, payload: Buffer.from('first'), qos: 0 }, true),
    add({ cmd: 'publish', topic: 'events/x', payload: Buffer.from('an event'), qos: 0 }),
    // same length as the inbox, another topic
    add({ cmd: 'publish', topic: INBOX.slice(0, -1) + 'd', payload: Buffer.from('not ours'), qos: 0 }),
    // the inbox's topic, but QoS 1 or retained: MQTT.js' business
    add({ cmd: 'publish', topic: INBOX, payload: Buffer.from('qos1'), qos: 1, messageId: 7 }),
    add({ cmd: 'publish', topic: INBOX, payload: Buffer.from('retained'), qos: 0, retain: true }),
    add({ cmd: 'publish', topic: INBOX, payload: Buffer.alloc(70000, 3), qos: 0 }, true),
    add({ cmd: 'pingresp' }),
    add({ cmd: 'publish', topic: INBOX, payload: Buffer.alloc(0), qos: 0 }, true),
    add({ cmd: 'publish', topic: 'x', payload: Buffer.alloc(0), qos: 0 }),
    add({ cmd: 'publish', topic: INBOX, payload: Buffer.from('last'), qos: 0 }, true),
  ]
  return { bytes: Buffer.concat(pieces), ours, theirs: Buffer.concat(theirs) }
}

async function feed (cuts) {
  const { bytes, ours, theirs } = stream()
  const { socket, passed } = fakeSocket()
  const got = []
  assert.equal(readInbox(socket, INBOX, payload => got.push(Buffer.from(payload))), true)
  let at = 0
  for (const cut of [...cuts, bytes.length]) {
    if (cut > at) socket.push(bytes.subarray(at, cut))
    at = Math.max(at, cut)
  }
  await new Promise(setImmediate) // a Readable may emit what it was pushed on a later tick
  return { got, ours, passed: Buffer.concat(passed), theirs }
}

test('inbox frames go to the reader, every other byte to MQTT.js unchanged, however the stream is cut', async () => {
  const { bytes } = stream()
  const cuttings = [
    [], // one chunk
    Array.from({ length: bytes.length }, (_, i) => i), // one byte at a time
    Array.from({ length: 50 }, (_, i) => i * 7 + 1),
  ]
  let seed = 20261203
  const random = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
  for (let k = 0; k < 40; k++) cuttings.push(Array.from({ length: 1 + Math.floor(random() * 30) }, () => Math.floor(random() * bytes.length)).sort((a, b) => a - b))
  for (const cuts of cuttings) {
    const { got, ours, passed, theirs } = await feed(cuts)
    assert.deepEqual(got, ours)
    assert.ok(passed.equals(theirs), `MQTT.js' bytes changed with cuts ${cuts.slice(0, 10)}`)
  }
})

test('MQTT.js still parses what it is given: its packets arrive whole and in order', async () => {
  const { socket, passed } = fakeSocket()
  readInbox(socket, INBOX, () => {})
  const { bytes } = stream()
  for (let i = 0; i < bytes.length; i += 5) socket.push(bytes.subarray(i, i + 5))
  await new Promise(setImmediate)
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const packets = []
  parser.on('packet', packet => packets.push(packet.cmd === 'publish' ? `${packet.topic}:${packet.payload.length}` : packet.cmd))
  parser.parse(Buffer.concat(passed))
  assert.deepEqual(packets, ['connack', 'suback', 'events/x:8', `${INBOX.slice(0, -1)}d:8`, `${INBOX}:4`, `${INBOX}:8`, 'pingresp', 'x:0'])
})

test('a malformed remaining length hands the rest of the stream to MQTT.js as it is', async () => {
  const { socket, passed } = fakeSocket()
  const got = []
  readInbox(socket, INBOX, payload => got.push(payload))
  const inbox = gen({ cmd: 'publish', topic: INBOX, payload: Buffer.from('x'), qos: 0 })
  const broken = Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])
  socket.push(Buffer.concat([inbox, broken, inbox]))
  await new Promise(setImmediate)
  assert.equal(got.length, 1)
  assert.ok(Buffer.concat(passed).equals(Buffer.concat([broken, inbox])))
})

test('a stream that is not a socket (WebSocket) keeps MQTT.js\' path; the end of the stream passes', async () => {
  assert.equal(readInbox(new Readable({ read () {} }), INBOX, () => {}), false)
  const { socket } = fakeSocket()
  readInbox(socket, INBOX, () => {})
  let ended = false
  socket.on('end', () => { ended = true })
  socket.push(null)
  await new Promise(setImmediate)
  assert.equal(ended, true)
})
