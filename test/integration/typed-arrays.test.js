// Typed arrays and DataViews travel as the bytes they cover (payload kind 0), never as msgpackr 2.1's wrong bytes
// (element values truncated to bytes, then whatever else the buffer's memory held). Every type, through a real
// gateway and a real worker, compared byte for byte on the worker's side.
import assert from 'node:assert/strict'
import test from 'node:test'
import mqtt from 'mqtt'
import { connectClient, startGateway, waitFor } from '../helpers.js'
import { IoTData } from '../../dist/index.js'

/** Every kind of view, each over memory that holds more than the view (a stale neighbour to leak). */
function views () {
  const memory = () => {
    const buffer = new ArrayBuffer(64)
    new Uint8Array(buffer).fill(0xee) // what must never travel
    return buffer
  }
  const fill = (view, values) => { values.forEach((v, i) => { view[i] = v }); return view }
  const cases = [
    ['Int8Array', fill(new Int8Array(memory(), 0, 3), [-1, 2, -128])],
    ['Uint8Array', fill(new Uint8Array(memory(), 0, 3), [1, 2, 255])],
    ['Uint8ClampedArray', fill(new Uint8ClampedArray(memory(), 0, 3), [0, 300, 7])],
    ['Int16Array', fill(new Int16Array(memory(), 0, 2), [1, -2])],
    ['Uint16Array', fill(new Uint16Array(memory(), 0, 2), [1, 2])],
    ['Int32Array', fill(new Int32Array(memory(), 0, 2), [-1, 0x12345678])],
    ['Uint32Array', fill(new Uint32Array(memory(), 0, 2), [0xdeadbeef, 1])],
    ['Float32Array', fill(new Float32Array(memory(), 0, 2), [1.5, -0.25])],
    ['Float64Array', fill(new Float64Array(memory(), 0, 2), [Math.PI, -1e300])],
    ['BigInt64Array', fill(new BigInt64Array(memory(), 0, 2), [-1n, 2n ** 62n])],
    ['BigUint64Array', fill(new BigUint64Array(memory(), 0, 2), [2n ** 64n - 1n, 3n])],
    ['DataView', (() => { const view = new DataView(memory(), 8, 5); view.setUint32(0, 0x01020304); view.setInt8(4, -3); return view })()],
    ['a Float64Array subarray at byteOffset 16', fill(new Float64Array(memory()), [1, 2, 3, 4, 5, 6, 7, 8]).subarray(2, 4)],
    ['an Int16Array at an odd byteOffset of its buffer', fill(new Int16Array(memory(), 6, 3), [-7, 8, 9])],
    ['a Buffer slice', Buffer.from('0123456789').subarray(3, 6)],
  ]
  cases.push(['new Float64Array(8): 64 zero bytes', new Float64Array(8)])
  return cases
}

/** The bytes a view covers, read independently of the code under test. */
const bytesOf = view => Buffer.from(new Uint8Array(view.buffer, view.byteOffset, view.byteLength))

test('every typed array and DataView arrives at a remote worker as exactly its bytes, as a Buffer', async t => {
  const gw = await startGateway(t)
  const worker = await connectClient(t, gw)
  const received = []
  await worker.serve('Bytes/echo', async event => { received.push(event); return event })
  const caller = await connectClient(t, gw)
  for (const [what, view] of views()) {
    const expected = bytesOf(view)
    const answer = await caller.invoke('Bytes/echo', view)
    const seen = received.pop()
    assert.ok(Buffer.isBuffer(seen), `${what}: the worker gets a Buffer`)
    assert.equal(seen.toString('hex'), expected.toString('hex'), `${what}: the worker gets the view's bytes, nothing else`)
    assert.equal(Buffer.from(/** @type {Buffer} */ (answer)).toString('hex'), expected.toString('hex'), `${what}: and back`)
    // from inside the gateway too
    await gw.invoke('Bytes/echo', view)
    assert.equal(received.pop().toString('hex'), expected.toString('hex'), `${what}: in-process caller`)
  }
})

test('a worker answering with a typed array, and an in-process function given one, get the view\'s bytes', async t => {
  const gw = await startGateway(t)
  const cases = views()
  const worker = await connectClient(t, gw)
  await worker.serve('Bytes/make', async index => cases[index][1])
  await gw.serve('Bytes/inside', async event => event)
  const caller = await connectClient(t, gw)
  for (const [index, [what, view]] of cases.entries()) {
    const expected = bytesOf(view).toString('hex')
    assert.equal(/** @type {Buffer} */ (await caller.invoke('Bytes/make', index)).toString('hex'), expected, `${what}: a worker's answer`)
    const inside = /** @type {Buffer} */ (await caller.invoke('Bytes/inside', view))
    assert.equal(inside.toString('hex'), expected, `${what}: to an in-process function`)
    const local = new Float64Array(1)
    const copy = /** @type {Buffer} */ (await gw.invoke('Bytes/inside', local))
    local[0] = 1
    assert.equal(copy.toString('hex'), '0000000000000000', 'an in-process function gets a copy, never the caller\'s memory')
  }
})

test('a typed array inside a MessagePack payload is a bin of its bytes; events carry a view\'s bytes too', async t => {
  const gw = await startGateway(t)
  const worker = await connectClient(t, gw)
  const hex = value => Buffer.isBuffer(value) ? value.toString('hex') : Array.isArray(value) ? value.map(hex) : value
  await worker.serve('Bytes/fields', async event => Object.fromEntries(Object.entries(event).map(([k, v]) => [k, hex(v)])))
  const caller = await connectClient(t, gw)
  const samples = new Float64Array([0.5, 2])
  const answer = await caller.invoke('Bytes/fields', { samples, nested: [new Uint16Array([1, 2])], n: 3 })
  assert.deepEqual(answer, { samples: bytesOf(samples).toString('hex'), nested: ['01000200'], n: 3 })

  const events = []
  const subscriber = await mqtt.connectAsync(gw.url, { clientId: 'bytes-subscriber', reconnectPeriod: 0 })
  t.after(() => subscriber.endAsync(true))
  await subscriber.subscribeAsync('bytes/#')
  subscriber.on('message', (topic, payload) => events.push([topic, payload.toString('hex')]))
  const view = new Uint16Array(new ArrayBuffer(16), 4, 2)
  view.set([0x0102, 0x0304])
  await caller.publish('bytes/sdk', view)
  await new IoTData(caller).publish({ topic: 'bytes/iotdata', payload: new DataView(view.buffer, 4, 4) })
  await gw.publish('bytes/gateway', view)
  await waitFor(() => events.length === 3, 3000, 'three events')
  const expected = bytesOf(view).toString('hex')
  assert.deepEqual(events.sort(), [['bytes/gateway', expected], ['bytes/iotdata', expected], ['bytes/sdk', expected]])
})
