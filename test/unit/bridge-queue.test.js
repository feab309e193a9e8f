// A bridge's outbound queue (src/bridge/outbound-queue.ts, queue-disk.ts): order, acknowledgements, resends, bounds
// with the oldest dropped and counted, and what a restart finds on a real LevelDB.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { OutboundQueue, HOT_BYTES } from '../../dist/bridge/outbound-queue.js'
import { QueueDisk, decodeRecord, encodeRecord } from '../../dist/bridge/queue-disk.js'
import { openDatabase } from '../../dist/store/database.js'
import { tempDir } from '../helpers.js'

const BOUNDS = { maxMessages: 1000, maxBytes: 1 << 30, maxAgeMs: 3600_000 }

function memoryQueue (bounds = {}, now = Date.now) {
  /** @type {[string, number][]} */
  const drops = []
  const queue = new OutboundQueue({ bounds: { ...BOUNDS, ...bounds }, disk: undefined, onDrop: (reason, count) => drops.push([reason, count]), now })
  return { queue, drops }
}

const payloads = entries => entries.map(entry => entry.record?.payload.toString())

test('records round-trip through their encoding', () => {
  const record = { topic: 'sites/7/ü', payload: Buffer.from([0, 1, 255]), retain: true, at: 1733300000123 }
  assert.deepEqual(decodeRecord(encodeRecord(record)), record)
  assert.equal(decodeRecord(encodeRecord({ ...record, retain: false })).retain, false)
})

test('messages are taken in order, leave on their acknowledgement, and are taken again from the oldest after a rewind', async () => {
  const { queue } = memoryQueue()
  for (let i = 0; i < 5; i++) assert.equal(queue.push('t', Buffer.from(String(i)), false), undefined)
  assert.equal(queue.messages, 5)
  assert.ok(queue.ready)
  const first = await queue.take(3)
  assert.deepEqual(payloads(first), ['0', '1', '2'])
  assert.deepEqual(payloads(await queue.take(10)), ['3', '4'])
  assert.equal(queue.ready, false)
  assert.deepEqual(await queue.take(10), [])
  // acknowledged out of order: the second leaves, the first stays
  queue.ack(/** @type {any} */ (first[1]))
  queue.ack(/** @type {any} */ (first[1]))
  assert.equal(queue.messages, 4)
  queue.rewind()
  assert.deepEqual(payloads(await queue.take(10)), ['0', '2', '3', '4'])
  assert.equal(queue.bytes, 4 * (11 + 1 + 1))
})

test('past maxMessages or maxBytes the oldest are dropped and counted; one message over maxBytes is dropped alone', async () => {
  const { queue, drops } = memoryQueue({ maxMessages: 3, maxBytes: 1024 + 11 + 1 })
  for (let i = 0; i < 5; i++) queue.push('t', Buffer.from(String(i)), false)
  assert.deepEqual(drops, [['maxMessages', 1], ['maxMessages', 1]])
  assert.deepEqual(payloads(await queue.take(10)), ['2', '3', '4'])
  // a message that takes the whole byte budget pushes out everything before it: the first for the count
  queue.push('t', Buffer.alloc(1024), false)
  assert.deepEqual(drops.slice(2), [['maxMessages', 1], ['maxBytes', 2]])
  assert.equal(queue.messages, 1)
  queue.push('t', Buffer.alloc(2048), false)
  assert.deepEqual(drops.slice(4), [['maxBytes', 1]])
  assert.equal(queue.messages, 1)
  // a dropped message that was in flight is not counted again when its acknowledgement comes
  queue.rewind()
  const [inFlight] = await queue.take(1)
  queue.push('t', Buffer.from('x'), false)
  queue.push('t', Buffer.from('y'), false)
  queue.push('t', Buffer.from('z'), false)
  queue.push('t', Buffer.from('w'), false)
  queue.ack(/** @type {any} */ (inFlight))
  assert.equal(queue.messages, 3)
})

test('messages older than maxAgeMs are dropped when the queue is next used', async () => {
  let now = 1000
  const { queue, drops } = memoryQueue({ maxAgeMs: 100 }, () => now)
  queue.push('t', Buffer.from('old'), false)
  now = 1050
  queue.push('t', Buffer.from('newer'), false)
  now = 1101
  assert.deepEqual(payloads(await queue.take(10)), ['newer'])
  assert.deepEqual(drops, [['maxAgeMs', 1]])
})

