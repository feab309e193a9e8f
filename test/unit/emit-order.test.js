// keepEmitOrder (src/broker/emit-order.ts): aedes hands messages to its subscribers in the order it numbered them,
// a message aedes gives up on holds nobody back, and an aedes that no longer works this way is warned about.
import assert from 'node:assert/strict'
import test from 'node:test'
import { Aedes } from 'aedes'
import { keepEmitOrder } from '../../dist/broker/emit-order.js'

/** A logger that keeps its warnings about patch points. */
function recorder () {
  const points = []
  const logger = { debug () {}, info () {}, error () {}, warn (obj) { if (obj.patchPoint !== undefined) points.push(obj.patchPoint) } }
  return { logger, points }
}

/** A started aedes in memory whose retained writes wait for `release()` (or fail with `fail(err)`), ordered. */
async function broker (t) {
  const aedes = await Aedes.createBroker()
  t.after(() => new Promise(resolve => aedes.close(() => resolve(undefined))))
  const held = []
  const storeRetained = aedes.persistence.storeRetained.bind(aedes.persistence)
  aedes.persistence.storeRetained = packet => new Promise((resolve, reject) => held.push({ resolve: () => resolve(storeRetained(packet)), reject }))
  const seen = []
  await new Promise(resolve => aedes.subscribe('o/#', (packet, cb) => { seen.push(packet.payload.toString()); cb() }, () => resolve(undefined)))
  return {
    aedes,
    seen,
    release: () => held.shift()?.resolve(),
    fail: err => held.shift()?.reject(err),
  }
}

/** Publishes through the instance's publish as aedes' own code does; resolves with the error it called back with. */
function publish (aedes, payload, options = {}) {
  return new Promise(resolve => aedes.publish(/** @type {any} */ ({ cmd: 'publish', topic: 'o/x', payload: Buffer.from(payload), qos: 0, retain: false, dup: false, ...options }), resolve))
}

const turn = () => new Promise(resolve => setImmediate(resolve))

test('a QoS 0 message published while a retained one is stored waits for it, and later ones for both', async t => {
  const { aedes, seen, release } = await broker(t)
  const { logger, points } = recorder()
  keepEmitOrder(aedes, logger)
  const routed = [publish(aedes, 'retained', { retain: true, qos: 1 }), publish(aedes, 'zero'), publish(aedes, 'one', { qos: 1 })]
  await turn()
  assert.deepEqual(seen, [], 'nothing overtakes the retained message')
  release()
  await Promise.all(routed)
  assert.deepEqual(seen, ['retained', 'zero', 'one'])
  // nothing waits now: a QoS 0 message goes straight through, within the call
  aedes.publish({ cmd: 'publish', topic: 'o/x', payload: Buffer.from('direct'), qos: 0, retain: false, dup: false }, () => {})
  assert.deepEqual(seen.at(-1), 'direct')
  assert.deepEqual(points, [])
})

test('a message aedes gives up on (its retained write failed) gives its turn up; numbered ones and other brokers\' pass', async t => {
  const { aedes, seen, fail } = await broker(t)
  const { logger, points } = recorder()
  keepEmitOrder(aedes, logger)
  const failed = publish(aedes, 'lost', { retain: true })
  const after = publish(aedes, 'after')
  // numbered already (the cluster's lanes), or another broker's will: not held behind aedes' own numbers
  await publish(aedes, 'numbered', { brokerId: 'lane', brokerCounter: 1 })
  await publish(aedes, 'will', { brokerId: 'gone', qos: 1 })
  assert.deepEqual(seen, ['numbered', 'will'])
  fail(new Error('disk'))
  assert.equal(/** @type {Error} */ (await failed).message, 'disk')
  await after
  assert.deepEqual(seen, ['numbered', 'will', 'after'])
  assert.deepEqual(points, [])
})

test('a subscriber that publishes as it is handed a message: its message takes the next turn', async t => {
  const { aedes, seen, release } = await broker(t)
  keepEmitOrder(aedes, recorder().logger)
  let echoed = false
  await new Promise(resolve => aedes.subscribe('o/x', (packet, cb) => {
    if (!echoed) {
      echoed = true
      aedes.publish({ cmd: 'publish', topic: 'o/echo', payload: Buffer.from('echo'), qos: 0, retain: false, dup: false }, () => {})
    }
    cb()
  }, () => resolve(undefined)))
  const routed = [publish(aedes, 'first', { retain: true }), publish(aedes, 'second')]
  release()
  await Promise.all(routed)
  assert.deepEqual(seen, ['first', 'second', 'echo'])
})

test('an aedes without mq.emit or a counter is warned about and left as it is', async () => {
  const noMq = new Aedes()
  // @ts-expect-error an aedes without its router
  noMq.mq = undefined
  const first = recorder()
  const publish = noMq.publish
  keepEmitOrder(noMq, first.logger)
  assert.deepEqual(first.points, ['aedes.mq'])
  assert.equal(noMq.publish, publish)

  const noCounter = new Aedes()
  // @ts-expect-error an aedes that numbers its messages some other way
  noCounter.counter = undefined
  const second = recorder()
  keepEmitOrder(noCounter, second.logger)
  assert.deepEqual(second.points, ['aedes.counter'])
})

test('an aedes that does not number a message as expected, or routes it around mq.emit, is warned about and holds nobody back', async t => {
  const { aedes, seen, release } = await broker(t)
  const { logger, points } = recorder()
  const route = aedes.publish
  // a release that numbers a retained message later than its publish call, under another counter
  aedes.publish = function (packet, client, done) {
    if (packet.payload.toString() === 'unnumbered') {
      const callback = typeof client === 'function' ? client : done
      setImmediate(() => callback())
      return
    }
    // @ts-expect-error aedes' publish as its own code calls it
    return route.call(this, packet, client, done)
  }
  keepEmitOrder(aedes, logger)
  await publish(aedes, 'unnumbered', { retain: true })
  assert.deepEqual(points, ['aedes.counter'])
  // routed without the router seeing it under its number: warned about when aedes calls back
  const emit = aedes.mq.emit
  aedes.mq.emit = function (packet, done) {
    return emit.call(this, { ...packet, brokerCounter: -1 }, done)
  }
  const late = publish(aedes, 'around', { retain: true })
  release()
  await late
  assert.deepEqual(points, ['aedes.counter', 'aedes.mq'])
  assert.deepEqual(seen, ['around'])
})
