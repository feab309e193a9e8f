// PersistenceBounds around aedes-persistence-level on a real LevelDB: an acknowledgement of a session with nothing
// queued is answered without reading the disk (every QoS 1 delivery to a clean session's subscriber ends in one),
// and one of a session with messages queued still clears them, on disk and in the counts.
import assert from 'node:assert/strict'
import test from 'node:test'
import aedesPersistenceLevel from 'aedes-persistence-level'
import { Level } from 'level'
import { PersistenceBounds } from '../../dist/broker/persistence-bounds.js'
import { tempDir } from '../helpers.js'

const LIMITS = { maxSessionQueueMessages: 100, maxSessionQueueBytes: 1 << 20, maxSessionQueueBytesTotal: 1 << 24, maxRetainedMessages: 100, maxRetainedBytes: 1 << 20 }
const silent = { debug () {}, info () {}, warn () {}, error () {}, child () { return silent } }

async function setUp (t) {
  const db = new Level(await tempDir(t), { keyEncoding: 'utf8', valueEncoding: 'buffer' })
  await db.open()
  t.after(() => db.close())
  const records = db.sublevel('aedes', { valueEncoding: 'buffer' })
  const persistence = aedesPersistenceLevel(records)
  // the reads the bounds let through to LevelDB
  let reads = 0
  const clear = persistence.outgoingClearMessageId.bind(persistence)
  persistence.outgoingClearMessageId = (client, packet) => { reads++; return clear(client, packet) }
  const bounds = await PersistenceBounds.install(/** @type {any} */ ({ persistence, clients: {} }), records, { limits: LIMITS, logger: silent, onDrop () {}, onRefusedConnected () {} })
  return { persistence, bounds, records, reads: () => reads }
}

function message (counter) {
  return { cmd: 'publish', topic: 'tele/a', payload: Buffer.from(`m${counter}`), qos: 1, retain: false, dup: false, brokerId: 'b1', brokerCounter: counter, messageId: counter }
}

test('a session with nothing queued: its acknowledgements never read LevelDB', async t => {
  const { persistence, reads } = await setUp(t)
  for (let id = 1; id <= 50; id++) assert.equal(await persistence.outgoingClearMessageId({ id: 'clean-sub' }, { messageId: id }), undefined)
  assert.equal(reads(), 0)
})

test('a session with messages queued: acknowledging each clears it from disk and from the counts; then no more reads', async t => {
  const { persistence, bounds, records, reads } = await setUp(t)
  const sub = { clientId: 'away' }
  for (let n = 1; n <= 3; n++) {
    await persistence.outgoingEnqueueCombi([sub], message(n))
    await persistence.outgoingUpdate({ id: 'away' }, message(n))
  }
  assert.equal(bounds.usage.queuedMessages, 3)
  for (let n = 1; n <= 3; n++) {
    const cleared = await persistence.outgoingClearMessageId({ id: 'away' }, { messageId: n })
    assert.equal(cleared?.brokerCounter, n)
  }
  assert.equal(reads(), 3)
  assert.equal(bounds.usage.queuedMessages, 0)
  const left = []
  for await (const key of records.keys({ gte: 'outgoing', lt: 'outgoinh' })) left.push(key)
  assert.deepEqual(left, [])
  // the queue is empty: a stray acknowledgement is answered from memory
  assert.equal(await persistence.outgoingClearMessageId({ id: 'away' }, { messageId: 9 }), undefined)
  assert.equal(reads(), 3)
})

test('messages queued before a restart are counted from disk: their acknowledgements still read and clear them', async t => {
  const dir = await tempDir(t)
  let db = new Level(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' })
  await db.open()
  const before = aedesPersistenceLevel(db.sublevel('aedes', { valueEncoding: 'buffer' }))
  await before.outgoingEnqueueCombi([{ clientId: 'away' }], message(7))
  await before.outgoingUpdate({ id: 'away' }, message(7))
  await db.close()

  db = new Level(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' })
  await db.open()
  t.after(() => db.close())
  const records = db.sublevel('aedes', { valueEncoding: 'buffer' })
  const persistence = aedesPersistenceLevel(records)
  const bounds = await PersistenceBounds.install(/** @type {any} */ ({ persistence, clients: {} }), records, { limits: LIMITS, logger: silent, onDrop () {}, onRefusedConnected () {} })
  assert.equal(bounds.usage.queuedMessages, 1)
  const cleared = await persistence.outgoingClearMessageId({ id: 'away' }, { messageId: 7 })
  assert.equal(cleared?.brokerCounter, 7)
  assert.equal(bounds.usage.queuedMessages, 0)
})
