// The dashboard in a real browser: headless Chromium (from the npm registry, driven by playwright-core) loads the page
// of a gateway that `fnbus start` runs, as an operator would, and sees its functions, counts, dead letters, errors
// and live events. Screenshots are kept under a temp dir, named in the test output.
import assert from 'node:assert/strict'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import sparticuz from '@sparticuz/chromium'
import { chromium } from 'playwright-core'
import { FCClient } from '../../dist/index.js'
import { defined, startGateway, tempDir, waitFor } from '../helpers.js'
import { FIXTURES, freePort, runCli, startCli } from './cli.js'

/**
 * The Chromium build of `@sparticuz/chromium` (a dev dependency: unpacked to the temp dir on first use, nothing to
 * install by hand); CHROMIUM_PATH names another (Debian's `/usr/bin/chromium`, say).
 */
async function launchBrowser (t) {
  const executablePath = process.env.CHROMIUM_PATH ?? await sparticuz.executablePath()
  // no sandbox: tests run as root here, where the sandbox refuses to start;
  // without background networking, as this machine's closed network refuses those connections
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-background-networking'] })
  t.after(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } })
  const pageErrors = []
  page.on('pageerror', err => pageErrors.push(err))
  // the console stays empty: a Content Security Policy violation, a failed request or a warning shows up here
  const consoleMessages = []
  page.on('console', message => consoleMessages.push(`${message.type()}: ${message.text()}`))
  t.after(() => assert.deepEqual(consoleMessages, [], 'the page wrote nothing to the console'))
  return { page, pageErrors }
}

let screenshots
async function screenshot (t, page, name) {
  screenshots ??= await mkdtemp(join(tmpdir(), 'fnbus-dashboard-'))
  const path = join(screenshots, `${name}.png`)
  await page.screenshot({ path, fullPage: true })
  t.diagnostic(`screenshot: ${path}`)
  return path
}

const cell = (page, fn, column) => page.locator(`[data-function="${fn}"] [data-${column}]`)

test('fnbus start with the dashboard: a supervised function, its calls, dead letters, errors and live events appear', async t => {
  const dir = await tempDir(t)
  const httpPort = await freePort()
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
    memory: true,
    http: { port: httpPort },
    plugins: { dashboard: {}, websocket: {} },
    functions: [
      { service: 'Demo', function: 'echo', module: join(FIXTURES, 'callback.cjs'), concurrency: 4 },
      { service: 'Plant', function: 'fragile', async: { maxRetries: 0 } },
    ],
  }))
  const gateway = await startCli(t, [], { cwd: dir })
  const [, httpUrl] = await gateway.waitFor(/fnbus http listening on (\S+)\n/, { stream: 'stdout' })
  await gateway.waitFor('serving Demo/echo')

  const client = new FCClient({ url: gateway.url })
  t.after(() => client.close())
  for (let i = 0; i < 7; i++) assert.equal(await client.invoke('Demo/echo', `call ${i}`, { waitForWorker: 10_000 }), `echo got call ${i}`)
  await assert.rejects(client.invoke('Demo/echo', 'handled'), { code: 'FNBUS_FUNCTION_ERROR' })
  // a function served from this process that fails: its Async invocation is dead-lettered at once (maxRetries 0)
  await client.serve('Plant/fragile', async () => { throw new Error('sensor offline') })
  await client.invokeAsync('Plant/fragile', 'reading')
  // and one that waits for a worker that never comes
  await client.invokeAsync('Nobody/home', 'hello?')

  const { page, pageErrors } = await launchBrowser(t)
  await page.goto(`${httpUrl}/`)

  // the supervised function, its instance and worker, and its counts
  await page.locator('[data-function="Demo/echo"]').waitFor()
  await waitFor(async () => await cell(page, 'Demo/echo', 'calls').textContent() === '8', 10_000, 'the calls of Demo/echo')
  assert.equal(await cell(page, 'Demo/echo', 'errors').textContent(), '1')
  assert.equal(await cell(page, 'Demo/echo', 'workers').getAttribute('data-workers'), '1')
  assert.match(await page.locator('[data-function="Demo/echo"]').textContent() ?? '', /Demo\/echo#1 process up/, 'the instance chip says how it runs (isolation) and that it is up')
  assert.equal(await page.locator('[data-health="ready"]').textContent(), 'ready')

  // async queues and the dead letter with its error
  await waitFor(async () => await cell(page, 'Plant/fragile', 'async-dead').textContent() === '1', 10_000, 'the dead letter counted')
  assert.equal(await cell(page, 'Nobody/home', 'async-pending').textContent(), '1')
  assert.match(await page.locator('#dead tbody').textContent() ?? '', /Plant\/fragile.*FNBUS_FUNCTION_ERROR: Unhandled: sensor offline/)
  // read-only by default: no authorizer is configured, so no buttons
  assert.equal(await page.locator('#dead button').count(), 0)
  assert.match(await page.locator('#actions-note').textContent() ?? '', /Read-only/)

  // recent errors
  assert.match(await page.locator('#errors').textContent() ?? '', /Demo\/echo Sync Handled/)
  assert.match(await page.locator('#errors').textContent() ?? '', /Plant\/fragile deadLetter FNBUS_FUNCTION_ERROR: Unhandled: sensor offline/)

  // the page is a bus client itself: an event published now shows in its live view (MQTT over WebSocket)
  await waitFor(async () => /via ws:/.test(await page.locator('#live-state').textContent() ?? ''), 10_000, 'the live view connected')
  await client.publish('sensors/7/temperature', '21.5')
  await page.locator('#events [data-topic="sensors/7/temperature"]').waitFor({ timeout: 10_000 })

  // the chart drew the calls: it leaves out the second under way, so a page loaded within the second of the calls
  // draws them at its next poll (every 2 s)
  await waitFor(() => page.locator('#chart').evaluate(canvas => {
    // read from a copy made for reading: reading the page's own canvas again and again makes Chrome warn in the console
    const { document } = /** @type {any} */ (globalThis) // the page's (this runs in the browser)
    const copy = document.createElement('canvas')
    copy.width = canvas.width
    copy.height = canvas.height
    const reader = copy.getContext('2d', { willReadFrequently: true })
    reader.drawImage(canvas, 0, 0)
    const { data } = reader.getImageData(0, 0, canvas.width, canvas.height)
    for (let i = 0; i < data.length; i += 4) if (data[i + 1] > 140 && data[i] < 80 && data[i + 2] < 110) return true // a green bar
    return false
  }), 10_000, 'the chart shows bars of calls')

  await screenshot(t, page, 'fnbus-start')
  assert.deepEqual(pageErrors, [])
})

