// limits.maxSessionQueue*, limits.maxRetained*: what aedes keeps on disk for persistent sessions and retained
// messages is bounded, on a real LevelDB data directory, and the bounds hold across a restart.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'node:test'
import { Level } from 'level'
import mqtt from 'mqtt'
import mqttPacket from 'mqtt-packet'
import { MetricsPlugin } from '../../dist/plugins/metrics/index.js'
import { startGateway, tempDir, waitFor } from '../helpers.js'
import { connectFrame, frame, rawSocket, str, u16 } from '../mqtt-frames.js'

const KIB = 1024

async function mqttClient (t, url, options = {}) {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, ...options })
  t.after(() => client.endAsync(true))
  return client
}

/** A payload of `size` random bytes (LevelDB compresses nothing) numbered `n` (its first 4 bytes). */
function numbered (n, size) {
  const payload = randomBytes(size)
  payload.writeUInt32BE(n)
  return payload
}

/** Bytes the data directory takes on disk. */
async function diskBytes (dir) {
  let total = 0
  for (const name of await readdir(dir)) total += (await stat(join(dir, name))).size
  return total
}

/** Stored records of aedes' persistence by kind, read from the closed data directory: outgoing counts per client, retained topics. */
async function storedRecords (dir) {
  const db = new Level(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' })
  await db.open()
  try {
    const queued = new Map()
    for await (const key of db.keys({ gte: '!aedes!outgoing:', lt: '!aedes!outgoing;' })) {
      const clientId = decodeURIComponent(key.split(':')[1])
      queued.set(clientId, (queued.get(clientId) ?? 0) + 1)
    }
    const retained = []
    for await (const key of db.keys({ gte: '!aedes!retained:', lt: '!aedes!retained;' })) retained.push(key.slice('!aedes!retained:'.length))
    return { queued, retained }
  } finally {
    await db.close()
  }
}

/** `count` persistent sessions subscribed to `filter` at QoS 1, gone offline. */
async function offlineSessions (t, gw, count, filter) {
  for (let i = 0; i < count; i++) {
    const client = await mqttClient(t, gw.url, { clientId: `away-${i}`, clean: false })
    await client.subscribeAsync(filter, { qos: 1 })
    await client.endAsync()
  }
}

test('offline persistent sessions: each queue stops at maxSessionQueueMessages / maxSessionQueueBytes, newest dropped, disk bounded', async t => {
  const dataDir = await tempDir(t)
  const limits = { maxSessionQueueMessages: 40, maxSessionQueueBytes: 256 * KIB }
  const metrics = new MetricsPlugin()
  let gw = await startGateway(t, { dataDir, limits, plugins: [metrics] })
  await offlineSessions(t, gw, 20, 'tele/#')
  const publisher = await mqttClient(t, gw.url)
  // 2 MiB of QoS 1 traffic, which aedes alone would store once per session: 40 MiB
  for (let i = 0; i < 200; i++) await publisher.publishAsync('tele/a', numbered(i, 10 * KIB), { qos: 1 })

  // 10 KiB + topic + 128 B of record per message: 25 fit in 256 KiB, under the count bound
  const KEPT = 25
  const usage = gw.brokerStorage()
  assert.equal(usage.sessions, 20)
  assert.equal(usage.queuedMessages, 20 * KEPT)
  assert.ok(usage.queuedBytes <= 20 * 256 * KIB)
  assert.match(await metrics.metrics(), new RegExp(`^fnbus_dropped_messages_total\\{reason="session_queue_full"\\} ${20 * (200 - KEPT)}$`, 'm'))
  assert.match(await metrics.metrics(), new RegExp(`^fnbus_session_queue_messages ${20 * KEPT}$`, 'm'))
  await publisher.endAsync()
  await gw.close()

  const disk = await diskBytes(dataDir)
  t.diagnostic(`20 offline sessions, 200 × 10 KiB QoS 1 published: ${(disk / 1048576).toFixed(1)} MiB on disk (aedes alone: over 40 MiB)`)
  assert.ok(disk < 12 * 1048576, `${disk} bytes on disk`)
  const { queued } = await storedRecords(dataDir)
  assert.equal(queued.size, 20)
  for (const [clientId, count] of queued) assert.equal(count, KEPT, `${clientId}'s queue`)

  // after a restart the queues are counted from the store: still full, and a session gets the oldest messages
  gw = await startGateway(t, { dataDir, limits })
  assert.equal(gw.brokerStorage().queuedMessages, 20 * KEPT)
  const again = await mqttClient(t, gw.url)
  for (let i = 200; i < 210; i++) await again.publishAsync('tele/a', numbered(i, 10 * KIB), { qos: 1 })
  assert.equal(gw.brokerStorage().queuedMessages, 20 * KEPT)
  const numbers = []
  const back = await mqttClient(t, gw.url, { clientId: 'away-0', clean: false })
  back.on('message', (_topic, payload) => numbers.push(payload.readUInt32BE(0)))
  await waitFor(() => numbers.length === KEPT, 10_000, 'the returning session\'s queue')
  assert.deepEqual(numbers, Array.from({ length: KEPT }, (_, i) => i))
  // acknowledged, its queue is free again: the next message is kept for it
  await waitFor(() => gw.brokerStorage().queuedMessages === 19 * KEPT, 5000, 'the acknowledgements')
  await back.endAsync()
  await again.publishAsync('tele/a', numbered(300, 10 * KIB), { qos: 1 })
  assert.equal(gw.brokerStorage().queuedMessages, 19 * KEPT + 1)
})

test('a session\'s queue stops at maxSessionQueueMessages, connected or not, in memory too; what it refuses a connected one does not get either', async t => {
  const gw = await startGateway(t, { limits: { maxSessionQueueMessages: 5 } })
  const dropped = []
  gw.events.on('messageDropped', o => dropped.push(o))
  await offlineSessions(t, gw, 1, 'small/#')
  // a connected session that never acknowledges: its unacknowledged messages stay queued too
  const numbers = []
  const silent = await rawSocket(t, gw.port)
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  parser.on('packet', packet => { if (packet.cmd === 'publish') numbers.push(/** @type {Buffer} */ (packet.payload).readUInt32BE(0)) })
  silent.socket.on('data', chunk => parser.parse(chunk))
  silent.socket.write(Buffer.concat([connectFrame({ clientId: 'silent', clean: false }), frame(0x82, Buffer.concat([u16(1), str('small/#'), Buffer.from([1])]))]))
  await waitFor(() => gw.aedes.clients.silent?.subscriptions['small/#'] !== undefined, 5000, 'the silent subscription')
  const publisher = await mqttClient(t, gw.url)
  for (let i = 0; i < 12; i++) await publisher.publishAsync('small/x', numbered(i, 16), { qos: 1 })
  await waitFor(() => numbers.length === 5, 5000, 'the first five at the connected session')
  assert.equal(gw.brokerStorage().queuedMessages, 10)
  assert.deepEqual(dropped.map(o => `${o.clientId} ${o.reason}`).sort(), [...Array(7).fill('away-0 session_queue_full'), ...Array(7).fill('silent session_queue_full')])
  // what its queue refused is not delivered either, and the connection stays
  await new Promise(resolve => setTimeout(resolve, 200))
  assert.deepEqual(numbers, [0, 1, 2, 3, 4])
  assert.ok(gw.aedes.clients.silent !== undefined)
})

test('a connected session with overlapping subscriptions whose queue is full loses the message once and stays connected', async t => {
  const dataDir = await tempDir(t)
  const gw = await startGateway(t, { dataDir, limits: { maxSessionQueueMessages: 5 } })
  const dropped = []
  gw.events.on('messageDropped', o => dropped.push(o))
  const numbers = []
  const silent = await rawSocket(t, gw.port)
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  parser.on('packet', packet => { if (packet.cmd === 'publish') numbers.push(/** @type {Buffer} */ (packet.payload).readUInt32BE(0)) })
  silent.socket.on('data', chunk => parser.parse(chunk))
  // two filters matching the same topic: aedes routes each message to the connection twice, and writes it once
  const filters = Buffer.concat([u16(1), str('small/#'), Buffer.from([1]), str('small/x'), Buffer.from([1])])
  silent.socket.write(Buffer.concat([connectFrame({ clientId: 'silent', clean: false }), frame(0x82, filters)]))
  await waitFor(() => gw.aedes.clients.silent?.subscriptions['small/x'] !== undefined, 5000, 'the silent subscriptions')
  const publisher = await mqttClient(t, gw.url)
  for (let i = 0; i < 12; i++) await publisher.publishAsync('small/x', numbered(i, 16), { qos: 1 })
  await waitFor(() => numbers.length === 5, 5000, 'the first five')
  await new Promise(resolve => setTimeout(resolve, 200))
  assert.deepEqual(numbers, [0, 1, 2, 3, 4])
  assert.equal(dropped.length, 7)
  assert.ok(gw.aedes.clients.silent !== undefined, 'still connected')
})

test('all persistent sessions together stop at maxSessionQueueBytesTotal', async t => {
  const dataDir = await tempDir(t)
  const gw = await startGateway(t, { dataDir, limits: { maxSessionQueueBytesTotal: 1024 * KIB } })
  const dropped = []
  gw.events.on('messageDropped', o => dropped.push(o))
  await offlineSessions(t, gw, 10, 'tele/#')
  const publisher = await mqttClient(t, gw.url)
  for (let i = 0; i < 50; i++) await publisher.publishAsync('tele/b', numbered(i, 10 * KIB), { qos: 1 })
  const { queuedBytes, queuedMessages } = gw.brokerStorage()
  assert.ok(queuedBytes <= 1024 * KIB, `${queuedBytes} bytes queued`)
  assert.ok(queuedMessages >= 95, `${queuedMessages} messages queued`)
  assert.equal(dropped.length, 500 - queuedMessages)
  assert.ok(dropped.every(o => o.reason === 'session_queues_full' && o.topic === 'tele/b' && o.clientId.startsWith('away-')))
})

test('retained messages stop at maxRetainedMessages / maxRetainedBytes: newer topics are routed, not retained; disk bounded', async t => {
  const dataDir = await tempDir(t)
  const limits = { maxRetainedMessages: 10, maxRetainedBytes: 1000 * KIB }
  const metrics = new MetricsPlugin()
  let gw = await startGateway(t, { dataDir, limits, plugins: [metrics] })
  const live = await mqttClient(t, gw.url)
  await live.subscribeAsync('invented/#')
  const publisher = await mqttClient(t, gw.url)
  // 20 MiB of retained messages on invented topics, which aedes alone would all keep; each is routed live. (One at a
  // time: aedes handles a client's next PUBLISH before the last is routed, and may route them out of order.)
  for (let i = 0; i < 200; i++) {
    const routed = new Promise(resolve => live.once('message', topic => resolve(topic)))
    await publisher.publishAsync(`invented/${i}`, numbered(i, 100 * KIB), { qos: 1, retain: true })
    assert.equal(await routed, `invented/${i}`)
  }
  assert.equal(gw.brokerStorage().retainedMessages, 9, '9 × 100 KiB and their records fit in 1000 KiB')
  assert.match(await metrics.metrics(), /^fnbus_dropped_messages_total\{reason="retained_full"\} 191$/m)

  // a stored topic may be updated within the bound; an update past it removes the outdated value
  await publisher.publishAsync('invented/0', numbered(1000, 10 * KIB), { qos: 1, retain: true })
  await publisher.publishAsync('invented/1', numbered(1001, 900 * KIB), { qos: 1, retain: true })
  // an empty retained message removes one, freeing room
  await publisher.publishAsync('invented/2', Buffer.alloc(0), { qos: 1, retain: true })
  await publisher.publishAsync('invented/new', numbered(2000, 10 * KIB), { qos: 1, retain: true })
  const usage = gw.brokerStorage()
  assert.equal(usage.retainedMessages, 8)
  assert.ok(usage.retainedBytes <= 1000 * KIB)

  const seen = new Map()
  const late = await mqttClient(t, gw.url)
  late.on('message', (topic, payload, packet) => { if (packet.retain) seen.set(topic, payload.readUInt32BE(0)) })
  await late.subscribeAsync('invented/#')
  await waitFor(() => seen.size === 8, 5000, 'the retained messages')
  assert.deepEqual([...seen.keys()].sort(), ['invented/0', 'invented/3', 'invented/4', 'invented/5', 'invented/6', 'invented/7', 'invented/8', 'invented/new'])
  assert.equal(seen.get('invented/0'), 1000)
  await gw.close()

  const disk = await diskBytes(dataDir)
  t.diagnostic(`200 × 100 KiB retained on invented topics: ${(disk / 1048576).toFixed(1)} MiB on disk (aedes alone: over 20 MiB)`)
  assert.ok(disk < 8 * 1048576, `${disk} bytes on disk`)
  assert.equal((await storedRecords(dataDir)).retained.length, 8)

  // counted again at start: the bound still holds
  gw = await startGateway(t, { dataDir, limits })
  assert.deepEqual(gw.brokerStorage().retainedMessages, 8)
  const third = await mqttClient(t, gw.url)
  await third.publishAsync('invented/later-1', numbered(3000, 10 * KIB), { qos: 1, retain: true })
  await third.publishAsync('invented/later-2', numbered(3001, 10 * KIB), { qos: 1, retain: true })
  await third.publishAsync('invented/later-3', numbered(3002, 10 * KIB), { qos: 1, retain: true })
  assert.equal(gw.brokerStorage().retainedMessages, 10)
})
