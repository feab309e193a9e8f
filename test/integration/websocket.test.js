// The websocket plugin: MQTT over WebSocket through the same bus entry as TCP (frame guard included), on a port of
// its own or on the HTTP port's /mqtt, with origins of browser pages checked.
import assert from 'node:assert/strict'
import test from 'node:test'
import mqtt from 'mqtt'
import { Packr, Unpackr } from 'msgpackr'
import WebSocket from 'ws'
import { FCClient } from '../../dist/index.js'
import { websocketPlugin } from '../../dist/plugins/websocket/index.js'
import { defined, rejection, startGateway, waitFor } from '../helpers.js'

/** A gateway with the websocket plugin on a port of its own; resolves with the gateway and the ws:// URL. */
async function gatewayWithWebSocket (t, options = {}, pluginOptions = { port: 0 }) {
  const plugin = websocketPlugin(pluginOptions)
  const gw = await startGateway(t, { ...options, plugins: [plugin] })
  return { gw, url: defined(plugin.listener).url }
}

async function connectMqtt (t, url, options = {}) {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, ...options })
  t.after(() => client.endAsync(true))
  return client
}

/** Opens a raw WebSocket speaking the mqtt subprotocol; resolves once open, or with the refused handshake's status. */
function openWebSocket (url, headers = {}) {
  return new Promise(resolve => {
    const ws = new WebSocket(url, 'mqtt', { headers })
    ws.once('open', () => resolve({ ws }))
    ws.once('unexpected-response', (_req, res) => { resolve({ status: res.statusCode }); ws.terminate() })
    ws.once('error', err => resolve({ error: err }))
  })
}

// an MQTT 3.1.1 CONNECT: client id "raw", clean session, keepalive 60
const CONNECT = Buffer.from([0x10, 15, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, 0, 3, 0x72, 0x61, 0x77])

test('a plain MQTT.js client over ws publishes and subscribes events, shared with TCP clients', async t => {
  const { gw, url } = await gatewayWithWebSocket(t)
  assert.match(url, /^ws:\/\/127\.0\.0\.1:\d+\/mqtt$/)
  const overWs = await connectMqtt(t, url, { clientId: 'ws-events' })
  const wsClient = await waitFor(() => gw.aedes.clients['ws-events'], 5000, 'the ws client')
  assert.equal(/** @type {import('node:net').Socket} */ (wsClient.conn).remoteAddress, '127.0.0.1', 'a ws connection shows its peer address as TCP ones do')
  assert.equal(wsClient.req?.url, '/mqtt')
  const overTcp = await connectMqtt(t, gw.url)
  await overWs.subscribeAsync('sensors/+/temperature')
  await overTcp.subscribeAsync('cmd/#')

  const toWs = new Promise(resolve => overWs.once('message', (topic, payload) => resolve([topic, payload.toString()])))
  await overTcp.publishAsync('sensors/7/temperature', '21.5')
  assert.deepEqual(await toWs, ['sensors/7/temperature', '21.5'])

  const toTcp = new Promise(resolve => overTcp.once('message', (topic, payload) => resolve([topic, payload.toString()])))
  await overWs.publishAsync('cmd/valve', 'open', { qos: 1 })
  assert.deepEqual(await toTcp, ['cmd/valve', 'open'])
})

test('a plain MQTT.js client over ws invokes a function with the bus protocol (msgpack envelopes)', async t => {
  const { gw, url } = await gatewayWithWebSocket(t)
  await gw.serve('Demo/greet', async (event, context) => `hello ${event} (${context.invocationType})`)
  const client = await connectMqtt(t, url, { clientId: 'ws-raw-caller' })
  const packr = new Packr({ useRecords: false })
  const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true })
  const answers = []
  client.on('message', (_topic, payload) => answers.push(...unpackr.unpackMultiple(payload)))
  await client.subscribeAsync('$fn/in/ws-raw-caller')

  client.publish('$fn/up', packr.pack({ v: 1, t: 'hello', id: 1 }))
  const welcome = await waitFor(() => answers.find(a => a.id === 1), 5000, 'welcome')
  assert.equal(welcome.t, 'welcome')

  client.publish('$fn/up', packr.pack({ v: 1, t: 'call', id: 2, fn: 'Demo/greet', it: 'Sync', pk: 1, p: Buffer.from('web'), to: 5000 }))
  const reply = await waitFor(() => answers.find(a => a.id === 2), 5000, 'reply')
  assert.equal(reply.t, 'reply')
  assert.equal(Buffer.from(reply.p).toString(), 'hello web (Sync)')
})

test('FCClient over ws: invoke, serve, Async and events, as over TCP', async t => {
  const { gw, url } = await gatewayWithWebSocket(t)
  const worker = new FCClient({ url })
  t.after(() => worker.close())
  await worker.serve('Web/double', async n => n * 2)
  const caller = new FCClient({ url })
  t.after(() => caller.close())
  assert.equal(await caller.invoke('Web/double', 21), 42)
  assert.equal(await gw.invoke('Web/double', 5), 10, 'an in-process caller reaches the worker over ws')
  const { invocationId } = await caller.invokeAsync('Web/double', 1)
  assert.ok(invocationId)
  await waitFor(() => gw.bus.queueStats('Web/double')[0]?.pending === 0, 5000, 'the Async invocation delivered')
  let received
  const got = new Promise(resolve => { received = resolve })
  await caller.subscribe('web/+', (topic, payload) => received([topic, payload.toString()]))
  await gw.publish('web/news', 'fresh')
  assert.deepEqual(await got, ['web/news', 'fresh'])
})

