// What the SDK relies on in MQTT.js beyond its public API (src/client/mqtt-internals.ts), held against the mqtt
// installed. Each test names its patch point; when one fails, a release of mqtt changed what fnbus relies on: the
// SDK then warns at run time (FNBUS_MQTT_INTERNALS) and takes MQTT.js' own, slower path, and the point needs
// looking at before the version range in package.json admits that release.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer, connect as netConnect } from 'node:net'
import { join } from 'node:path'
import test from 'node:test'
import mqtt from 'mqtt'
import { readInbox } from '../../dist/client/inbox-reader.js'
import { MQTT_INTERNALS_WARNING, PatchPoints } from '../../dist/client/mqtt-internals.js'
import { FCClient } from '../../dist/index.js'
import { defined, portOf, startGateway, tempDir } from '../helpers.js'
import { publishFrame } from '../mqtt-frames.js'

const VERSION = JSON.parse(readFileSync(new URL('../../node_modules/mqtt/package.json', import.meta.url), 'utf8')).version

/** The message of a broken contract: the version, the point, and what changed. */
const broken = (point, what) => `mqtt ${VERSION} changed what fnbus relies on, patch point "${point}": ${what}`

test(`the mqtt version these contracts are checked against: ${VERSION}`, t => {
  t.diagnostic(`mqtt ${VERSION} (MQTTJS_VERSION says ${mqtt.MQTTJS_VERSION})`)
  assert.equal(mqtt.MQTTJS_VERSION, VERSION)
})

/** Resolves on `client`'s next `event`. */
const next = (client, event) => new Promise(resolve => client.once(event, resolve))

/** A plain MQTT.js client of `url`, ended after the test. */
async function plainClient (t, url, options = {}) {
  const client = mqtt.connect(url, { reconnectPeriod: 20, ...options })
  t.after(() => client.end(true))
  await next(client, 'connect')
  return client
}

/** Counts the 'message' events MQTT.js emits, on inbox topics and others, during the test. */
function countMessages (t) {
  const counts = { inbox: 0, other: 0 }
  const proto = /** @type {any} */ (mqtt.MqttClient.prototype) // MQTT.js' own emit(), counted
  const emit = proto.emit
  proto.emit = function (event, ...args) {
    if (event === 'message') {
      if (String(args[0]).startsWith('$fn/in/')) counts.inbox++
      else counts.other++
    }
    return emit.call(this, event, ...args)
  }
  t.after(() => { proto.emit = emit })
  return counts
}

/** The FNBUS_MQTT_INTERNALS warnings emitted during the test. */
function collectWarnings (t) {
  const warnings = []
  const listener = warning => { if (warning.code === MQTT_INTERNALS_WARNING) warnings.push(warning) }
  process.on('warning', listener)
  t.after(() => process.off('warning', listener))
  return warnings
}

/**
 * A proxy in front of the gateway (TCP, or a Unix socket when `path` is given) whose connections the test can cut:
 * clients see their connection drop and reconnect, as after a network failure.
 */
async function cuttableProxy (t, target, path) {
  const sockets = new Set()
  const server = createServer(inbound => {
    const outbound = netConnect(target)
    for (const socket of [inbound, outbound]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => {})
    }
    inbound.pipe(outbound).pipe(inbound)
  })
  await new Promise(resolve => server.listen(path ?? { port: 0, host: '127.0.0.1' }, () => resolve(undefined)))
  t.after(() => {
    for (const socket of sockets) socket.destroy()
    return new Promise(resolve => server.close(() => resolve(undefined)))
  })
  return {
    url: path === undefined ? `mqtt://127.0.0.1:${portOf(server)}` : `mqtt+unix://${path}`,
    cut: () => { for (const socket of sockets) socket.destroy() },
  }
}

// ---- MqttClient.streamBuilder ------------------------------------------------------------------------------------

