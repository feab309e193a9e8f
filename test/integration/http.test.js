// The gateway's HTTP port: /healthz, /api/status, routes of plugins, the authorize seam; plugins' lifecycle.
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import test from 'node:test'
import { createGateway } from '../../dist/index.js'
import { defaultAuthorize } from '../../dist/http/server.js'
import { isLoopback } from '../../dist/util/loopback.js'
import { connectClient, defined, rejection, startGateway, waitFor } from '../helpers.js'

/**
 * A request's status, headers and JSON body (whatever the gateway wrote: the tests assert its shape).
 * @param {string} url
 * @param {RequestInit} [init]
 * @returns {Promise<{ status: number, body: any, headers: Headers }>}
 */
async function getJson (url, init) {
  const response = await fetch(url, init)
  return { status: response.status, body: await response.json(), headers: response.headers }
}

test('no HTTP port unless http is given', async t => {
  const gw = await startGateway(t)
  assert.equal(gw.http, undefined)
  assert.equal(gw.httpUrl, undefined)
})

test('/healthz answers 200 with the parts that are up; /api/status the gateway status', async t => {
  const gw = await startGateway(t, { http: { port: 0 } })
  assert.match(String(gw.httpUrl), /^http:\/\/127\.0\.0\.1:\d+$/)
  const health = await getJson(`${gw.httpUrl}/healthz`)
  assert.equal(health.status, 200)
  assert.deepEqual(health.body, { ready: true, broker: true, store: true, functions: true })

  await gw.serve('Ops/echo', async event => event)
  const worker = await connectClient(t, gw)
  await worker.serve('Ops/remote', async () => 'ok', { concurrency: 3 })
  await gw.bus.invokeAsync('Ops/later', 'x')
  const { status, body } = await getJson(`${gw.httpUrl}/api/status`)
  assert.equal(status, 200)
  assert.equal(body.url, gw.url)
  assert.equal(body.httpUrl, gw.httpUrl)
  assert.ok(body.uptimeMs >= 0)
  assert.deepEqual(body.health, health.body)
  assert.deepEqual(body.functions.map(f => f.name), ['Ops/echo', 'Ops/later', 'Ops/remote'])
  const remote = body.functions.find(f => f.name === 'Ops/remote')
  assert.deepEqual(remote.workers, [{ label: worker.clientId, concurrency: 3, inFlight: 0 }])
  assert.deepEqual(body.functions.find(f => f.name === 'Ops/later').async, { pending: 1, inFlight: 0, dead: 0 })
  assert.equal(body.connections.clients, 1)
  assert.equal(body.connections.workers, 2)
  assert.deepEqual(body.deadLetters, [])
})

test('unknown paths are 404, a wrong method is 405 with Allow', async t => {
  const gw = await startGateway(t, { http: { port: 0 } })
  assert.equal((await getJson(`${gw.httpUrl}/nothing`)).status, 404)
  const wrong = await getJson(`${gw.httpUrl}/healthz`, { method: 'DELETE' })
  assert.equal(wrong.status, 405)
  assert.equal(wrong.headers.get('allow'), 'GET')
})

test('without an authorizer: reads from loopback pass, actions are refused (403), requests from elsewhere are refused', async t => {
  const base = { method: 'GET', path: '/x', headers: {} }
  // the default authorizer decides on the request's summary alone, at once
  const decide = (/** @type {import('../../dist/index.js').HttpRequestInfo} */ info) =>
    /** @type {import('../../dist/index.js').AuthorizeDecision} */ (defaultAuthorize(info, /** @type {any} */ (undefined)))
  assert.deepEqual(decide({ ...base, remoteAddress: '127.0.0.1', loopback: true, action: false }), { allowed: true })
  assert.equal(decide({ ...base, remoteAddress: '127.0.0.1', loopback: true, action: true }).allowed, false)
  const elsewhere = decide({ ...base, remoteAddress: '192.168.1.20', loopback: false, action: false })
  assert.ok(elsewhere.allowed === false)
  assert.equal(elsewhere.status, 403)
  assert.equal(isLoopback('::ffff:127.0.0.1'), true)
  assert.equal(isLoopback('::1'), true)
  assert.equal(isLoopback('10.0.0.1'), false)

  const gw = await startGateway(t, { http: { port: 0 } })
  let ran = 0
  defined(gw.http).route('POST', '/api/do', (_req, res) => { ran++; res.end('done') })
  const refused = await getJson(`${gw.httpUrl}/api/do`, { method: 'POST' })
  assert.equal(refused.status, 403)
  assert.equal(refused.body.error, 'FNBUS_NOT_AUTHORIZED')
  assert.equal(ran, 0)
})

