// The bridge's own MQTT 3.1.1 connection (src/bridge/remote-client.ts) against a scripted broker on a real socket
// (mqtt-packet parses what it sends and writes what it is told): CONNECT with the session kept, refusals named,
// QoS 1 publishes acknowledged by id, inbound messages one at a time and acknowledged once handled, the packet
// bound, the connect and keep-alive timeouts. Against a real Mosquitto: test/e2e/bridge*.test.js.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { test } from 'node:test'
import mqttPacket from 'mqtt-packet'
import { RemoteClient } from '../../dist/bridge/remote-client.js'

const OPTIONS = { clientId: 'site-7-gw', username: 'gw', password: 'sécret', keepaliveSec: 60, clean: false, connectTimeoutMs: 2000, maxPacketBytes: 4096 }

/** A broker that parses what the client sends; the test writes its answers with `send`. */
async function scriptedBroker (t) {
  const server = createServer()
  const sockets = []
  const received = []
  let wake
  server.on('connection', socket => {
    sockets.push(socket)
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    parser.on('packet', packet => { received.push(packet); wake?.() })
    socket.on('data', chunk => parser.parse(chunk))
    socket.on('error', () => {})
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => {
    for (const socket of sockets) socket.destroy()
    server.close()
  })
  return {
    url: `mqtt://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}`,
    received,
    send (packet) { sockets.at(-1)?.write(mqttPacket.generate(packet)) },
    raw (bytes) { sockets.at(-1)?.write(bytes) },
    /** The next packet of `cmd` the client sent. */
    async next (cmd) {
      for (;;) {
        const at = received.findIndex(p => p.cmd === cmd)
        if (at !== -1) return received.splice(at, 1)[0]
        await new Promise(resolve => { wake = resolve; setTimeout(resolve, 20) })
      }
    },
  }
}

function client (t, broker, options = {}, onMessage = (_m, done) => done()) {
  /** @type {{ connected: number, closed: [string, string][], messages: { topic: string, payload: Buffer, qos: number, retain: boolean }[] }} */
  const events = { connected: 0, closed: [], messages: [] }
  let wake
  const remote = new RemoteClient(broker.url, { ...OPTIONS, ...options }, {
    connected: () => { events.connected++; wake?.() },
    closed: (kind, detail) => { events.closed.push([kind, detail]); wake?.() },
    message: (message, done) => { events.messages.push({ ...message, payload: Buffer.from(message.payload) }); onMessage(message, done); wake?.() },
  })
  t.after(() => remote.end())
  remote.start()
  const until = async (what, ms = 5000) => {
    const end = Date.now() + ms
    while (!what()) {
      if (Date.now() > end) throw new Error('timed out')
      await new Promise(resolve => { wake = resolve; setTimeout(resolve, 20) })
    }
  }
  return { remote, events, until }
}

async function connected (t, options, onMessage) {
  const broker = await scriptedBroker(t)
  const c = client(t, broker, options, onMessage)
  const connect = await broker.next('connect')
  broker.send({ cmd: 'connack', returnCode: 0, sessionPresent: true })
  await c.until(() => c.events.connected === 1)
  return { broker, connect, ...c }
}

test('CONNECT keeps the session and carries the credentials; CONNACK 0 is connected', async t => {
  const { connect } = await connected(t)
  assert.equal(connect.protocolVersion, 4)
  assert.equal(connect.clean, false)
  assert.equal(connect.clientId, 'site-7-gw')
  assert.equal(connect.username, 'gw')
  assert.equal(connect.password.toString(), 'sécret')
  assert.equal(connect.keepalive, 60)
})

test('refusals are named by their CONNACK code', async t => {
  /** @type {[number, string, RegExp][]} */
  const refusals = [[4, 'refused_bad_credentials', /bad user name or password/], [5, 'refused_not_authorized', /not authorized/], [2, 'refused_identifier', /client id/], [3, 'refused', /server unavailable/]]
  for (const [code, kind, detail] of refusals) {
    const broker = await scriptedBroker(t)
    const { events, until } = client(t, broker)
    await broker.next('connect')
    broker.send({ cmd: 'connack', returnCode: code })
    await until(() => events.closed.length === 1)
    assert.equal(events.closed[0][0], kind)
    assert.match(events.closed[0][1], detail)
    assert.equal(events.connected, 0)
  }
})

test('nobody listening: unreachable; no CONNACK in time: timeout', async t => {
  const broker = await scriptedBroker(t)
  const quiet = client(t, broker, { connectTimeoutMs: 200 })
  await quiet.until(() => quiet.events.closed.length === 1)
  assert.equal(quiet.events.closed[0][0], 'timeout')

  const free = createServer().listen(0, '127.0.0.1')
  await once(free, 'listening')
  const port = /** @type {import('node:net').AddressInfo} */ (free.address()).port
  await new Promise(resolve => free.close(resolve))
  const gone = client(t, { url: `mqtt://127.0.0.1:${port}` })
  await gone.until(() => gone.events.closed.length === 1)
  assert.equal(gone.events.closed[0][0], 'unreachable')
  assert.match(gone.events.closed[0][1], /ECONNREFUSED/)
})

test('QoS 1 publishes: ids of their own, each acknowledged by its PUBACK in any order; those in flight fail when the connection ends', async t => {
  const { broker, remote, events, until } = await connected(t)
  const acked = []
  const failed = []
  // the connection's end was told (`closed`) before each failure: the bridge has let go of it by then
  const closedFirst = []
  for (let i = 0; i < 5; i++) {
    remote.publish(`sites/7/t/${i}`, Buffer.from([i]), 1, i === 0, err => {
      if (err === undefined) {
        acked.push(i)
        return
      }
      failed.push(i)
      closedFirst.push(events.closed.length === 1)
    })
  }
  remote.publish('sites/7/q0', Buffer.from('zero'), 0, false)
  const publishes = []
  for (let i = 0; i < 6; i++) publishes.push(await broker.next('publish'))
  assert.deepEqual(publishes.map(p => [p.topic, p.qos, p.retain]), [
    ['sites/7/t/0', 1, true], ['sites/7/t/1', 1, false], ['sites/7/t/2', 1, false], ['sites/7/t/3', 1, false], ['sites/7/t/4', 1, false], ['sites/7/q0', 0, false],
  ])
  assert.equal(new Set(publishes.slice(0, 5).map(p => p.messageId)).size, 5)
  broker.send({ cmd: 'puback', messageId: publishes[2].messageId })
  broker.send({ cmd: 'puback', messageId: publishes[0].messageId })
  // an acknowledgement of nothing awaited is ignored
  broker.send({ cmd: 'puback', messageId: 999 })
  await until(() => acked.length === 2)
  assert.deepEqual(acked, [2, 0])
  broker.raw(Buffer.from([0xe0, 0x00]))
  await until(() => events.closed.length === 1)
  assert.deepEqual(failed.sort(), [1, 3, 4])
  assert.deepEqual(closedFirst, [true, true, true])
  assert.equal(events.closed[0][0], 'protocol')
})

test('SUBSCRIBE: one packet, each filter at its QoS; the grants come back in order', async t => {
  const { broker, remote } = await connected(t)
  const granted = new Promise(resolve => remote.subscribe([{ filter: 'a/#', qos: 1 }, { filter: 'b/+', qos: 0 }], (err, codes) => resolve({ err, codes })))
  const subscribe = await broker.next('subscribe')
  assert.deepEqual(subscribe.subscriptions, [{ topic: 'a/#', qos: 1 }, { topic: 'b/+', qos: 0 }])
  broker.send({ cmd: 'suback', messageId: subscribe.messageId, granted: [1, 128] })
  assert.deepEqual(await granted, { err: undefined, codes: [1, 128] })
})

test('inbound messages are handed on one at a time, in order; a QoS 1 one is acknowledged once handled; QoS 2 gets PUBREC, PUBREL gets PUBCOMP', async t => {
  const pending = []
  const { broker, events, until } = await connected(t, {}, (_message, done) => pending.push(done))
  broker.send({ cmd: 'publish', topic: 'in/1', payload: Buffer.from('one'), qos: 1, messageId: 11, retain: true })
  broker.send({ cmd: 'publish', topic: 'in/2', payload: Buffer.from('two'), qos: 1, messageId: 12 })
  broker.send({ cmd: 'publish', topic: 'in/0', payload: Buffer.from('zero'), qos: 0 })
  await until(() => events.messages.length === 1)
  await new Promise(resolve => setTimeout(resolve, 50))
  // the second waits for the first to be handled, and nothing is acknowledged yet
  assert.equal(events.messages.length, 1)
  assert.equal(broker.received.filter(p => p.cmd === 'puback').length, 0)
  pending.shift()()
  assert.equal((await broker.next('puback')).messageId, 11)
  await until(() => events.messages.length === 2)
  pending.shift()()
  assert.equal((await broker.next('puback')).messageId, 12)
  await until(() => events.messages.length === 3)
  pending.shift()()
  assert.deepEqual(events.messages.map(m => [m.topic, m.payload.toString(), m.qos, m.retain]), [['in/1', 'one', 1, true], ['in/2', 'two', 1, false], ['in/0', 'zero', 0, false]])

  broker.send({ cmd: 'publish', topic: 'in/2q', payload: Buffer.from('two'), qos: 2, messageId: 21 })
  assert.equal((await broker.next('pubrec')).messageId, 21)
  broker.send({ cmd: 'pubrel', messageId: 21 })
  assert.equal((await broker.next('pubcomp')).messageId, 21)
})

test('a packet over the bound ends the connection: protocol, said with the sizes', async t => {
  const { broker, events, until } = await connected(t)
  broker.send({ cmd: 'publish', topic: 'in/big', payload: Buffer.alloc(5000), qos: 1, messageId: 5 })
  await until(() => events.closed.length === 1)
  assert.equal(events.closed[0][0], 'protocol')
  assert.match(events.closed[0][1], /a packet of 5\d{3} bytes, above the limit of 4096/)
  assert.equal(events.messages.length, 0)
})

test('keep-alive: a PINGREQ every keepaliveSec; nothing heard for one: timeout', async t => {
  const { broker, events, until } = await connected(t, { keepaliveSec: 1 })
  await broker.next('pingreq')
  broker.send({ cmd: 'pingresp' })
  await broker.next('pingreq')
  // no answer to the second
  await until(() => events.closed.length === 1, 4000)
  assert.equal(events.closed[0][0], 'timeout')
  assert.match(events.closed[0][1], /keep-alive \(1 s\)/)
})

test('end: DISCONNECT, and no closed event for it', async t => {
  const { broker, remote, events } = await connected(t)
  await remote.end()
  await broker.next('disconnect')
  await new Promise(resolve => setTimeout(resolve, 50))
  assert.deepEqual(events.closed, [])
})

test('ws://: a WebSocket of subprotocol mqtt carries the same packets', async t => {
  const { WebSocketServer, createWebSocketStream } = await import('ws')
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await once(server, 'listening')
  t.after(() => new Promise(resolve => {
    // close() leaves the connections made open, and the server's own HTTP server waits for them
    for (const socket of server.clients) socket.terminate()
    server.close(() => resolve(undefined))
  }))
  const protocols = []
  const received = []
  server.on('connection', (socket, request) => {
    protocols.push(request.headers['sec-websocket-protocol'])
    const stream = createWebSocketStream(socket)
    stream.on('error', () => {})
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    parser.on('packet', packet => {
      received.push(packet)
      if (packet.cmd === 'connect') stream.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }))
      if (packet.cmd === 'publish') stream.write(mqttPacket.generate({ cmd: 'puback', messageId: packet.messageId }))
    })
    stream.on('data', chunk => parser.parse(chunk))
  })
  const port = /** @type {import('node:net').AddressInfo} */ (server.address()).port
  const { remote, events, until } = client(t, { url: `ws://127.0.0.1:${port}` })
  await until(() => events.connected === 1)
  const acked = new Promise(resolve => remote.publish('sites/7/ws', Buffer.from('over ws'), 1, false, resolve))
  assert.equal(await acked, undefined)
  assert.deepEqual(protocols, ['mqtt'])
  const publish = received.find(p => p.cmd === 'publish')
  assert.deepEqual([publish?.topic, publish?.payload.toString(), publish?.qos], ['sites/7/ws', 'over ws', 1])
})
