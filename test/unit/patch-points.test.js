// fnbus' run-time checks of the places where it relies on aedes' internals (src/broker/patch-points.ts): when the
// installed aedes lacks one, the log says so once, naming the point and what is lost, and the gateway keeps running.
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { PassThrough } from 'node:stream'
import test from 'node:test'
import { Aedes } from 'aedes'
import { EventDelivery } from '../../dist/broker/event-delivery.js'
import { patchPointMissing } from '../../dist/broker/patch-points.js'
import { PersistenceBounds } from '../../dist/broker/persistence-bounds.js'
import { attachFunctionBus } from '../../dist/index.js'

/** A logger that keeps its warnings about patch points. */
function recorder () {
  const warnings = []
  const logger = { debug () {}, info () {}, error () {}, warn (obj, msg) { if (obj.patchPoint !== undefined) warnings.push({ ...obj, msg }) } }
  return { logger, warnings, points: () => warnings.map(w => w.patchPoint) }
}

const LIMITS = { maxSessionQueueMessages: 10, maxSessionQueueBytes: 1 << 20, maxSessionQueueBytesTotal: 1 << 20, maxRetainedMessages: 10, maxRetainedBytes: 1 << 20 }

test('a missing patch point is warned about once per logger, naming it and what is lost', () => {
  const { logger, warnings } = recorder()
  patchPointMissing(logger, 'conn.read', { clientId: 'a' })
  patchPointMissing(logger, 'conn.read', { clientId: 'b' })
  patchPointMissing(logger, 'aedes.publish')
  assert.deepEqual(warnings.map(w => w.patchPoint), ['conn.read', 'aedes.publish'])
  assert.match(warnings[0].msg, /conn\.read.*limits\.maxFrameBytes/)
  assert.equal(warnings[0].clientId, 'a')
  const other = recorder()
  patchPointMissing(other.logger, 'conn.read')
  assert.deepEqual(other.points(), ['conn.read'])
})

test('attaching the bus to an aedes without one of the hooks it wraps warns once, at attach', async t => {
  const aedes = new Aedes()
  // @ts-expect-error an aedes without the hook
  aedes.authorizeForward = undefined
  const { logger, points } = recorder()
  const bus = attachFunctionBus(aedes, { logger })
  t.after(() => bus.close())
  assert.deepEqual(points(), ['aedes.authorizeForward'])
})

test('a bus message routed around the publish wrapper is warned about as aedes.publish', async t => {
  const aedes = await Aedes.createBroker()
  t.after(() => new Promise(resolve => aedes.close(() => resolve(undefined))))
  const { logger, points } = recorder()
  const bus = attachFunctionBus(aedes, { logger })
  t.after(() => bus.close())
  // what a release whose PUBLISH handler no longer calls broker.publish would do
  await new Promise(resolve => Aedes.prototype.publish.call(aedes, { cmd: 'publish', topic: '$fn/up', payload: Buffer.alloc(0), qos: 0, dup: false, retain: false }, resolve))
  assert.deepEqual(points(), ['aedes.publish'])
})

test('aedes registering a client whose CONNECT the frame guard never saw is warned about as conn.read', async t => {
  const aedes = new Aedes()
  // a release that reads the connection some other way: the guard sees nothing, the client still logs in
  // @ts-expect-error a handle() that returns no Client: what is tested is only that it bypasses the guard
  aedes.handle = stream => { setImmediate(() => aedes.emit('client', { id: 'around', conn: stream })) }
  const { logger, warnings } = recorder()
  const bus = attachFunctionBus(aedes, { logger })
  t.after(() => bus.close())
  for (let i = 0; i < 2; i++) {
    const stream = new PassThrough()
    t.after(() => stream.destroy())
    bus.handle(stream)
  }
  for (let i = 0; i < 2; i++) await new Promise(resolve => setImmediate(resolve))
  assert.deepEqual(warnings.map(w => [w.patchPoint, w.clientId]), [['conn.read', 'around']])
})