test('an authorizer decides, and the identity it grants reaches the handler', async t => {
  const seen = []
  const gw = await startGateway(t, {
    http: {
      port: 0,
      authorize: request => {
        seen.push(request)
        return request.headers.authorization === 'Bearer op-token'
          ? { allowed: true, identity: 'operator' }
          : { allowed: false, status: 401, reason: 'who are you?' }
      },
    },
  })
  defined(gw.http).route('POST', '/api/do', (_req, res, context) => { res.end(`done as ${context.identity}`) })
  const anonymous = await fetch(`${gw.httpUrl}/api/do`, { method: 'POST' })
  assert.equal(anonymous.status, 401)
  const operator = await fetch(`${gw.httpUrl}/api/do`, { method: 'POST', headers: { authorization: 'Bearer op-token' } })
  assert.equal(operator.status, 200)
  assert.equal(await operator.text(), 'done as operator')
  assert.equal(seen[0].action, true)
  assert.equal(seen[0].loopback, true)
  assert.equal(seen[0].path, '/api/do')
})

test('routes: exact paths win over prefixes, longer prefixes over shorter; a route taken twice throws', async t => {
  const gw = await startGateway(t, { http: { port: 0 } })
  const answer = text => (_req, res) => res.end(text)
  defined(gw.http).route('GET', '/*', answer('fallback'))
  defined(gw.http).route('GET', '/assets/*', answer('asset'))
  defined(gw.http).route('GET', '/assets/special', answer('special'))
  const text = async path => (await fetch(gw.httpUrl + path)).text()
  assert.equal(await text('/assets/app.js'), 'asset')
  assert.equal(await text('/assets/special'), 'special')
  assert.equal(await text('/'), 'fallback')
  assert.equal(await text('/healthz').then(JSON.parse).then(h => h.ready), true)
  assert.throws(() => defined(gw.http).route('GET', '/assets/*', answer('again')), { code: 'FNBUS_INVALID_ARGUMENT' })
})

test('a handler that throws answers 500 and the gateway keeps serving', async t => {
  const gw = await startGateway(t, { http: { port: 0 } })
  defined(gw.http).route('GET', '/boom', () => { throw new Error('boom') })
  assert.equal((await fetch(`${gw.httpUrl}/boom`)).status, 500)
  assert.equal((await fetch(`${gw.httpUrl}/healthz`)).status, 200)
})

test('plugins start in order with their config block, events and http; stop in reverse order on close', async t => {
  const calls = []
  const plugin = name => ({
    name,
    start (context) {
      calls.push(['start', name, context.config, typeof context.events.on, context.http === undefined ? 'no http' : 'http', context.gateway.url])
      context.http.route('GET', `/${name}`, (_req, res) => res.end(name))
    },
    stop () { calls.push(['stop', name]) },
  })
  const gw = await createGateway({ port: 0, memory: true, http: { port: 0 }, plugins: [plugin('one'), plugin('two')], pluginConfig: { two: { answer: 42 } } })
  assert.equal(await (await fetch(`${gw.httpUrl}/two`)).text(), 'two')
  await gw.close()
  assert.deepEqual(calls, [
    ['start', 'one', {}, 'function', 'http', gw.url],
    ['start', 'two', { answer: 42 }, 'function', 'http', gw.url],
    ['stop', 'two'],
    ['stop', 'one'],
  ])
})

test('a plugin that fails to start fails createGateway, naming it, and leaves nothing listening', async t => {
  const started = []
  const good = { name: 'good', start () { started.push('good') }, stop () { started.push('good stopped') } }
  const bad = { name: 'bad', start () { throw new Error('cannot') } }
  const err = await rejection(createGateway({ port: 0, memory: true, http: { port: 0 }, plugins: [good, bad] }))
  assert.equal(err.code, 'FNBUS_CONFIG_INVALID')
  assert.match(err.message, /plugin bad failed to start: cannot/)
  assert.deepEqual(started, ['good', 'good stopped'])
})