test(`${PatchPoints.streamBuilder}: MqttClient keeps it as a field and builds the first connection's stream with it before its constructor returns`, async t => {
  const gw = await startGateway(t)
  const client = mqtt.connect(gw.url, { reconnectPeriod: 0 })
  t.after(() => client.end(true))
  // @ts-expect-error private in MQTT.js' types: the patch point held here
  assert.equal(typeof client.streamBuilder, 'function', broken(PatchPoints.streamBuilder, 'MqttClient has no streamBuilder field'))
  assert.ok(client.stream !== undefined && client.stream !== null, broken(PatchPoints.streamBuilder, 'mqtt.connect() returned before it built the first stream'))
  assert.equal(/** @type {import('node:net').Socket} */ (client.stream).bytesRead, 0, broken(PatchPoints.streamBuilder, 'the first stream has read bytes before mqtt.connect() returned'))

  // the constructor itself: the builder it is given is called at once, and its stream becomes client.stream
  const built = []
  const direct = new mqtt.MqttClient(c => {
    const stream = netConnect({ port: gw.port, host: '127.0.0.1' })
    built.push([c, stream])
    return stream
  }, { protocolVersion: 4, reconnectPeriod: 0, clientId: 'contract-direct' })
  t.after(() => direct.end(true))
  assert.equal(built.length, 1, broken(PatchPoints.streamBuilder, 'the constructor did not call its streamBuilder exactly once'))
  assert.equal(built[0][0], direct, broken(PatchPoints.streamBuilder, 'streamBuilder is no longer given the client'))
  assert.equal(direct.stream, built[0][1], broken(PatchPoints.streamBuilder, 'client.stream is not what streamBuilder returned'))
  await next(direct, 'connect')
})

test(`${PatchPoints.streamBuilder}: MqttClient calls it again on every reconnection, and client.stream is the stream it returned`, async t => {
  const gw = await startGateway(t)
  const client = await plainClient(t, gw.url)
  const built = []
  const internals = /** @type {any} */ (client) // MQTT.js' private streamBuilder: the patch point held here
  const buildStream = internals.streamBuilder
  internals.streamBuilder = c => {
    const stream = buildStream(c)
    built.push(stream)
    return stream
  }
  for (let round = 1; round <= 3; round++) {
    const reconnected = next(client, 'connect')
    client.stream.destroy()
    await reconnected
    assert.equal(built.length, round, broken(PatchPoints.streamBuilder, `reconnection ${round} did not go through the streamBuilder field (${built.length} calls)`))
    assert.equal(client.stream, built.at(-1), broken(PatchPoints.streamBuilder, `after reconnection ${round}, client.stream is not what streamBuilder returned`))
  }
})

// ---- socket reads --------------------------------------------------------------------------------------------------

/** The transports whose stream is a socket: the URL of each for `gw` and the options a client needs. */
async function socketTransports (t) {
  const dir = await tempDir(t)
  const cert = join(dir, 'gateway.crt')
  const key = join(dir, 'gateway.key')
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-keyout', key, '-out', cert, '-subj', '/CN=fnbus contract test', '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' })
  const plain = await startGateway(t, { socket: join(dir, 'gateway.sock') })
  const tls = await startGateway(t, { tls: { cert: readFileSync(cert), key: readFileSync(key) } })
  /** @type {[string, string, import('mqtt').IClientOptions][]} */
  const transports = [
    ['TCP', plain.url, {}],
    ['a Unix socket', defined(plain.socketUrl), {}],
    ['TLS', tls.url, { ca: readFileSync(cert) }],
  ]
  return transports
}

test(`${PatchPoints.socketReads}: over TCP, TLS and a Unix socket the stream is a socket whose data enters through push(), and MQTT.js reads what push() passes on`, async t => {
  for (const [transport, url, options] of await socketTransports(t)) {
    const client = mqtt.connect(url, { reconnectPeriod: 0, ...options })
    t.after(() => client.end(true))
    const taken = []
    const installed = readInbox(client.stream, 'contract/inbox', payload => taken.push(payload.toString()))
    assert.equal(installed, true, broken(PatchPoints.socketReads, `the stream of a ${transport} connection is not a socket (no setNoDelay or push)`))
    await next(client, 'connect')
    const events = []
    client.on('message', (topic, payload) => events.push(`${topic} ${payload}`))
    await client.subscribeAsync(['contract/inbox', 'contract/event'], { qos: 0 })
    const publisher = await plainClient(t, url, { reconnectPeriod: 0, ...options })
    await publisher.publishAsync('contract/inbox', 'for the reader')
    await publisher.publishAsync('contract/event', 'for MQTT.js')
    for (let i = 0; i < 200 && (taken.length < 1 || events.length < 1); i++) await new Promise(resolve => setTimeout(resolve, 5))
    assert.deepEqual(taken, ['for the reader'], broken(PatchPoints.socketReads, `over ${transport}, the socket's data no longer enters through push()`))
    assert.deepEqual(events, ['contract/event for MQTT.js'], broken(PatchPoints.socketReads, `over ${transport}, MQTT.js no longer reads what push() passes on`))
  }
})