test('event delivery: a client registered without preConnect, or without deliver functions, is warned about', () => {
  const aedes = new Aedes()
  const { logger, points } = recorder()
  const delivery = new EventDelivery(aedes, { maxBufferBytes: 1024, timeoutMs: 1000, logger, onDrop () {}, onCut () {} })
  void delivery
  const conn = new EventEmitter()
  const bare = /** @type {any} */ ({ id: 'bare', conn }) // a client as far as the check reads one
  aedes.preConnect(bare, /** @type {any} */ ({}), () => {}) // no CONNECT packet: the check reads none
  aedes.emit('client', bare)
  assert.deepEqual(points(), ['client.deliver'])
  aedes.emit('client', { id: 'unasked', conn })
  assert.deepEqual(points(), ['client.deliver', 'aedes.preConnect'])
})

/**
 * An aedes as far as the bounds read one: its persistence and, where given, its clients.
 * @param {object} parts
 * @returns {Aedes}
 */
function fakeAedes (parts) {
  return /** @type {any} */ (parts)
}

function fakePersistence () {
  const stored = []
  return {
    stored,
    async outgoingEnqueue (sub, packet) { stored.push([sub.clientId, packet.topic]) },
    async outgoingEnqueueCombi (subs, packet) { for (const sub of subs) stored.push([sub.clientId, packet.topic]) },
    async outgoingClearMessageId (client, packet) { return packet },
  }
}

test('persistence bounds: a persistence without storeRetained is warned about, and the session queues are still bounded', async () => {
  const persistence = fakePersistence()
  const { logger, warnings } = recorder()
  const bounds = await PersistenceBounds.install(fakeAedes({ persistence, clients: {} }), undefined, { limits: { ...LIMITS, maxSessionQueueMessages: 1 }, logger, onDrop () {}, onRefusedConnected () {} })
  assert.deepEqual(warnings.map(w => [w.patchPoint, w.missing]), [['aedes.persistence', ['storeRetained']]])
  await persistence.outgoingEnqueueCombi([{ clientId: 'a' }], { topic: 't', payload: Buffer.from('x') })
  await persistence.outgoingEnqueueCombi([{ clientId: 'a' }], { topic: 't', payload: Buffer.from('y') })
  assert.equal(persistence.stored.length, 1)
  assert.equal(bounds.usage.queuedMessages, 1)
})

test('persistence bounds: aedes without broker.clients is warned about; a persistence called with a callback answers it, and warns', async () => {
  const persistence = fakePersistence()
  persistence.storeRetained = async () => {}
  const { logger, points } = recorder()
  await PersistenceBounds.install(fakeAedes({ persistence }), undefined, { limits: LIMITS, logger, onDrop () {}, onRefusedConnected () {} })
  assert.deepEqual(points(), ['aedes.clients'])
  // a message queued for `a`: clearing one of a session with nothing queued would not ask the persistence
  await persistence.outgoingEnqueue({ clientId: 'a' }, { topic: 't', payload: Buffer.from('x') })
  // @ts-expect-error called as a persistence of the callback style is
  const answer = await new Promise(resolve => persistence.outgoingClearMessageId({ id: 'a' }, { topic: 't', messageId: 1 }, (err, packet) => resolve([err, packet])))
  assert.deepEqual(answer, [null, { topic: 't', messageId: 1 }])
  assert.deepEqual(points(), ['aedes.clients', 'aedes.persistence'])
})

test('persistence bounds: stored records of an unknown layout are warned about at start', async () => {
  const persistence = fakePersistence()
  persistence.storeRetained = async () => {}
  /** @type {import('../../dist/broker/persistence-bounds.js').StoredRecords} */
  const records = {
    async * iterator ({ gte }) {
      if (gte === 'outgoing:') yield ['outgoing:no-separator', Buffer.from([0xc1])]
    },
  }
  const { logger, points } = recorder()
  await PersistenceBounds.install(fakeAedes({ persistence, clients: {} }), records, { limits: LIMITS, logger, onDrop () {}, onRefusedConnected () {} })
  assert.deepEqual(points(), ['persistence-level.records'])
})
