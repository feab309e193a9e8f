// Bad bytes and bad packets: refused by the frame guard before aedes decodes them, or answered in-band; the gateway
// keeps serving everyone else.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'
import test from 'node:test'
import mqtt from 'mqtt'
import { WebSocketServer, createWebSocketStream } from 'ws'
import { packr, unpackr } from '../../dist/protocol/codec.js'
import { connectClient, portOf, startGateway, tempDir, waitFor } from '../helpers.js'
import { connectFrame, frame, publishFrame, rawSocket, subscribeFrame, u16, unsubscribeFrame, within } from '../mqtt-frames.js'

const CONNACK_ACCEPTED = Buffer.from([0x20, 2, 0, 0])
const CONNACK_IDENTIFIER_REJECTED = Buffer.from([0x20, 2, 0, 2])

async function servingGateway (t, options) {
  const gw = await startGateway(t, options)
  await gw.serve('Svc/ping', async () => 'pong')
  return gw
}

test('client ids with control characters or a prototype name, and an empty id with a persistent session, get CONNACK 0x02; NUL or broken UTF-8 closes without one', async t => {
  const gw = await servingGateway(t)
  /** @type {[string, Buffer][]} */
  const rejected = [
    ['control character', connectFrame({ clientId: 'a\u001bb' })],
    ['DEL', connectFrame({ clientId: 'a\u007f' })],
    ['C1 control', connectFrame({ clientId: 'a\u0085' })],
    ['__proto__', connectFrame({ clientId: '__proto__' })],
    ['constructor', connectFrame({ clientId: 'constructor' })],
    ['empty id, persistent session', connectFrame({ clientId: '', clean: false })],
  ]
  // [MQTT-1.5.3-1, MQTT-1.5.3-2]: the connection is closed, no CONNACK
  /** @type {[string, Buffer][]} */
  const closed = [
    ['NUL', connectFrame({ clientId: 'a\u0000b' })],
    ['broken UTF-8', connectFrame({ clientId: Buffer.from([0x61, 0xc3, 0x28]) })],
    ['a lone surrogate', connectFrame({ clientId: Buffer.from([0xed, 0xa0, 0x80]) })],
    ['overlong encoding', connectFrame({ clientId: Buffer.from([0xc0, 0xaf]) })],
  ]
  for (const [cases, answer] of /** @type {const} */ ([[rejected, CONNACK_IDENTIFIER_REJECTED], [closed, Buffer.alloc(0)]])) {
    for (const [what, bytes] of cases) {
      const raw = await rawSocket(t, gw.port)
      raw.socket.write(bytes)
      assert.ok(await within(raw.closed, 3000), `${what}: the connection is closed`)
      assert.deepEqual(raw.received(), answer, `${what}: ${answer.length === 0 ? 'no CONNACK' : 'CONNACK identifier rejected'}`)
    }
  }
  // a client id of the safe set is fine, and so is an empty one with a clean session (the gateway assigns one)
  for (const clientId of ['capteur-7_temp.1:a@b', '']) {
    const raw = await rawSocket(t, gw.port)
    raw.socket.write(connectFrame({ clientId }))
    await waitFor(() => raw.received().length >= 4, 2000, 'CONNACK')
    assert.deepEqual(raw.received().subarray(0, 4), CONNACK_ACCEPTED)
  }
  const bystander = await connectClient(t, gw)
  assert.equal(await bystander.invoke('Svc/ping'), 'pong')
})

test('bad bytes in user names, will topics, topics and filters cut the connection before aedes sees them', async t => {
  const gw = await servingGateway(t)
  const seen = []
  await gw.subscribe('#', topic => seen.push(topic))
  const connected = connectFrame({ clientId: 'bad-bytes' })
  /** @type {[string, Buffer[]][]} */
  const cases = [
    ['user name with NUL', [connectFrame({ clientId: 'u1', username: 'a\u0000' })]],
    ['user name broken UTF-8', [connectFrame({ clientId: 'u2', username: Buffer.from([0xff]) })]],
    ['will topic with a control character', [connectFrame({ clientId: 'u3', will: { topic: 'w/\u0001' } })]],
    ['PUBLISH topic with NUL', [connected, publishFrame(Buffer.from('evil/\u0000/x'), 'x')]],
    ['PUBLISH topic broken UTF-8', [connected, publishFrame(Buffer.from([0x61, 0x2f, 0xe2, 0x82]), 'x')]],
    ['PUBLISH topic that mqtt-packet would turn into U+FFFD', [connected, publishFrame(Buffer.from([0x61, 0xfe]), 'x')]],
    ['SUBSCRIBE filter with a control character', [connected, subscribeFrame(1, ['ok', 'a/\u0008'])]],
    ['UNSUBSCRIBE filter broken UTF-8', [connected, unsubscribeFrame(2, [Buffer.from([0xc3])])]],
    ['a first packet that is not CONNECT', [publishFrame('a', 'b')]],
    ['a second CONNECT', [connected, connected]],
    ['a topic longer than its packet', [connected, frame(0x30, Buffer.concat([u16(500), Buffer.from('short')]))]],
  ]
  for (const [what, frames] of cases) {
    const raw = await rawSocket(t, gw.port)
    raw.socket.write(Buffer.concat(frames))
    assert.ok(await within(raw.closed, 3000), `${what}: the connection is cut`)
  }
  assert.deepEqual(seen, [], 'nothing was published')
  const bystander = await connectClient(t, gw)
  assert.equal(await bystander.invoke('Svc/ping'), 'pong')
})