test(`${PatchPoints.socketReads} and ${PatchPoints.streamBuilder}: after reconnections, an FCClient's inbox messages still bypass MQTT.js (TCP and a Unix socket)`, async t => {
  const counts = countMessages(t)
  const warnings = collectWarnings(t)
  const dir = await tempDir(t)
  const gw = await startGateway(t, { socket: join(dir, 'gateway.sock') })
  const proxies = /** @type {const} */ ([
    ['TCP', await cuttableProxy(t, { port: gw.port, host: '127.0.0.1' })],
    ['a Unix socket', await cuttableProxy(t, { path: join(dir, 'gateway.sock') }, join(dir, 'proxy.sock'))],
  ])
  for (const [transport, proxy] of proxies) {
    // MQTT.js options make these clients MQTT.js' (the SDK's own socket transport would leave nothing here to check)
    const worker = new FCClient({ url: proxy.url, reconnectPeriod: 20, mqtt: {} })
    const caller = new FCClient({ url: proxy.url, reconnectPeriod: 20, mqtt: {} })
    t.after(() => Promise.all([worker.close(), caller.close()]))
    await Promise.all([worker.ready(), caller.ready()])
    await worker.serve(`Contract/${transport === 'TCP' ? 'tcp' : 'unix'}`, async n => n * 2)
    const fn = `Contract/${transport === 'TCP' ? 'tcp' : 'unix'}`
    for (let round = 0; round <= 2; round++) {
      if (round > 0) {
        const reconnected = Promise.all([next(worker, 'connect'), next(caller, 'connect')])
        proxy.cut()
        await reconnected
        // the worker registers again on its new session: its function is served once that is answered
        await caller.invoke(fn, 0, { waitForWorker: 5000 })
      }
      const answers = await Promise.all(Array.from({ length: 20 }, (_, n) => caller.invoke(fn, n, { waitForWorker: 5000 })))
      assert.deepEqual(answers, Array.from({ length: 20 }, (_, n) => n * 2))
      assert.equal(counts.inbox, 0, broken(round === 0 ? PatchPoints.socketReads : `${PatchPoints.streamBuilder}/${PatchPoints.socketReads}`,
        `over ${transport}${round === 0 ? '' : `, after reconnection ${round},`} ${counts.inbox} inbox messages reached MQTT.js' 'message' path`))
    }
  }
  assert.deepEqual(warnings.map(w => w.message), [], 'no patch point reported missing')
})

// ---- direct writes -------------------------------------------------------------------------------------------------

test(`${PatchPoints.directWrites}: while connected, client.stream takes whole frames between MQTT.js' own packets, which it writes synchronously; after a reconnection too`, async t => {
  const gw = await startGateway(t)
  const subscriber = await plainClient(t, gw.url)
  const received = []
  subscriber.on('message', (topic, payload) => received.push(`${topic} ${payload}`))
  await subscriber.subscribeAsync('contract/#', { qos: 0 })
  const client = await plainClient(t, gw.url)
  const until = async n => { for (let i = 0; i < 200 && received.length < n; i++) await new Promise(resolve => setTimeout(resolve, 5)) }

  for (let round = 0; round <= 1; round++) {
    assert.equal(client.connected, true, broken(PatchPoints.directWrites, 'client.connected is not true after \'connect\''))
    const stream = client.stream
    assert.equal(typeof stream.write, 'function', broken(PatchPoints.directWrites, 'client.stream has no write()'))
    const spied = /** @type {any} */ (stream) // its writes, counted
    const write = spied.write
    let writes = 0
    spied.write = function (...args) {
      writes++
      return write.apply(this, args)
    }
    client.publish(`contract/${round}/1`, 'one')
    assert.ok(writes > 0, broken(PatchPoints.directWrites, 'MQTT.js no longer writes a QoS 0 packet to client.stream before publish() returns'))
    stream.write = write
    stream.write(publishFrame(`contract/${round}/2`, Buffer.from('two')))
    client.publish(`contract/${round}/3`, 'three')
    await until(3 * (round + 1))
    assert.deepEqual(received.slice(3 * round), [`contract/${round}/1 one`, `contract/${round}/2 two`, `contract/${round}/3 three`],
      broken(PatchPoints.directWrites, 'a frame written on client.stream between two publishes did not arrive whole and in order'))
    if (round === 0) {
      const closed = next(client, 'close')
      const reconnected = next(client, 'connect')
      stream.destroy()
      await closed
      assert.equal(client.connected, false, broken(PatchPoints.directWrites, 'client.connected is still true once the connection closed'))
      await reconnected
      assert.notEqual(client.stream, stream, broken(PatchPoints.directWrites, 'client.stream is not the new connection\'s stream'))
    }
  }
})