test('an authorized operator retries a dead letter from the page', async t => {
  let healthy = false
  const gw = await startGateway(t, {
    http: { port: 0, authorize: request => request.loopback ? { allowed: true, identity: 'operator' } : { allowed: false, status: 403, reason: 'loopback only' } },
    plugins: { dashboard: {} },
  })
  gw.bus.setFunctionOptions('Plant/fragile', { async: { maxRetries: 0 } })
  let delivered = 0
  await gw.serve('Plant/fragile', async () => {
    if (!healthy) throw new Error('sensor offline')
    delivered++
    return 'ok'
  })
  await gw.bus.invokeAsync('Plant/fragile', 'reading')
  await waitFor(() => gw.bus.queueStats('Plant/fragile')[0]?.dead === 1, 5000, 'the dead letter')

  const { page, pageErrors } = await launchBrowser(t)
  await page.goto(`${gw.httpUrl}/`)
  const retry = page.locator('#dead tbody tr[data-invocation] button', { hasText: 'Retry' })
  await retry.waitFor()
  assert.match(await page.locator('#actions-note').textContent() ?? '', /You may retry/)
  await screenshot(t, page, 'authorized-before-retry')

  healthy = true
  await retry.click()
  await waitFor(async () => /1 sent back to the queue/.test(await page.locator('#action-result').textContent() ?? ''), 10_000, 'the retry answered')
  await waitFor(() => delivered === 1, 5000, 'the retried invocation delivered')
  await waitFor(async () => await cell(page, 'Plant/fragile', 'async-dead').textContent() === '0', 10_000, 'the dead count back to 0')
  assert.equal(await page.locator('#dead tbody tr[data-invocation]').count(), 0)
  // this gateway runs no websocket plugin: the live view says so rather than knocking forever
  await waitFor(async () => /^off: no MQTT-over-WebSocket on this port/.test(await page.locator('#live-state').textContent() ?? ''), 10_000, 'the live view off')
  assert.deepEqual(pageErrors, [])
})