test('the guard reads frames split at every byte: good ones pass, a bad topic is caught across chunks', async t => {
  const gw = await servingGateway(t)
  const seen = []
  await gw.subscribe('split/#', (topic, payload) => seen.push(`${topic}=${payload}`))
  const dribble = async (socket, bytes) => {
    for (const byte of bytes) {
      socket.write(Buffer.from([byte]))
      await new Promise(resolve => setImmediate(resolve))
    }
  }
  const good = await rawSocket(t, gw.port)
  await dribble(good.socket, Buffer.concat([connectFrame({ clientId: 'dribbler' }), publishFrame('split/é', 'one byte at a time')]))
  await waitFor(() => seen.length === 1, 3000, 'the dribbled event')
  assert.deepEqual(seen, ['split/é=one byte at a time'])

  const bad = await rawSocket(t, gw.port)
  await dribble(bad.socket, Buffer.concat([connectFrame({ clientId: 'dribbler2' }), publishFrame(Buffer.from('split/\u0000'), 'x')]))
  assert.ok(await within(bad.closed, 3000))
  assert.equal(seen.length, 1)
})

test('prototype names are refused as service and function names', async t => {
  const gw = await servingGateway(t)
  const client = await connectClient(t, gw)
  for (const name of ['constructor/fn', 'Svc/constructor', 'prototype/x', 'Svc/__proto__']) {
    await assert.rejects(client.invoke(name), { code: 'FNBUS_INVALID_ARGUMENT' }, name)
    await assert.rejects(gw.serve(name, async () => 1), { code: 'FNBUS_INVALID_ARGUMENT' }, name)
  }
})

test('malformed envelopes get a coded error where the sender can be addressed, and touch no one else', async t => {
  const gw = await servingGateway(t)
  const bystander = await connectClient(t, gw)
  const raw = await mqtt.connectAsync(gw.url, { clientId: 'malformed', reconnectPeriod: 0 })
  t.after(() => raw.endAsync(true))
  await raw.subscribeAsync('$fn/in/malformed')
  const inbox = []
  raw.on('message', (topic, payload) => inbox.push(...unpackr.unpackMultiple(payload)))
  const send = value => raw.publish('$fn/up', Buffer.isBuffer(value) ? value : packr.pack(value))
  send(Buffer.alloc(0))
  send(Buffer.from([0xc1]))
  send(packr.pack([1, 2, 3]))
  send({ v: 1, t: 'call', id: 1, fn: 'Svc/ping', it: 'Sync', pk: 9, p: Buffer.alloc(0) })
  send({ v: 1, t: 'call', id: 2, fn: 'Svc/ping', it: 'Later', pk: 1, p: Buffer.alloc(0) })
  send({ v: 1, t: 'call', id: 3, fn: 7, it: 'Sync', pk: 1, p: Buffer.alloc(0) })
  send({ v: 1, t: 'reg', id: 4, fn: 'Svc/x', conc: -1 })
  send({ v: 1, t: 'call', id: 5, fn: 'Svc/ping', it: 'Async', pk: 1, p: Buffer.alloc(0), ik: '__proto__' })
  send({ v: 1, t: 'call', id: 6, fn: 'Svc/ping', it: 'Sync', pk: 1, p: Buffer.alloc(0), ctx: { __proto__: { polluted: true } } })
  send({ v: 'x', t: 'hello', id: 7 })
  send({ v: 1, t: 'cancel', id: 8, iid: '' })
  await waitFor(() => inbox.length >= 11, 3000, 'an answer to each')
  const codes = Object.fromEntries(inbox.map(e => [e.id === 0 ? `0-${inbox.indexOf(e)}` : e.id, e.t === 'error' ? e.code : e.t]))
  assert.deepEqual(Object.values(codes).filter(c => c === 'FNBUS_BAD_MESSAGE').length >= 3, true, JSON.stringify(codes))
  assert.equal(codes[1], 'FNBUS_BAD_MESSAGE')
  assert.equal(codes[2], 'FNBUS_BAD_MESSAGE')
  assert.equal(codes[3], 'FNBUS_BAD_MESSAGE')
  assert.equal(codes[4], 'FNBUS_BAD_MESSAGE')
  assert.equal(codes[5], 'FNBUS_INVALID_ARGUMENT')
  assert.equal(codes[6], 'reply', 'a context map with a __proto__ key is data, not a prototype')
  assert.equal(codes[7], 'FNBUS_PROTOCOL_MISMATCH')
  assert.equal(codes[8], 'FNBUS_INVALID_ARGUMENT')
  assert.equal({}.polluted, undefined, 'no prototype was polluted')
  assert.ok(raw.connected)
  assert.equal(await bystander.invoke('Svc/ping'), 'pong')
})

