// Payload limits, and the frame guard in front of aedes.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import test from 'node:test'
import mqtt from 'mqtt'
import { connectClient, rejection, startGateway, waitFor } from '../helpers.js'

test('payloads up to the limit round-trip byte-exact; larger ones are refused locally with FNBUS_PAYLOAD_TOO_LARGE', async t => {
  const gw = await startGateway(t)
  const worker = await connectClient(t, gw)
  await worker.serve('Svc/echo', async event => event)
  const caller = await connectClient(t, gw)
  assert.equal(caller.limits?.maxPayloadBytes, 1024 * 1024, 'the client learned the limit when it connected')
  const largest = randomBytes(1024 * 1024)
  const back = await caller.invoke('Svc/echo', largest)
  assert.ok(Buffer.isBuffer(back) && back.equals(largest))
  const text = 'é'.repeat(512 * 1024) // 1 MiB of UTF-8
  assert.equal(await caller.invoke('Svc/echo', text), text)

  const err = await rejection(caller.invoke('Svc/echo', randomBytes(1024 * 1024 + 1)))
  assert.equal(err.code, 'FNBUS_PAYLOAD_TOO_LARGE')
  await assert.rejects(caller.publish('big/event', Buffer.alloc(1024 * 1024 + 1)), { code: 'FNBUS_PAYLOAD_TOO_LARGE' })
  assert.equal(await caller.invoke('Svc/echo', 'still fine'), 'still fine', 'the connection survived')
})

test('the limit is configurable, and a function answer over it is FNBUS_PAYLOAD_TOO_LARGE', async t => {
  const gw = await startGateway(t, { limits: { maxPayloadBytes: 1000 } })
  const worker = await connectClient(t, gw)
  await worker.serve('Svc/inflate', async n => 'x'.repeat(n))
  const caller = await connectClient(t, gw)
  assert.equal(caller.limits?.maxPayloadBytes, 1000)
  assert.equal(/** @type {string} */ (await caller.invoke('Svc/inflate', 1000)).length, 1000)
  assert.equal((await rejection(caller.invoke('Svc/inflate', 1001))).code, 'FNBUS_PAYLOAD_TOO_LARGE')
  assert.equal((await rejection(caller.invoke('Svc/inflate', 'y'.repeat(1001)))).code, 'FNBUS_PAYLOAD_TOO_LARGE')
  // an in-process caller's payload is measured where it meets the wire
  assert.equal((await rejection(gw.invoke('Svc/inflate', Buffer.alloc(1001)))).code, 'FNBUS_PAYLOAD_TOO_LARGE')
})

test('a raw client that sends an oversize PUBLISH is cut off; the gateway keeps serving others', async t => {
  const gw = await startGateway(t, { limits: { maxPayloadBytes: 10_000 } })
  await gw.serve('Svc/ping', async () => 'pong')
  const bystander = await connectClient(t, gw)
  const raw = await mqtt.connectAsync(gw.url, { reconnectPeriod: 0 })
  t.after(() => raw.endAsync(true))
  const closed = new Promise(resolve => raw.once('close', () => resolve(undefined)))
  raw.publish('some/topic', Buffer.alloc(200_000))
  await closed
  assert.equal(await bystander.invoke('Svc/ping'), 'pong')
})

test('a frame declaring 256 MB is refused from its header, before anything is buffered', async t => {
  const gw = await startGateway(t)
  await gw.serve('Svc/ping', async () => 'pong')
  const bystander = await connectClient(t, gw)
  const socket = connect(gw.port, '127.0.0.1')
  socket.on('error', () => {}) // the gateway resets the connection
  socket.resume() // a socket that reads learns of the reset even when all it wrote is in the kernel already
  t.after(() => socket.destroy())
  await new Promise(resolve => socket.once('connect', resolve))
  const closed = new Promise(resolve => socket.once('close', () => resolve(undefined)))
  const before = process.memoryUsage().rss
  // CONNECT (MQTT 3.1.1, clean session, client id "big")
  socket.write(Buffer.from([0x10, 15, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, 0, 3, 0x62, 0x69, 0x67]))
  // PUBLISH declaring a remaining length of 268,435,455 bytes, then a first MB of it
  socket.write(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]))
  socket.write(Buffer.alloc(1024 * 1024))
  await closed
  const grown = process.memoryUsage().rss - before
  assert.ok(grown < 64 * 1024 * 1024, `the gateway process grew by ${grown} bytes`)
  assert.equal(await bystander.invoke('Svc/ping'), 'pong')
})

test('a malformed remaining length (five bytes) cuts the connection', async t => {
  const gw = await startGateway(t)
  const socket = connect(gw.port, '127.0.0.1')
  socket.on('error', () => {}) // the gateway resets the connection
  t.after(() => socket.destroy())
  await new Promise(resolve => socket.once('connect', resolve))
  const closed = new Promise(resolve => socket.once('close', () => resolve(undefined)))
  socket.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x01]))
  await closed
  await waitFor(() => gw.aedes.connectedClients === 0, 1000, 'no client left behind')
})
