// The dashboard plugin's HTTP side: its data (gateway.status() plus the invoke series and recent errors), its
// files, and its actions, which the authorize seam decides and which only the gateway's own page may take.
import assert from 'node:assert/strict'
import test from 'node:test'
import { defined, rejection, sdkOptions, startGateway, waitFor } from '../helpers.js'
/** @import { AuthorizeDecision, Gateway, GatewayOptions, HttpRequestInfo } from '../../dist/index.js' */

/** @returns {AuthorizeDecision} */
const allowLoopback = (/** @type {HttpRequestInfo} */ request) => request.loopback ? { allowed: true, identity: 'operator' } : { allowed: false, status: 403, reason: 'loopback only' }

/**
 * POSTs `body` (JSON unless a string) to the gateway's HTTP port: the status and the JSON answer.
 * @param {Gateway} gw
 * @param {string} path
 * @param {unknown} body
 * @returns {Promise<{ status: number, body: any }>}
 */
async function post (gw, path, body, headers = {}) {
  const response = await fetch(`${gw.httpUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
  return { status: response.status, body: await response.json() }
}

/**
 * What the page reads from /api/dashboard (the tests assert its shape).
 * @param {Gateway} gw
 * @returns {Promise<any>}
 */
async function dashboardData (gw) {
  const response = await fetch(`${gw.httpUrl}/api/dashboard`)
  assert.equal(response.status, 200)
  return await response.json()
}

test('GET /api/dashboard: the status fnbus status shows, call counts and latency per function, recent errors', async t => {
  const gw = await startGateway(t, { http: { port: 0 }, plugins: { dashboard: {} } })
  await gw.serve('Demo/echo', async event => event, { concurrency: 3 })
  await gw.serve('Demo/fail', async () => { throw new Error('boom') })
  for (let i = 0; i < 5; i++) await gw.invoke('Demo/echo', i)
  await assert.rejects(gw.invoke('Demo/fail'), { code: 'FNBUS_FUNCTION_ERROR' })
  await assert.rejects(gw.invoke('Nobody/home'), { code: 'FNBUS_FUNCTION_NOT_FOUND' })

  const data = await dashboardData(gw)
  const status = await gw.status()
  assert.deepEqual(data.status.functions, status.functions, 'the same functions, workers and queues as gateway.status()')
  assert.deepEqual(data.status.functions.find(f => f.name === 'Demo/echo').workers.map(w => w.concurrency), [3])
  const echo = data.series.functions['Demo/echo']
  assert.equal(echo.total, 5)
  assert.equal(echo.totalErrors, 0)
  assert.equal(data.series.functions['Demo/fail'].totalErrors, 1)
  const counted = data.series.points.reduce((sum, p) => sum + p.count, 0)
  assert.ok(counted <= 7, 'the chart counts finished seconds only')
  assert.deepEqual(data.recentErrors.map(e => [e.function, e.code]), [['Nobody/home', 'FNBUS_FUNCTION_NOT_FOUND'], ['Demo/fail', 'Unhandled']])
  assert.equal(data.canAct, false, 'read-only without an authorizer')
  assert.deepEqual(data.live, { url: null, available: false, filter: '#' }, 'no websocket plugin: no live view')

  // once their second has passed, the chart and the per-function rates have the calls too
  const later = await waitFor(async () => {
    const next = await dashboardData(gw)
    return next.series.points.reduce((sum, p) => sum + p.count, 0) === 7 && next
  }, 3000, 'the calls in the chart')
  const rate = later.series.functions['Demo/echo']
  assert.equal(rate.rate, 5 / later.series.windowSeconds)
  assert.ok(rate.p50 > 0 && rate.p95 >= rate.p50, JSON.stringify(rate))
})

test('the page, its script and the SDK bundle are served', async t => {
  const gw = await startGateway(t, { http: { port: 0 }, plugins: ['dashboard'] })
  const page = await fetch(`${gw.httpUrl}/`)
  assert.equal(page.status, 200)
  assert.match(page.headers.get('content-type') ?? '', /^text\/html/)
  assert.match(await page.text(), /<script type="module" src="\/dashboard.js">/)
  assert.match(page.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/, 'no other site may frame the page')
  assert.equal(page.headers.get('x-frame-options'), 'DENY')
  for (const path of ['/dashboard.js', '/fnbus.js']) {
    const response = await fetch(`${gw.httpUrl}${path}`)
    assert.equal(response.status, 200, path)
    assert.match(response.headers.get('content-type') ?? '', /^text\/javascript/)
  }
  assert.match(await (await fetch(`${gw.httpUrl}/fnbus.js`)).text(), /FNBUS_FUNCTION_NOT_FOUND/)
})

test('actions are refused without an authorizer, even from loopback', async t => {
  const gw = await startGateway(t, { http: { port: 0 }, plugins: { dashboard: {} } })
  gw.bus.setFunctionOptions('Plant/fragile', { async: { maxRetries: 0 } })
  await gw.serve('Plant/fragile', async () => { throw new Error('offline') })
  await gw.bus.invokeAsync('Plant/fragile', 'x')
  await waitFor(() => gw.bus.queueStats('Plant/fragile')[0]?.dead === 1, 5000, 'the dead letter')
  for (const path of ['/api/dashboard/retry', '/api/dashboard/purge', '/api/dashboard/cancel']) {
    const answer = await post(gw, path, { function: 'Plant/fragile' })
    assert.equal(answer.status, 403, path)
    assert.equal(answer.body.error, 'FNBUS_NOT_AUTHORIZED')
  }
  assert.equal(gw.bus.queueStats('Plant/fragile')[0].dead, 1, 'nothing changed')
})

test('an authorized operator retries, purges and cancels; other sites, non-JSON and bad bodies are refused', async t => {
  const gw = await startGateway(t, { http: { port: 0, authorize: allowLoopback }, plugins: { dashboard: {} } })
  gw.bus.setFunctionOptions('Plant/fragile', { async: { maxRetries: 0 } })
  let healthy = false
  await gw.serve('Plant/fragile', async () => { if (!healthy) throw new Error('offline'); return 'ok' })
  const first = await gw.bus.invokeAsync('Plant/fragile', 'a')
  await gw.bus.invokeAsync('Plant/fragile', 'b')
  await waitFor(() => gw.bus.queueStats('Plant/fragile')[0]?.dead === 2, 5000, 'two dead letters')
  assert.equal((await dashboardData(gw)).canAct, true)

  const crossSite = await post(gw, '/api/dashboard/retry', { invocationId: first.invocationId }, { origin: 'http://evil.example' })
  assert.equal(crossSite.status, 403)
  assert.equal(crossSite.body.error, 'FNBUS_NOT_AUTHORIZED')
  const form = await post(gw, '/api/dashboard/retry', `invocationId=${first.invocationId}`, { 'content-type': 'application/x-www-form-urlencoded' })
  assert.equal(form.status, 400)
  assert.equal((await post(gw, '/api/dashboard/retry', '{not json')).status, 400)
  assert.equal((await post(gw, '/api/dashboard/retry', { function: 7 })).status, 400)
  assert.equal((await post(gw, '/api/dashboard/purge', { function: 'not a name' })).status, 400)
  assert.equal((await post(gw, '/api/dashboard/retry', { pad: 'x'.repeat(5000) })).status, 413)
  assert.equal(gw.bus.queueStats('Plant/fragile')[0].dead, 2, 'nothing changed so far')

  healthy = true
  const retried = await post(gw, '/api/dashboard/retry', { invocationId: first.invocationId }, { origin: gw.httpUrl })
  assert.deepEqual(retried, { status: 200, body: { revived: 1 } })
  await waitFor(() => gw.bus.queueStats('Plant/fragile')[0]?.dead === 1 && gw.bus.queueStats('Plant/fragile')[0]?.pending === 0, 5000, 'the retried one done')
  assert.deepEqual(await post(gw, '/api/dashboard/purge', { function: 'Plant/fragile' }), { status: 200, body: { purged: 1 } })

  const waiting = await gw.bus.invokeAsync('Nobody/home', 'z')
  assert.deepEqual(await post(gw, '/api/dashboard/cancel', { invocationId: waiting.invocationId }), { status: 200, body: { cancelled: waiting.invocationId } })
  const again = await post(gw, '/api/dashboard/cancel', { invocationId: waiting.invocationId })
  assert.equal(again.status, 404)
  assert.equal(again.body.error, 'FNBUS_INVOCATION_NOT_FOUND')
})

test('invalid dashboard options and a dashboard without the HTTP port are FNBUS_CONFIG_INVALID', async t => {
  for (const [options, pattern] of /** @type {[GatewayOptions, RegExp][]} */ ([
    [{ http: { port: 0 }, plugins: { dashboard: { colour: 'blue' } } }, /unknown key "colour"/],
    [{ http: { port: 0 }, plugins: { dashboard: { websocketUrl: 'http://x' } } }, /websocketUrl/],
    [{ http: { port: 0 }, plugins: { dashboard: { eventsFilter: '$fn/#' } } }, /eventsFilter/],
    [{ http: { port: 0 }, plugins: { dashboard: { historySeconds: 5 } } }, /historySeconds/],
    [{ plugins: { dashboard: {} } }, /needs the gateway's HTTP server/],
  ])) {
    const err = await rejection(startGateway(t, options))
    assert.equal(err.code, 'FNBUS_CONFIG_INVALID', JSON.stringify(options))
    assert.match(err.message, pattern)
  }
})

test("the live view's credentials: issued read-only as $dashboard, they watch events once identities exist and do nothing else", async t => {
  const { hashSecret } = await import('../../dist/security/credentials.js')
  const { FCClient } = await import('../../dist/index.js')
  const { identityOf } = await import('../../dist/security/identity.js')
  const mqtt = (await import('mqtt')).default
  const identities = { alice: { hash: await hashSecret('alice-secret', { ln: 12, r: 8, p: 1 }) } }
  const gw = await startGateway(t, { identities, http: { port: 0 }, plugins: { dashboard: {}, websocket: {} } })
  await gw.serve('Svc/ping', async () => 'pong')
  const response = await fetch(`${gw.httpUrl}/api/dashboard/live`)
  assert.equal(response.status, 200)
  assert.equal(response.headers.get('cache-control'), 'no-store')
  const live = /** @type {any} */ (await response.json())
  assert.equal(live.username, '$dashboard')
  assert.equal(live.available, true)
  const url = `${defined(gw.httpUrl).replace(/^http/, 'ws')}/mqtt`

  // as the page did before: anonymous, refused once identities exist
  const anonymous = new FCClient(sdkOptions({ url, reconnectPeriod: 0 }))
  t.after(() => anonymous.close())
  assert.equal((await rejection(anonymous.ready())).code, 'FNBUS_NOT_AUTHORIZED')

  // as the page does now: its own credentials, every event it subscribes to
  const page = new FCClient(sdkOptions({ url, username: live.username, password: live.password, reconnectPeriod: 0 }))
  t.after(() => page.close())
  await page.ready()
  assert.equal(identityOf(gw.aedes.clients[page.clientId]), '$dashboard')
  const seen = []
  await page.subscribe(live.filter, (topic, payload) => seen.push(`${topic}=${payload}`))
  await gw.publish('plant/temp', '21.5')
  await waitFor(() => seen.length === 1, 5000, 'the event in the live view')
  assert.deepEqual(seen, ['plant/temp=21.5'])

  // read-only: a call (or any PUBLISH) closes the connection, and nothing runs
  let ran = 0
  await gw.serve('Svc/count', async () => { ran++ })
  const call = page.invoke('Svc/count', 'x', { timeout: 3000 })
  assert.ok(['FNBUS_DISCONNECTED', 'FNBUS_TIMEOUT'].includes(String((await rejection(call)).code)))
  const raw = await mqtt.connectAsync(url, { username: live.username, password: live.password, reconnectPeriod: 0 })
  t.after(() => raw.endAsync(true))
  const closed = new Promise(resolve => raw.once('close', () => resolve(undefined)))
  raw.publish('plant/command', 'open the valve')
  await closed
  assert.deepEqual(seen, ['plant/temp=21.5'], 'the publish went nowhere')
  assert.equal(ran, 0)
})