test('the frame guard applies on a WebSocket listener too (bus.handle on any stream)', async t => {
  const gw = await servingGateway(t, { limits: { maxPayloadBytes: 10_000 } })
  const http = createServer()
  const wss = new WebSocketServer({ server: http })
  wss.on('connection', ws => gw.bus.handle(createWebSocketStream(ws)))
  await new Promise(resolve => http.listen(0, '127.0.0.1', () => resolve(undefined)))
  t.after(() => new Promise(resolve => { wss.close(); http.close(resolve); for (const c of wss.clients) c.terminate() }))
  const url = `ws://127.0.0.1:${portOf(http)}`

  const good = await mqtt.connectAsync(url, { clientId: 'ws-good', reconnectPeriod: 0 })
  t.after(() => good.endAsync(true))
  const seen = []
  await good.subscribeAsync('ws/#')
  good.on('message', topic => seen.push(topic))
  await good.publishAsync('ws/hello', 'small')
  await waitFor(() => seen.includes('ws/hello'), 2000, 'the event over WebSocket')

  const big = await mqtt.connectAsync(url, { clientId: 'ws-big', reconnectPeriod: 0 })
  t.after(() => big.endAsync(true))
  const closed = new Promise(resolve => big.once('close', () => resolve(undefined)))
  big.publish('ws/big', Buffer.alloc(200_000))
  assert.ok(await within(closed, 3000), 'an oversize frame over WebSocket cuts the connection')
  const bad = await mqtt.connectAsync(url, { clientId: 'ws-bad', reconnectPeriod: 0 })
  t.after(() => bad.endAsync(true))
  const badClosed = new Promise(resolve => bad.once('close', () => resolve(undefined)))
  bad.publish('ws/\u0000', 'x')
  assert.ok(await within(badClosed, 3000), 'a NUL in a topic over WebSocket cuts the connection')
  assert.ok(good.connected)
})

test('the frame guard applies on the TLS listener too', async t => {
  const dir = await tempDir(t)
  const cert = join(dir, 'gateway.crt')
  const key = join(dir, 'gateway.key')
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-keyout', key, '-out', cert, '-subj', '/CN=fnbus test gateway', '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' })
  const gw = await servingGateway(t, { tls: { cert: readFileSync(cert), key: readFileSync(key) }, limits: { maxPayloadBytes: 10_000 } })
  const options = { reconnectPeriod: 0, ca: readFileSync(cert) }
  const good = await mqtt.connectAsync(gw.url, { clientId: 'tls-good', ...options })
  t.after(() => good.endAsync(true))
  for (const [clientId, misbehave] of /** @type {[string, (client: import('mqtt').MqttClient) => void][]} */ ([
    ['tls-big', client => client.publish('tls/big', Buffer.alloc(200_000))],
    ['tls-nul', client => client.publish('tls/\u0000', 'x')],
  ])) {
    const client = await mqtt.connectAsync(gw.url, { clientId, ...options })
    t.after(() => client.endAsync(true))
    const closed = new Promise(resolve => client.once('close', () => resolve(undefined)))
    misbehave(client)
    assert.ok(await within(closed, 3000), `${clientId}: cut`)
  }
  await good.publishAsync('tls/fine', 'x')
  assert.ok(good.connected)
})
