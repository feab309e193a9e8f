// DNS rebinding: a web page of evil.example that made its own name resolve to the gateway's address sends requests
// with Host and Origin both evil.example. Only the gateway's own names (http.allowedHosts, IP addresses, localhost, the
// machine's name) get the trust of their address, on the HTTP port and on the WebSocket listener.
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { hostname } from 'node:os'
import test from 'node:test'
import WebSocket from 'ws'
import { HostAllowList } from '../../dist/index.js'
import { hashSecret } from '../../dist/security/credentials.js'
import { websocketPlugin } from '../../dist/plugins/websocket/index.js'
import { defined, startGateway } from '../helpers.js'

/** GET `path` from 127.0.0.1:`port` with these headers (fetch may not set Host). */
/**
 * The gateway's HTTP port, from its public URL.
 * @param {import('../../dist/index.js').Gateway} gw
 */
function httpPortOf (gw) {
  return Number(new URL(defined(gw.httpUrl)).port)
}

function get (port, path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', chunk => { body += chunk })
      res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], body }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** Opens a WebSocket speaking mqtt; resolves once open, or with the refused handshake's status and body. */
function openWebSocket (url, headers = {}) {
  return new Promise(resolve => {
    const ws = new WebSocket(url, 'mqtt', { headers })
    ws.once('open', () => { resolve({ open: true }); ws.terminate() })
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', chunk => { body += chunk })
      res.on('end', () => { resolve({ status: res.statusCode, body }); ws.terminate() })
    })
    ws.once('error', err => resolve({ error: err }))
  })
}

const rebound = port => ({ host: `evil.example:${port}`, origin: `http://evil.example:${port}` })

test('the HTTP port refuses /api/status, /metrics and /healthz to a Host that is not one of the gateway\'s names', async t => {
  const gw = await startGateway(t, { http: { port: 0, allowedHosts: ['gw.plant.example', '.ops.example'] }, plugins: ['metrics'] })
  const port = httpPortOf(gw)
  for (const path of ['/api/status', '/metrics', '/healthz']) {
    const refused = await get(port, path, rebound(port))
    assert.equal(refused.status, 403, path)
    assert.match(refused.type, /^application\/json/)
    assert.deepEqual(JSON.parse(refused.body), {
      error: 'FNBUS_NOT_AUTHORIZED',
      message: `Host "evil.example:${port}" is not a name of this gateway: add it to http.allowedHosts if clients reach the gateway by it`,
    })
  }
  const allowed = [
    `127.0.0.1:${port}`, `localhost:${port}`, 'LOCALHOST.', `[::1]:${port}`, '10.1.2.3', `app.localhost:${port}`, hostname(),
    `gw.plant.example:${port}`, 'ops.example', 'a.b.ops.example',
  ]
  for (const host of allowed) assert.equal((await get(port, '/api/status', { host, origin: `http://${host}` })).status, 200, host)
  for (const host of ['gw.plant.example.evil.example', 'evilops.example', '127.0.0.1.nip.io', `${hostname()}.evil.example`]) {
    assert.equal((await get(port, '/metrics', { host })).status, 403, host)
  }
})

test('credentials an operator gives still work under any Host; without them a foreign Host gets no loopback trust', async t => {
  const secret = 'operator secret'
  const gw = await startGateway(t, { identities: { ops: { hash: await hashSecret(secret) } }, http: { port: 0, auth: 'basic' } })
  const port = httpPortOf(gw)
  assert.equal((await get(port, '/api/status', { host: `127.0.0.1:${port}` })).status, 200, 'a loopback read needs no credentials')
  const refused = await get(port, '/api/status', rebound(port))
  assert.equal(refused.status, 403)
  assert.match(JSON.parse(refused.body).message, /is not a name of this gateway/)
  const authorization = `Basic ${Buffer.from(`ops:${secret}`).toString('base64')}`
  assert.equal((await get(port, '/api/status', { host: 'gateway.behind.a.proxy', authorization })).status, 200)
})

test('a WebSocket bus session is refused to a foreign Host, on the HTTP port and on a port of its own', async t => {
  const own = websocketPlugin({ port: 0, allowedHosts: ['mqtt.plant.example'] })
  const gw = await startGateway(t, { http: { port: 0 }, plugins: [own, { name: 'http-ws', start: ctx => websocketPlugin().start(ctx) }] })
  const ownPort = Number(new URL(defined(own.listener).url).port)
  const httpPort = httpPortOf(gw)
  for (const [port, mention] of [[ownPort, 'plugins.websocket.allowedHosts'], [httpPort, 'http.allowedHosts']]) {
    const url = `ws://127.0.0.1:${port}/mqtt`
    const refused = await openWebSocket(url, rebound(port))
    assert.equal(refused.status, 403, url)
    const body = JSON.parse(refused.body)
    assert.equal(body.error, 'FNBUS_NOT_AUTHORIZED')
    assert.ok(body.message.includes(mention), body.message)
    assert.deepEqual(await openWebSocket(url, { host: `localhost:${port}`, origin: `http://localhost:${port}` }), { open: true }, url)
    assert.deepEqual(await openWebSocket(url), { open: true }, `${url} without a browser's headers`)
  }
  assert.deepEqual(await openWebSocket(`ws://127.0.0.1:${ownPort}/mqtt`, { host: 'mqtt.plant.example' }), { open: true })
})

test('HostAllowList: names as Host carries them', () => {
  const list = new HostAllowList(['gw.example', '.site.example'])
  assert.equal(list.allows(undefined), true, 'no Host: not a browser')
  assert.equal(list.allows('GW.Example:8080'), true)
  assert.equal(list.allows('gw.example.'), true)
  assert.equal(list.allows('x.site.example'), true)
  assert.equal(list.allows('site.example'), true)
  assert.equal(list.allows('[fe80::1]:80'), true)
  assert.equal(list.allows('[evil.example]:80'), false)
  assert.equal(list.allows('gw.example:80:80'), false)
  assert.equal(list.allows(''), false)
  assert.equal(list.with(['other.example']).allows('other.example'), true)
  assert.equal(list.allows('other.example'), false)
})
