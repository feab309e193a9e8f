// The run-time checks of the SDK's patch points in MQTT.js (src/client/mqtt-internals.ts): when a point is missing —
// here, MQTT.js as a future release might be, simulated on the installed one — the SDK warns once, with a code, and
// takes MQTT.js' own path, rather than failing or slowing down unsaid. (test/contract/mqtt.test.js holds the points
// against the installed release itself.)
// The clients are given MQTT.js options (`mqtt: {}`), which is what makes the SDK use MQTT.js rather than its socket transport.
import assert from 'node:assert/strict'
import { Duplex } from 'node:stream'
import { connect as netConnect } from 'node:net'
import test from 'node:test'
import mqtt from 'mqtt'
import { FrameWriter, InboxTap, MQTT_INTERNALS_WARNING, PatchPoints } from '../../dist/client/mqtt-internals.js'
import { FCClient } from '../../dist/index.js'
import { startGateway } from '../helpers.js'
import { publishFrame } from '../mqtt-frames.js'

/** The FNBUS_MQTT_INTERNALS warnings emitted from now on (process warnings arrive on a later tick). */
function collectWarnings (t) {
  /** @type {(Error & { code?: string, detail?: string })[]} */
  const warnings = []
  const listener = (/** @type {Error & { code?: string }} */ warning) => { if (warning.code === MQTT_INTERNALS_WARNING) warnings.push(warning) }
  process.on('warning', listener)
  t.after(() => process.off('warning', listener))
  return warnings
}

/** Runs `connect` in place of MqttClient's own connect() during the test; it gets the original and the client. */
function patchConnect (t, replacement) {
  const proto = /** @type {any} */ (mqtt.MqttClient.prototype) // MQTT.js' own connect(), replaced
  const original = proto.connect
  proto.connect = function (...args) {
    return replacement.call(this, () => original.apply(this, args))
  }
  t.after(() => { proto.connect = original })
}

/** Counts the 'message' events MQTT.js emits for inbox topics. */
function countInboxMessages (t) {
  const counts = { inbox: 0 }
  const proto = /** @type {any} */ (mqtt.MqttClient.prototype) // MQTT.js' own emit(), counted
  const emit = proto.emit
  proto.emit = function (event, ...args) {
    if (event === 'message' && String(args[0]).startsWith('$fn/in/')) counts.inbox++
    return emit.call(this, event, ...args)
  }
  t.after(() => { proto.emit = emit })
  return counts
}

const tick = () => new Promise(resolve => setImmediate(resolve))

/** A worker and a caller; `drop()` ends the worker's connection from the gateway's side, which it reconnects. */
async function workerAndCaller (t, gw, fn) {
  const worker = new FCClient({ url: gw.url, reconnectPeriod: 20, mqtt: {} })
  const caller = new FCClient({ url: gw.url, reconnectPeriod: 20, mqtt: {} })
  t.after(() => Promise.all([worker.close(), caller.close()]))
  await Promise.all([worker.ready(), caller.ready()])
  await worker.serve(fn, async n => n + 1)
  return {
    worker,
    caller,
    /** Drops every connection of the worker's: MQTT.js reconnects it. */
    drop: async () => {
      const reconnected = new Promise(resolve => worker.once('connect', resolve))
      gw.aedes.clients[worker.clientId].close()
      await reconnected
    },
  }
}

test('MqttClient without a streamBuilder field: one warning naming the point; the first connection is still read past MQTT.js, later ones by MQTT.js, and calls work throughout', async t => {
  // a release that keeps the builder elsewhere: the field is gone once the constructor returns
  patchConnect(t, /** @this {any} a client of the release imagined */ function (connect) {
    if (Object.hasOwn(this, 'streamBuilder')) {
      this.hiddenBuilder = this.streamBuilder
      delete this.streamBuilder
    }
    this.streamBuilder = this.hiddenBuilder
    try {
      return connect()
    } finally {
      delete this.streamBuilder
    }
  })
  const warnings = collectWarnings(t)
  const counts = countInboxMessages(t)
  const gw = await startGateway(t)
  const { caller, drop } = await workerAndCaller(t, gw, 'Fallback/builder')
  assert.equal(await caller.invoke('Fallback/builder', 1), 2)
  assert.equal(counts.inbox, 0, 'the first connection\'s inbox bypasses MQTT.js')
  await drop()
  assert.equal(await caller.invoke('Fallback/builder', 2, { waitForWorker: 5000 }), 3)
  assert.ok(counts.inbox > 0, 'after the reconnection, the inbox goes through MQTT.js\' path')
  await tick()
  assert.equal(warnings.length, 1, `one warning for the two clients and the reconnection: ${warnings.map(w => w.message).join(' | ')}`)
  assert.match(warnings[0].message, /streamBuilder/)
  assert.equal(warnings[0].detail, `patch point: ${PatchPoints.streamBuilder}`)
  assert.equal(warnings[0].name, 'FnbusWarning')
})

