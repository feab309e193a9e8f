// The SDK's socket transport (src/client/socket-transport.ts) against a peer scripted byte by byte, for what a real
// gateway never does (refuse with each CONNACK code, go silent, send too much), and against a real gateway through
// an injected in-memory duplex (streams.ts' factory, what a thread runtime sets).
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { Duplex } from 'node:stream'
import test from 'node:test'
import mqttPacket from 'mqtt-packet'
import { SocketTransport } from '../../dist/client/socket-transport.js'
import { setStreamFactory } from '../../dist/client/streams.js'
import { FCClient } from '../../dist/index.js'
import { defined, portOf, startGateway, waitFor } from '../helpers.js'
/** @import { Thrown } from '../helpers.js' */

const gen = packet => mqttPacket.generate(packet, { protocolVersion: 4 })
const FAST = { keepaliveS: 0.2, connectTimeoutMs: 300 }

/** A TCP peer that hands each parsed packet of each connection to `script(packet, socket, connection)`. */
async function scriptedPeer (t, script) {
  const connections = []
  const server = createServer(socket => {
    const index = connections.length
    const packets = []
    connections.push({ socket, packets })
    socket.on('error', () => {})
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    parser.on('packet', packet => {
      packets.push(packet)
      script(packet, socket, index)
    })
    socket.on('data', chunk => parser.parse(chunk))
  })
  await new Promise(resolve => server.listen(0, '127.0.0.1', () => resolve(undefined)))
  t.after(() => {
    for (const { socket } of connections) socket.destroy()
    return new Promise(resolve => server.close(() => resolve(undefined)))
  })
  return { url: `mqtt://127.0.0.1:${portOf(server)}`, connections }
}

/** A transport on `url` whose listener records everything, ended after the test. */
function transport (t, url, options = {}, timing = FAST) {
  /** @type {{ subscribed: number[], closed: [number, boolean][], inbox: Buffer[], messages: [string, string, number][], warnings: Thrown[], refused: Thrown[] }} */
  const seen = { subscribed: [], closed: [], inbox: [], messages: [], warnings: [], refused: [] }
  const conn = new SocketTransport({ url, reconnectPeriod: 50, ...options }, {
    subscribed: epoch => seen.subscribed.push(epoch),
    closed: (epoch, wasUp) => seen.closed.push([epoch, wasUp]),
    inbox: payload => seen.inbox.push(payload),
    message: (topic, payload, packet) => seen.messages.push([topic, payload.toString(), packet.qos]),
    // what the transport warns with is an Error (its own FnbusError, or the socket's)
    warning: err => seen.warnings.push(/** @type {Thrown} */ (err)),
    refused: err => seen.refused.push(err),
  }, timing)
  t.after(() => conn.end(true))
  return { conn, seen }
}

/** Accepts the connection and the subscriptions. */
function welcoming (packet, socket) {
  if (packet.cmd === 'connect') socket.write(gen({ cmd: 'connack', returnCode: 0, sessionPresent: false }))
  if (packet.cmd === 'subscribe') socket.write(gen({ cmd: 'suback', messageId: packet.messageId, granted: packet.subscriptions.map(s => s.topic.startsWith('secret/') ? 128 : s.qos) }))
}

test('CONNECT carries the client id, credentials, keep-alive and a clean session; the inbox is subscribed at QoS 0', async t => {
  const peer = await scriptedPeer(t, welcoming)
  const { conn, seen } = transport(t, peer.url, { username: 'S/f', password: 'pw' }, { keepaliveS: 30, connectTimeoutMs: 1000 })
  await waitFor(() => seen.subscribed.length === 1)
  const [connect, subscribe] = peer.connections[0].packets
  assert.deepEqual([connect.clientId, connect.username, connect.password.toString(), connect.keepalive, connect.clean], [conn.clientId, 'S/f', 'pw', 30, true])
  assert.match(conn.clientId, /^S:f\.[0-9a-z]{16}$/)
  assert.deepEqual(subscribe.subscriptions, [{ topic: `$fn/in/${conn.clientId}`, qos: 0 }])
  assert.deepEqual(seen.subscribed, [1])
})