test('the frame guard cuts a ws connection that declares an oversize frame; the gateway keeps serving', async t => {
  const { gw, url } = await gatewayWithWebSocket(t, { limits: { maxPayloadBytes: 10_000 } })
  await gw.serve('Svc/ping', async () => 'pong')
  const bystander = new FCClient({ url })
  t.after(() => bystander.close())
  await bystander.ready()

  const { ws } = await openWebSocket(url)
  t.after(() => ws.terminate())
  ws.send(CONNECT)
  await new Promise(resolve => ws.once('message', resolve)) // CONNACK
  const dropped = new Promise(resolve => gw.events.once('frameDropped', resolve))
  const closed = new Promise(resolve => ws.once('close', () => resolve(undefined)))
  // a PUBLISH header declaring 256 MB, in a small message: the guard reads the header and cuts
  ws.send(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x01]))
  await closed
  assert.equal((await dropped).reason, 'frame_too_large', 'the frame guard, not something else, cut it')

  // a WebSocket message larger than one frame may be is refused by ws itself, before it is buffered whole
  const second = await openWebSocket(url)
  t.after(() => second.ws.terminate())
  const code = new Promise(resolve => second.ws.once('close', resolve))
  second.ws.send(Buffer.alloc(gw.bus.options.limits.maxFrameBytes + 6))
  assert.equal(await code, 1009)

  assert.equal(await bystander.invoke('Svc/ping'), 'pong')
})

test('on the HTTP port: /mqtt, origins of browser pages checked, other paths refused, close() does not hang', async t => {
  const gw = await startGateway(t, { http: { port: 0 }, plugins: { websocket: {} } })
  const url = `${defined(gw.httpUrl).replace('http', 'ws')}/mqtt`
  await gw.serve('Svc/ping', async () => 'pong')
  const client = new FCClient({ url })
  t.after(() => client.close())
  assert.equal(await client.invoke('Svc/ping'), 'pong')

  const host = new URL(defined(gw.httpUrl)).host
  const samePage = await openWebSocket(url, { origin: gw.httpUrl })
  assert.ok(samePage.ws, 'a page of the gateway itself (the dashboard) connects')
  samePage.ws.terminate()
  assert.equal((await openWebSocket(url, { origin: 'http://evil.example' })).status, 403, 'a page of another site is refused')
  assert.equal((await openWebSocket(url, { origin: `http://${host}.evil.example` })).status, 403)
  assert.equal((await openWebSocket(`${defined(gw.httpUrl).replace('http', 'ws')}/other`)).status, 404)
})

test('allowedOrigins admits the listed pages; an authorizer on the HTTP port decides on the handshake too', async t => {
  let admit = true
  const gw = await startGateway(t, {
    http: { port: 0, authorize: () => admit ? { allowed: true } : { allowed: false, status: 401, reason: 'who are you' } },
    plugins: { websocket: { allowedOrigins: ['https://ops.example.com'] } },
  })
  const url = `${defined(gw.httpUrl).replace('http', 'ws')}/mqtt`
  const listed = await openWebSocket(url, { origin: 'https://ops.example.com' })
  assert.ok(listed.ws)
  listed.ws.terminate()
  assert.equal((await openWebSocket(url, { origin: 'https://other.example.com' })).status, 403)
  admit = false
  assert.equal((await openWebSocket(url)).status, 401)
})

test('gateway.close() ends open ws connections on the HTTP port', async t => {
  const gw = await startGateway(t, { http: { port: 0 }, plugins: { websocket: {} } })
  const client = await mqtt.connectAsync(`${defined(gw.httpUrl).replace('http', 'ws')}/mqtt`, { reconnectPeriod: 0 })
  const closed = new Promise(resolve => client.once('close', () => resolve(undefined)))
  await gw.close()
  await closed
  await client.endAsync(true)
})

test('invalid options are FNBUS_CONFIG_INVALID naming the key; no port and no HTTP server is an error', async t => {
  for (const [config, pattern] of /** @type {[object, RegExp][]} */ ([
    [{ prot: 9001 }, /unknown key "prot"/],
    [{ port: 70000 }, /port must be an integer/],
    [{ path: 'mqtt' }, /path must be a URL path/],
    [{ allowedOrigins: ['*'] }, /allowedOrigins/],
    [{ host: '0.0.0.0' }, /host needs plugins\.websocket\.port/],
    [{}, /needs either its own port .* or the gateway's HTTP server/],
  ])) {
    const err = await rejection(startGateway(t, { plugins: { websocket: config } }))
    assert.equal(err.code, 'FNBUS_CONFIG_INVALID', JSON.stringify(config))
    assert.match(err.message, pattern)
  }
})

test('over limits.maxConnections a handshake is refused with 503 and observed; the connection in place keeps working', async t => {
  const { gw, url } = await gatewayWithWebSocket(t, { limits: { maxConnections: 1 } })
  const rejected = []
  gw.events.on('rejected', o => rejected.push(o.reason))
  await gw.serve('Svc/ping', async () => 'pong')
  const first = new FCClient({ url })
  t.after(() => first.close())
  assert.equal(await first.invoke('Svc/ping'), 'pong')
  const second = await openWebSocket(url)
  assert.equal(second.status, 503, 'the bus is full: the handshake is answered, not left to hang')
  assert.deepEqual(rejected, ['max_connections'])
  assert.equal(await first.invoke('Svc/ping'), 'pong')
})