test('MqttClient that does not call streamBuilder on a reconnection: one warning, and that connection\'s inbox goes through MQTT.js', async t => {
  // a release that calls the builder it was constructed with, not the field
  patchConnect(t, /** @this {any} a client of the release imagined */ function (connect) {
    this.firstBuilder ??= this.streamBuilder
    const field = this.streamBuilder
    this.streamBuilder = this.firstBuilder
    try {
      return connect()
    } finally {
      this.streamBuilder = field
    }
  })
  const warnings = collectWarnings(t)
  const counts = countInboxMessages(t)
  const gw = await startGateway(t)
  const { caller, drop } = await workerAndCaller(t, gw, 'Fallback/calls')
  assert.equal(await caller.invoke('Fallback/calls', 1), 2)
  await tick()
  assert.deepEqual([...warnings], [], 'the first connection is built before the field is wrapped: nothing to say')
  await drop()
  await drop()
  assert.equal(await caller.invoke('Fallback/calls', 2, { waitForWorker: 5000 }), 3)
  assert.ok(counts.inbox > 0)
  await tick()
  assert.equal(warnings.length, 1, warnings.map(w => w.message).join(' | '))
  assert.match(warnings[0].message, /without calling streamBuilder/)
})

test('a socket whose data stops entering through push(): one warning, and the inbox is taken from MQTT.js\' path', async t => {
  // a release (of Node or MQTT.js) in which the socket's data reaches MQTT.js some other way than push()
  patchConnect(t, /** @this {any} a client of the release imagined */ function (connect) {
    const result = connect()
    this.once('connect', () => { delete this.stream.push })
    return result
  })
  const warnings = collectWarnings(t)
  const gw = await startGateway(t)
  const { caller } = await workerAndCaller(t, gw, 'Fallback/push')
  assert.equal(await caller.invoke('Fallback/push', 1), 2)
  assert.equal(await caller.invoke('Fallback/push', 2), 3)
  await tick()
  assert.equal(warnings.length, 1, warnings.map(w => w.message).join(' | '))
  assert.match(warnings[0].message, /no longer enters through push/)
  assert.equal(warnings[0].detail, `patch point: ${PatchPoints.socketReads}`)
})

test('InboxTap: the stream of a TCP connection that is not a socket is reported once; a WebSocket\'s is not', async t => {
  const warnings = collectWarnings(t)
  const gw = await startGateway(t)
  /** A stream that is not a socket: a Duplex over one. */
  const wrapped = () => {
    const socket = netConnect({ port: gw.port, host: '127.0.0.1' })
    const duplex = new Duplex({
      read () {},
      write (chunk, encoding, done) { socket.write(chunk, encoding, done) },
      final (done) { socket.end(done) },
    })
    socket.on('data', chunk => duplex.push(chunk))
    socket.on('close', () => duplex.destroy())
    return duplex
  }
  for (const protocol of /** @type {const} */ (['mqtt', 'ws', 'mqtt'])) {
    const client = new mqtt.MqttClient(wrapped, { protocol, protocolVersion: 4, reconnectPeriod: 0, clientId: `tap-${protocol}-${Math.random()}` })
    t.after(() => client.end(true))
    const tap = new InboxTap(client, '$fn/in/x', () => {})
    assert.equal(tap.reading, false)
    await new Promise(resolve => client.once('connect', resolve))
  }
  await tick()
  assert.equal(warnings.length, 1, warnings.map(w => w.message).join(' | '))
  assert.match(warnings[0].message, /is not a socket/)
})

test('FrameWriter: a stream without write() is reported once, and frames then go out through MQTT.js\' publish, payload intact', async t => {
  const warnings = collectWarnings(t)
  const published = []
  // an MqttClient as far as the writer reads one
  const client = /** @type {any} */ ({
    connected: true,
    stream: {},
    options: {},
    publish (topic, payload, options) { published.push({ topic, payload: Buffer.from(payload), options }) },
  })
  const writer = new FrameWriter(client, '$fn/up')
  writer.checkConnection()
  writer.checkConnection()
  const small = Buffer.from('envelopes')
  const large = Buffer.alloc(70_000, 7) // a remaining length of three bytes
  writer.write(publishFrame('$fn/up', small))
  writer.write(publishFrame('$fn/up', large))
  client.connected = false
  writer.write(publishFrame('$fn/up', small))
  assert.deepEqual(published.map(p => [p.topic, p.payload.length, p.options.qos]), [['$fn/up', small.length, 0], ['$fn/up', large.length, 0]])
  assert.ok(published[0].payload.equals(small) && published[1].payload.equals(large))
  await tick()
  assert.equal(warnings.length, 1)
  assert.equal(warnings[0].detail, `patch point: ${PatchPoints.directWrites}`)
})

test('FrameWriter: with write(), frames go straight to the stream while connected, and nowhere once the stream is gone', () => {
  const written = []
  const stream = { writable: true, destroyed: false, write: chunk => written.push(chunk) }
  const client = /** @type {any} */ ({ connected: true, stream, options: {}, publish: () => assert.fail('no publish while write() is there') })
  const writer = new FrameWriter(client, '$fn/up')
  writer.checkConnection()
  const frame = publishFrame('$fn/up', Buffer.from('x'))
  writer.write(frame)
  stream.destroyed = true
  writer.write(frame)
  stream.destroyed = false
  client.connected = false
  writer.write(frame)
  assert.deepEqual(written, [frame])
})