test('credentials in the url are used as MQTT.js uses them, percent-decoded', async t => {
  const peer = await scriptedPeer(t, welcoming)
  const { seen } = transport(t, peer.url.replace('mqtt://', 'mqtt://S%2Ff:p%40ss@'))
  await waitFor(() => seen.subscribed.length === 1)
  const [connect] = peer.connections[0].packets
  assert.deepEqual([connect.username, connect.password.toString()], ['S/f', 'p@ss'])
})

for (const [code, words] of [[2, 'Identifier rejected'], [4, 'Bad username or password'], [5, 'Not authorized']]) {
  test(`CONNACK ${code} is a refusal: FNBUS_NOT_AUTHORIZED, and no reconnection`, async t => {
    const peer = await scriptedPeer(t, (packet, socket) => socket.write(gen({ cmd: 'connack', returnCode: code })))
    const { seen } = transport(t, peer.url)
    await waitFor(() => seen.refused.length === 1)
    assert.equal(seen.refused[0].code, 'FNBUS_NOT_AUTHORIZED')
    assert.equal(seen.refused[0].message, `the gateway at ${peer.url} refused the connection: ${words}`)
    await new Promise(resolve => setTimeout(resolve, 200))
    assert.equal(peer.connections.length, 1)
  })
}

test('CONNACK 3 (server unavailable) and a CONNACK that never comes are retried', async t => {
  const peer = await scriptedPeer(t, (packet, socket, index) => {
    if (index === 0) socket.write(gen({ cmd: 'connack', returnCode: 3 }))
    if (index === 2) welcoming(packet, socket)
    // the second connection gets no answer at all
  })
  const { seen } = transport(t, peer.url)
  await waitFor(() => seen.subscribed.length === 1, 5000)
  assert.equal(peer.connections.length, 3)
  assert.deepEqual(seen.refused, [])
  assert.match(seen.warnings[0].message, /refused the connection: Server unavailable/)
  assert.match(seen.warnings[1].message, /did not accept the connection within 300 ms/)
})

test('publish QoS 1 resolves on PUBACK, QoS 2 on PUBCOMP after PUBREL; a dropped connection fails the others with FNBUS_DISCONNECTED', async t => {
  let hold = false
  const peer = await scriptedPeer(t, (packet, socket) => {
    welcoming(packet, socket)
    if (hold) return
    if (packet.cmd === 'publish' && packet.qos === 1) socket.write(gen({ cmd: 'puback', messageId: packet.messageId }))
    if (packet.cmd === 'publish' && packet.qos === 2) socket.write(gen({ cmd: 'pubrec', messageId: packet.messageId }))
    if (packet.cmd === 'pubrel') socket.write(gen({ cmd: 'pubcomp', messageId: packet.messageId }))
  })
  const { conn, seen } = transport(t, peer.url)
  await waitFor(() => seen.subscribed.length === 1)
  await conn.publish('e/1', Buffer.from('one'), { qos: 1, retain: false })
  await conn.publish('e/2', Buffer.from('two'), { qos: 2, retain: true })
  const packets = peer.connections[0].packets
  assert.deepEqual(packets.filter(p => p.cmd === 'publish').map(p => [p.topic, p.payload.toString(), p.qos, p.retain]), [['e/1', 'one', 1, false], ['e/2', 'two', 2, true]])
  assert.ok(packets.some(p => p.cmd === 'pubrel'))
  hold = true
  const pending = [conn.publish('e/3', Buffer.from('3'), { qos: 1, retain: false }), conn.publish('e/4', Buffer.from('4'), { qos: 2, retain: false })]
  await waitFor(() => packets.filter(p => p.cmd === 'publish').length === 4)
  peer.connections[0].socket.destroy()
  for (const outcome of await Promise.allSettled(pending)) {
    assert.ok(outcome.status === 'rejected')
    assert.equal(outcome.reason.code, 'FNBUS_DISCONNECTED')
  }
  await assert.rejects(conn.publish('e/5', Buffer.from('5'), { qos: 0, retain: false }), { code: 'FNBUS_DISCONNECTED' })
  await waitFor(() => seen.subscribed.length === 2)
  assert.deepEqual(seen.closed, [[1, false]])
})