test("the SDK's browser bundle (/fnbus.js) in a page: invoke, serve, Async, events, bytes, coded errors", async t => {
  const gw = await startGateway(t, { http: { port: 0 }, plugins: { dashboard: {}, websocket: {} } })
  await gw.serve('Demo/echo', async (event, context) => ({ event, type: context.invocationType }))
  const { page, pageErrors } = await launchBrowser(t)
  await page.goto(`${gw.httpUrl}/`) // the page's origin is the gateway's: the websocket plugin admits it

  const served = page.evaluate(async url => {
    const bundle = '/fnbus.js' // the SDK as the gateway serves it to the page (this runs in the browser)
    const { FCClient } = await import(bundle)
    const fc = new FCClient({ url })
    Object.assign(globalThis, { pageClient: fc })
    await fc.serve('Web/upper', async text => text.toUpperCase())
  }, `${defined(gw.httpUrl).replace('http', 'ws')}/mqtt`)
  await served
  assert.equal(await gw.invoke('Web/upper', 'served from a browser'), 'SERVED FROM A BROWSER')

  const results = await page.evaluate(async () => {
    const fc = /** @type {any} */ (globalThis).pageClient
    const bundle = '/fnbus.js'
    const { FnbusError } = await import(bundle)
    const bytes = await fc.invoke('Demo/echo', new Uint8Array([1, 2, 255]))
    let notFound
    try {
      await fc.invoke('Nobody/home')
    } catch (err) {
      notFound = { code: /** @type {{ code?: string }} */ (err).code, coded: err instanceof FnbusError }
    }
    const received = new Promise(resolve => fc.subscribe('web/+', (topic, payload) => resolve([topic, new TextDecoder().decode(payload)])))
    await new Promise(resolve => setTimeout(resolve, 100))
    await fc.publish('web/hello', 'from the page')
    return {
      object: await fc.invoke('Demo/echo', { n: 1, list: ['a'] }),
      link: await fc.invokeFunction({ serviceName: 'Demo', functionName: 'echo', payload: 'text' }),
      bytes: { isUint8Array: bytes.event instanceof Uint8Array, values: [...bytes.event] },
      async: await fc.invokeAsync('Demo/echo', 'later'),
      notFound,
      event: await received,
    }
  })
  assert.deepEqual(results.object, { event: { n: 1, list: ['a'] }, type: 'Sync' })
  assert.deepEqual(results.link, { statusCode: 200, payload: { event: 'text', type: 'Sync' } })
  assert.deepEqual(results.bytes, { isUint8Array: true, values: [1, 2, 255] })
  assert.match(results.async.invocationId, /\S+/)
  assert.deepEqual(results.notFound, { code: 'FNBUS_FUNCTION_NOT_FOUND', coded: true })
  assert.deepEqual(results.event, ['web/hello', 'from the page'])
  await page.evaluate(() => /** @type {any} */ (globalThis).pageClient.close())
  assert.deepEqual(pageErrors, [])
})

test('fnbus start with http.auth "basic": the operator signs in from the browser and retries a dead letter', async t => {
  const dir = await tempDir(t)
  const httpPort = await freePort()
  const added = await runCli(t, ['identity', 'add', 'alice'], { cwd: dir })
  assert.equal(added.code, 0, added.stderr)
  const secret = added.stdout.trim()
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
    memory: true,
    http: { port: httpPort, auth: 'basic' },
    plugins: { dashboard: {} },
    functions: [{ service: 'Plant', function: 'fragile', async: { maxRetries: 0 } }],
  }))
  const gateway = await startCli(t, [], { cwd: dir })
  const [, httpUrl] = await gateway.waitFor(/fnbus http listening on (\S+)\n/, { stream: 'stdout' })

  // a dead letter: the function fails until it is told otherwise
  const client = new FCClient({ url: gateway.url, username: 'alice', password: secret })
  t.after(() => client.close())
  let healthy = false
  let delivered = 0
  await client.serve('Plant/fragile', async () => {
    if (!healthy) throw new Error('sensor offline')
    delivered++
    return 'ok'
  })
  const { invocationId } = await client.invokeAsync('Plant/fragile', 'reading')
  const deadRow = `#dead tbody tr[data-invocation="${invocationId}"]`

  // not signed in: the page shows the dead letter, no buttons, and the way to sign in
  const { page, pageErrors } = await launchBrowser(t)
  const first = defined(await page.goto(`${httpUrl}/`))
  assert.equal(first.headers()['cache-control'], 'no-store')
  await page.locator(deadRow).waitFor({ timeout: 10_000 })
  await page.locator('#sign-in').waitFor()
  assert.equal(await page.locator('#sign-in').textContent(), 'Sign in')
  assert.equal(await page.locator('#sign-in').getAttribute('href'), '/login')
  assert.equal(await page.locator('#dead button').count(), 0)
  assert.match(await page.locator('#actions-note').textContent() ?? '', /sign in as an operator/)
  assert.equal(await page.locator('#signed-in').textContent(), '')
  // the sign-in path asks for credentials, and never as a page a cache keeps
  const challenge = await fetch(`${httpUrl}/login`)
  assert.equal(challenge.status, 401)
  assert.equal(challenge.headers.get('www-authenticate'), 'Basic realm="fnbus"')
  assert.equal(challenge.headers.get('cache-control'), 'no-store')
  await screenshot(t, page, 'signin-anonymous')

  // wrong credentials: the browser gets the 401 back, and the page would stay read-only
  const browser = defined(page.context().browser())
  const wrong = await browser.newContext({ httpCredentials: { username: 'alice', password: 'guess' } })
  t.after(() => wrong.close())
  const wrongPage = await wrong.newPage()
  const refused = defined(await wrongPage.goto(`${httpUrl}/login`))
  assert.equal(refused.status(), 401)
  const unknown = await fetch(`${httpUrl}/login`, { headers: { authorization: `Basic ${Buffer.from('mallory:' + secret).toString('base64')}` } })
  assert.equal(unknown.status, 401)

  // the right ones: /login takes them, sends the browser back to the page, which now shows the buttons
  const signed = await browser.newContext({ httpCredentials: { username: 'alice', password: secret }, viewport: { width: 1280, height: 1000 } })
  t.after(() => signed.close())
  const operatorPage = await signed.newPage()
  operatorPage.on('pageerror', err => pageErrors.push(err))
  const signedIn = defined(await operatorPage.goto(`${httpUrl}/login`))
  assert.equal(new URL(operatorPage.url()).pathname, '/')
  assert.equal(signedIn.status(), 200)
  const retry = operatorPage.locator(`${deadRow} button`, { hasText: 'Retry' })
  await retry.waitFor({ timeout: 10_000 })
  assert.equal(await operatorPage.locator('#signed-in').textContent(), 'signed in as alice')
  assert.equal(await operatorPage.locator('#sign-in').isHidden(), true)
  assert.match(await operatorPage.locator('#actions-note').textContent() ?? '', /You may retry/)
  await screenshot(t, operatorPage, 'signin-operator')

  healthy = true
  await retry.click()
  await waitFor(async () => /1 sent back to the queue/.test(await operatorPage.locator('#action-result').textContent() ?? ''), 10_000, 'the retry answered')
  await waitFor(() => delivered === 1, 10_000, 'the retried invocation delivered')
  await waitFor(async () => await operatorPage.locator(deadRow).count() === 0, 10_000, 'the dead letter gone from the page')
  assert.deepEqual(pageErrors, [])
})