test('plugins by name load the built-ins; an unknown name or a malformed plugin is a config error', async t => {
  const unknown = await rejection(createGateway({ port: 0, memory: true, plugins: ['prometheus'] }))
  assert.equal(unknown.code, 'FNBUS_CONFIG_INVALID')
  assert.match(unknown.message, /no built-in plugin "prometheus"/)
  const withoutStart = /** @type {any} */ ({ name: 'x' })
  const malformed = await rejection(createGateway({ port: 0, memory: true, plugins: [withoutStart] }))
  assert.equal(malformed.code, 'FNBUS_CONFIG_INVALID')
  const twice = await rejection(createGateway({ port: 0, memory: true, plugins: ['metrics', 'metrics'] }))
  assert.match(twice.message, /plugin metrics is given twice/)
})

test('a listener that throws is logged and does not break the invocation it observes', async t => {
  const errors = []
  const logger = { debug () {}, info () {}, warn () {}, error (obj, msg) { errors.push(msg) } }
  const gw = await startGateway(t, { logger })
  gw.events.on('invocation', () => { throw new Error('plugin bug') })
  await gw.serve('Ops/echo', async event => event)
  assert.equal(await gw.invoke('Ops/echo', 'still works'), 'still works')
  assert.deepEqual(errors, ['a plugin failed handling an observation'])
})

test('observations: invocations with outcome and identity, workers, clients, event traffic, frames dropped', async t => {
  const gw = await startGateway(t, { limits: { maxPayloadBytes: 1024, maxFrameBytes: 4096 } })
  /** @type {Record<string, any[]>} */
  const seen = { invocation: [], workerRegistered: [], workerGone: [], client: [], clientDisconnect: [], eventMessage: [], frameDropped: [] }
  for (const name of Object.keys(seen)) gw.events.on(/** @type {import('../../dist/index.js').GatewayEventName} */ (name), o => seen[name].push(o))

  await gw.serve('Obs/fn', async event => { if (event === 'fail') throw new Error('no'); return event })
  await gw.invoke('Obs/fn', 'a', { identity: 'route:sensors' })
  await rejection(gw.invoke('Obs/fn', 'fail'))
  await rejection(gw.invoke('Obs/missing', 'x'))
  assert.deepEqual(seen.invocation.map(o => [o.function, o.service, o.type, o.outcome, o.identity]), [
    ['Obs/fn', 'Obs', 'Sync', 'ok', 'route:sensors'],
    ['Obs/fn', 'Obs', 'Sync', 'unhandled', undefined],
    ['Obs/missing', 'Obs', 'Sync', 'FNBUS_FUNCTION_NOT_FOUND', undefined],
  ])
  assert.ok(seen.invocation.every(o => typeof o.requestId === 'string' && o.durationMs >= 0))
  assert.deepEqual(seen.workerRegistered, [{ function: 'Obs/fn', worker: 'in-process', concurrency: 8 }])

  const client = await connectClient(t, gw)
  await waitFor(() => seen.client.length === 1, 2000, 'the client observation')
  assert.equal(seen.client[0].clientId, client.clientId)
  const got = []
  await client.subscribe('obs/#', (topic) => got.push(topic))
  await gw.publish('obs/one', 'x')
  await waitFor(() => got.length === 1, 2000, 'the event')
  // aedes reports the publication after routing it: 'out' may come first
  assert.deepEqual(seen.eventMessage.sort((a, b) => a.direction.localeCompare(b.direction)), [{ direction: 'in', topic: 'obs/one' }, { direction: 'out', topic: 'obs/one' }])
  const served = await client.serve('Obs/remote', async () => 'r')
  await served.close()
  assert.deepEqual(seen.workerGone, [{ function: 'Obs/remote', worker: client.clientId, concurrency: 8 }])

  // a CONNECT declaring more than maxFrameBytes: the guard cuts the connection
  const socket = connect(gw.port, '127.0.0.1')
  await new Promise(resolve => socket.once('connect', resolve))
  socket.write(Buffer.from([0x10, 0xff, 0xff, 0x7f]))
  await waitFor(() => seen.frameDropped.length === 1, 2000, 'the frame guard')
  assert.deepEqual(seen.frameDropped, [{ reason: 'frame_too_large' }])
  socket.destroy()
  await client.close()
  await waitFor(() => seen.clientDisconnect.length === 1, 2000, 'the disconnect observation')
})

test('close() does not wait for a request that never ends (a stream, a stuck handler)', async t => {
  const gw = await createGateway({ port: 0, memory: true, http: { port: 0 } })
  defined(gw.http).route('GET', '/forever', (_req, res) => { res.writeHead(200); res.write('never ends') })
  const response = await fetch(`${gw.httpUrl}/forever`)
  assert.equal(response.status, 200)
  const body = response.text().catch(err => err)
  await gw.close()
  assert.ok((await body) instanceof Error, 'the stuck response was cut')
})