test('incoming QoS 1 and 2 are acknowledged; a QoS 2 resent before its PUBREL is delivered once; the inbox goes to inbox', async t => {
  const peer = await scriptedPeer(t, welcoming)
  const { conn, seen } = transport(t, peer.url)
  await waitFor(() => seen.subscribed.length === 1)
  const socket = peer.connections[0].socket
  socket.write(Buffer.concat([
    gen({ cmd: 'publish', topic: 'e/a', payload: Buffer.from('q1'), qos: 1, messageId: 10 }),
    gen({ cmd: 'publish', topic: 'e/b', payload: Buffer.from('q2'), qos: 2, messageId: 11 }),
    gen({ cmd: 'publish', topic: 'e/b', payload: Buffer.from('q2'), qos: 2, messageId: 11, dup: true }),
    gen({ cmd: 'pubrel', messageId: 11 }),
    gen({ cmd: 'publish', topic: `$fn/in/${conn.clientId}`, payload: Buffer.from([0x90]), qos: 0 }),
  ]))
  await waitFor(() => peer.connections[0].packets.some(p => p.cmd === 'pubcomp') && seen.inbox.length === 1)
  const packets = peer.connections[0].packets
  assert.deepEqual(packets.filter(p => ['puback', 'pubrec', 'pubcomp'].includes(p.cmd)).map(p => [p.cmd, p.messageId]),
    [['puback', 10], ['pubrec', 11], ['pubrec', 11], ['pubcomp', 11]])
  assert.deepEqual(seen.messages, [['e/a', 'q1', 1], ['e/b', 'q2', 2]])
  assert.deepEqual(seen.inbox, [Buffer.from([0x90])])
})

test('SUBACK 0x80 is FNBUS_NOT_AUTHORIZED; subscriptions are restored on a new connection, unsubscribed ones not', async t => {
  const peer = await scriptedPeer(t, welcoming)
  const { conn, seen } = transport(t, peer.url)
  await waitFor(() => seen.subscribed.length === 1)
  await assert.rejects(conn.subscribe('secret/x', 0), { code: 'FNBUS_NOT_AUTHORIZED' })
  await conn.subscribe('e/+', 1)
  await conn.subscribe('f/#', 0)
  await conn.unsubscribe('f/#')
  assert.ok(peer.connections[0].packets.some(p => p.cmd === 'unsubscribe' && p.unsubscriptions[0] === 'f/#'))
  peer.connections[0].socket.destroy()
  await waitFor(() => peer.connections[1]?.packets.filter(p => p.cmd === 'subscribe').length === 2)
  assert.deepEqual(peer.connections[1].packets.filter(p => p.cmd === 'subscribe').map(p => p.subscriptions),
    [[{ topic: `$fn/in/${conn.clientId}`, qos: 0 }], [{ topic: 'e/+', qos: 1 }]])
})

test('a packet above the frame limit drops the connection with a warning, before its body arrives', async t => {
  const peer = await scriptedPeer(t, welcoming)
  const { seen } = transport(t, peer.url)
  await waitFor(() => seen.subscribed.length === 1)
  // declares 16 MB; sends 5 bytes of it
  peer.connections[0].socket.write(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x08]))
  await waitFor(() => seen.closed.length === 1)
  assert.equal(seen.warnings[0].code, 'FNBUS_BAD_MESSAGE')
  assert.match(seen.warnings[0].message, /a packet of 16777216 bytes, above the limit of 1114112/)
})

test('keep-alive: a PINGREQ every period; a peer silent for a whole period is cut, and the transport reconnects', async t => {
  let answer = true
  const peer = await scriptedPeer(t, (packet, socket) => {
    welcoming(packet, socket)
    if (packet.cmd === 'pingreq' && answer) socket.write(gen({ cmd: 'pingresp' }))
  })
  const { seen } = transport(t, peer.url)
  await waitFor(() => peer.connections[0]?.packets.filter(p => p.cmd === 'pingreq').length >= 2, 3000)
  assert.deepEqual(seen.closed, [])
  answer = false
  await waitFor(() => seen.closed.length === 1, 3000)
  assert.match(defined(seen.warnings.at(-1), 'a warning').message, /no answer from the gateway .* within 0\.2 s/)
  await waitFor(() => seen.subscribed.length === 2)
})