test('on LevelDB: a message is taken only once on disk, and a restart finds what was not acknowledged, in order', async t => {
  const dir = await tempDir(t)
  let db = await openDatabase(dir)
  t.after(() => db.close())
  const open = async () => {
    const queue = new OutboundQueue({ bounds: BOUNDS, disk: new QueueDisk(db, 'cloud', true), onDrop: () => {} })
    await queue.open()
    return queue
  }
  const queue = await open()
  // another bridge's messages in the same sublevel are not this one's
  const other = new OutboundQueue({ bounds: BOUNDS, disk: new QueueDisk(db, 'cloud2', false), onDrop: () => {} })
  await other.push('other', Buffer.from('x'), false)
  const durable = []
  for (let i = 0; i < 100; i++) durable.push(queue.push(`t/${i}`, Buffer.from(String(i)), i % 2 === 0))
  assert.equal(queue.ready, false, 'nothing is taken before it is on disk')
  await Promise.all(durable)
  const taken = await queue.take(10)
  assert.deepEqual(payloads(taken), ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
  for (const entry of taken) queue.ack(entry)
  await queue.flushed()
  await db.close()

  db = await openDatabase(dir)
  const reopened = await open()
  assert.equal(reopened.messages, 90)
  const rest = await reopened.take(1000)
  assert.deepEqual(payloads(rest), Array.from({ length: 90 }, (_, i) => String(i + 10)))
  assert.equal(rest[0]?.record?.topic, 't/10')
  assert.equal(rest[0]?.record?.retain, true)
  assert.equal(rest[1]?.record?.retain, false)
  // new messages follow the old ones
  await reopened.push('t/new', Buffer.from('new'), false)
  assert.deepEqual(payloads(await reopened.take(10)), ['new'])
})

test('on LevelDB: a backlog larger than what is kept in memory is read back from disk, in order', async t => {
  const db = await openDatabase(await tempDir(t))
  t.after(() => db.close())
  const queue = new OutboundQueue({ bounds: BOUNDS, disk: new QueueDisk(db, 'cloud', false), onDrop: () => {} })
  await queue.open()
  const size = 256 * 1024
  const count = Math.ceil(HOT_BYTES / size) * 2
  await Promise.all(Array.from({ length: count }, (_, i) => queue.push('t', Buffer.alloc(size, i % 256), false)))
  const seen = []
  for (;;) {
    const batch = await queue.take(7)
    if (batch.length === 0) break
    for (const entry of batch) {
      seen.push(entry.record?.payload[0])
      assert.equal(entry.record?.payload.length, size)
      queue.ack(entry)
    }
  }
  assert.deepEqual(seen, Array.from({ length: count }, (_, i) => i % 256))
  assert.equal(queue.messages, 0)
  await queue.flushed()
})

test('on LevelDB: a batch that cannot be written refuses each of its messages, and the queue forgets them; one batch, one report', async t => {
  const db = await openDatabase(await tempDir(t))
  /** @type {number[]} */
  const failed = []
  let durable = 0
  const queue = new OutboundQueue({ bounds: BOUNDS, disk: new QueueDisk(db, 'cloud', true), onDrop: () => {}, onDurable: () => durable++, onWriteFailed: (_err, count) => failed.push(count) })
  await queue.open()
  await Promise.all([queue.push('t', Buffer.from('a'), false), queue.push('t', Buffer.from('b'), false)])
  assert.equal(durable, 1)
  await db.close()
  const pushed = Array.from({ length: 3 }, (_, i) => queue.push('t', Buffer.from(String(i)), false))
  const outcomes = await Promise.allSettled(pushed)
  assert.deepEqual(outcomes.map(outcome => outcome.status), ['rejected', 'rejected', 'rejected'])
  assert.deepEqual(failed, [3])
  // what was written before stays; the refused ones are gone
  assert.equal(queue.messages, 2)
  assert.deepEqual((await queue.take(10)).map(entry => entry.record?.payload.toString()), ['a', 'b'])
})