test('once identities exist, the live view connects with the credentials the gateway issues it and shows events', async t => {
  const dir = await tempDir(t)
  const httpPort = await freePort()
  const added = await runCli(t, ['identity', 'add', 'alice'], { cwd: dir })
  assert.equal(added.code, 0, added.stderr)
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ memory: true, http: { port: httpPort }, plugins: { dashboard: {}, websocket: {} } }))
  const gateway = await startCli(t, [], { cwd: dir })
  const [, httpUrl] = await gateway.waitFor(/fnbus http listening on (\S+)\n/, { stream: 'stdout' })

  const { page, pageErrors } = await launchBrowser(t)
  await page.goto(`${httpUrl}/`)
  await waitFor(async () => /via ws:/.test(await page.locator('#live-state').textContent() ?? ''), 10_000, 'the live view connected')
  const client = new FCClient({ url: gateway.url, username: 'alice', password: added.stdout.trim() })
  t.after(() => client.close())
  await client.publish('sensors/7/temperature', '21.5')
  await page.locator('#events [data-topic="sensors/7/temperature"]').waitFor({ timeout: 10_000 })
  await screenshot(t, page, 'live-with-identities')
  assert.deepEqual(pageErrors, [])
})

test('in a cluster, the page shows the link to NATS and each other gateway with what it serves and the calls to it', async t => {
  const { natsCluster } = await import('./nats-cluster.js')
  const nats = await natsCluster(t, await tempDir(t), { nodes: 1 })
  const cluster = (/** @type {string} */ name) => ({ servers: nats.servers, name, ...nats.credentials, heartbeatMs: 200 })
  // the websocket plugin too: the page's live view connects through it
  const a = await startGateway(t, { cluster: cluster('a'), http: { port: 0 }, plugins: ['dashboard', 'websocket'] })
  const b = await startGateway(t, { cluster: cluster('b') })
  await b.serve('Plant/sample', async () => 'from b')
  await waitFor(() => a.cluster?.()?.members.some(m => m.functions.includes('Plant/sample')), 10_000, 'a to see b serving')
  for (let i = 0; i < 3; i++) assert.equal(await a.invoke('Plant/sample', i), 'from b')

  const { page, pageErrors } = await launchBrowser(t)
  await page.goto(`${defined(a.httpUrl)}/`)
  await page.locator('#cluster-section').waitFor()
  assert.match(await page.locator('#cluster-state').textContent() ?? '', /^a · connected to /)
  const row = page.locator('[data-peer="b"]')
  await row.waitFor()
  assert.match(await row.textContent() ?? '', /Plant\/sample/)
  await waitFor(async () => await row.locator('[data-sent]').textContent() === '3', 10_000, 'the calls to b')
  await screenshot(t, page, 'fnbus-cluster')
  assert.deepEqual(pageErrors, [])
  // closed before the gateways are: closing a clustered gateway takes a while, and the page's next poll would fail
  await page.close()
})