test('a graceful end sends DISCONNECT; reconnectPeriod 0 never reconnects', async t => {
  const peer = await scriptedPeer(t, welcoming)
  const { conn, seen } = transport(t, peer.url, { reconnectPeriod: 0 })
  await waitFor(() => seen.subscribed.length === 1)
  peer.connections[0].socket.on('data', () => peer.connections[0].socket.end())
  await conn.end(false)
  assert.equal(peer.connections[0].packets.at(-1).cmd, 'disconnect')
  const second = transport(t, peer.url, { reconnectPeriod: 0 })
  await waitFor(() => second.seen.subscribed.length === 1)
  peer.connections[1].socket.destroy()
  await new Promise(resolve => setTimeout(resolve, 200))
  assert.equal(peer.connections.length, 2)
})

/** Two duplex streams, each writing into the other; one destroyed ends the other's reading, as a socket's peer sees. */
function duplexPair () {
  const end = (other, done) => { if (!other.readableEnded) other.push(null); done() }
  const a = new Duplex({ read () {}, write (chunk, _encoding, done) { b.push(chunk); done() }, final: done => end(b, done), destroy: (err, done) => end(b, () => done(err)) })
  const b = new Duplex({ read () {}, write (chunk, _encoding, done) { a.push(chunk); done() }, final: done => end(a, done), destroy: (err, done) => end(a, () => done(err)) })
  return [a, b]
}

test('an injected stream factory carries clients to the gateway without a socket, reconnections included', async t => {
  const gw = await startGateway(t)
  const opened = []
  setStreamFactory(options => {
    const [client, server] = duplexPair()
    opened.push({ options, client })
    gw.bus.handle(server)
    return client
  })
  t.after(() => setStreamFactory(undefined))
  const url = 'mqtt://in-memory.invalid:1883'
  const worker = new FCClient({ url, reconnectPeriod: 20 })
  const caller = new FCClient({ url, reconnectPeriod: 20 })
  t.after(() => Promise.all([worker.close(), caller.close()]))
  await worker.serve('Mem/double', n => n * 2)
  assert.equal(await caller.invoke('Mem/double', 21), 42)
  assert.deepEqual(opened[0].options.target, { kind: 'tcp', host: 'in-memory.invalid', port: 1883, tls: false })
  const reconnected = new Promise(resolve => caller.once('connect', resolve))
  opened[1].client.destroy()
  await reconnected
  assert.equal(await caller.invoke('Mem/double', 4), 8)
  assert.equal(opened.length, 3)
})

test('the frames of one tick leave in one write, and a QoS 0 publish resolves once its frame is written', async t => {
  const gw = await startGateway(t)
  /** @type {number[]} */
  const writes = []
  setStreamFactory(() => {
    const [client, server] = duplexPair()
    gw.bus.handle(server)
    // count what the transport hands its stream: one entry per _write or _writev, its number of frames
    const write = client._write.bind(client)
    client._writev = (chunks, done) => { writes.push(chunks.length); write(Buffer.concat(chunks.map(c => c.chunk)), 'binary', done) }
    client._write = (chunk, encoding, done) => { writes.push(1); write(chunk, encoding, done) }
    return client
  })
  t.after(() => setStreamFactory(undefined))
  const fc = new FCClient({ url: 'mqtt://in-memory.invalid:1883' })
  t.after(() => fc.close())
  await fc.ready()
  await new Promise(resolve => setImmediate(resolve))
  writes.length = 0
  await Promise.all(Array.from({ length: 10 }, (_, i) => fc.publish('bench/events', `event ${i}`)))
  // one writev of the ten PUBLISH frames, not ten writes (a system call each on a socket)
  assert.deepEqual(writes, [10])
})
