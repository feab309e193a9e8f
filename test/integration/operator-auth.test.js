// Operators as identities: the HTTP port's http.auth "basic" verifies identities with the gateway's scrypt
// Authenticator; the dashboard's actions need a manage grant on their function under a policy, and the status a
// signed-in operator reads shows the functions it manages. A real gateway, real HTTP requests.
import assert from 'node:assert/strict'
import { networkInterfaces } from 'node:os'
import test from 'node:test'
import { hashSecret } from '../../dist/security/credentials.js'
import { rejection, startGateway, waitFor } from '../helpers.js'

const SECRETS = { operator: 'operator-secret', viewer: 'viewer-secret' }
const IDENTITIES = Object.fromEntries(await Promise.all(Object.entries(SECRETS).map(async ([name, secret]) => [name, { hash: await hashSecret(secret) }])))
const POLICY = [
  { identity: 'operator', allow: { manage: ['Shop/*'], invoke: ['*'] } },
  { identity: 'viewer', allow: { invoke: ['*'] } },
]

function basic (name, secret = SECRETS[name]) {
  return { authorization: `Basic ${Buffer.from(`${name}:${secret}`).toString('base64')}` }
}

/**
 * A request to the HTTP port at `base`: the status, the challenge and the JSON answer (the tests assert its shape).
 * @param {string | undefined} base
 * @param {string} path
 * @param {{ method?: string, body?: unknown, headers?: Record<string, string> }} [options]
 * @returns {Promise<{ status: number, challenge: string | null, body: any }>}
 */
async function request (base, path, { method = 'GET', body, headers = {} } = {}) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { status: response.status, challenge: response.headers.get('www-authenticate'), body: await response.json() }
}

/** Dead letters of each of `names`: an in-process worker that always fails, no retries. */
async function deadLetters (gw, names) {
  for (const name of names) {
    gw.bus.setFunctionOptions(name, { async: { maxRetries: 0 } })
    await gw.serve(name, async () => { throw new Error('out of stock') })
    await gw.bus.invokeAsync(name, 'x')
  }
  await waitFor(() => names.every(name => gw.bus.queueStats(name)[0]?.dead === 1), 5000, 'the dead letters')
}

test('http.auth basic with a policy: actions need an identity with manage on their function; 401s ask for Basic', async t => {
  const gw = await startGateway(t, { identities: IDENTITIES, policy: POLICY, http: { port: 0, auth: 'basic' }, plugins: { dashboard: {} } })
  await deadLetters(gw, ['Shop/order', 'Other/job'])
  const base = gw.httpUrl

  // loopback reads stay open, as without http.auth
  assert.equal((await request(base, '/api/status')).status, 200)
  const anonymous = await request(base, '/api/dashboard/retry', { method: 'POST', body: { function: 'Shop/order' } })
  assert.equal(anonymous.status, 401)
  assert.equal(anonymous.challenge, 'Basic realm="fnbus"')
  const wrong = await request(base, '/api/dashboard/retry', { method: 'POST', body: { function: 'Shop/order' }, headers: basic('operator', 'guess') })
  assert.equal(wrong.status, 401)
  assert.equal(wrong.challenge, 'Basic realm="fnbus"')
  const unknown = await request(base, '/api/status', { headers: basic('mallory', 'operator-secret') })
  assert.equal(unknown.status, 401, 'credentials that do not verify are refused, even for a loopback read')
  // an identity the policy gives no manage grant
  assert.equal((await request(base, '/api/dashboard/purge', { method: 'POST', body: {}, headers: basic('viewer') })).status, 403)
  // manage on Shop/* only
  const elsewhere = await request(base, '/api/dashboard/retry', { method: 'POST', body: { function: 'Other/job' }, headers: basic('operator') })
  assert.deepEqual([elsewhere.status, elsewhere.body.error], [403, 'FNBUS_NOT_AUTHORIZED'])
  const [otherDead] = await gw.bus.listDead('Other/job')
  const byId = await request(base, '/api/dashboard/retry', { method: 'POST', body: { invocationId: otherDead.id }, headers: basic('operator') })
  assert.equal(byId.status, 403, 'an invocation id of a function it may not manage')
  assert.equal(gw.bus.queueStats('Other/job')[0].dead, 1)

  // the operator's status shows the functions it manages
  const seen = await request(base, '/api/status', { headers: basic('operator') })
  assert.deepEqual(seen.body.functions.map(f => f.name), ['Shop/order'])
  assert.deepEqual(seen.body.deadLetters.map(d => d.function), ['Shop/order'])
  // purging everything it may: Shop/order's dead letter, not Other/job's
  const purged = await request(base, '/api/dashboard/purge', { method: 'POST', body: {}, headers: basic('operator') })
  assert.deepEqual([purged.status, purged.body], [200, { purged: 1 }])
  assert.equal(gw.bus.queueStats('Shop/order')[0].dead, 0)
  assert.equal(gw.bus.queueStats('Other/job')[0].dead, 1)
})

test('http.auth basic without a policy: any identity may act; anonymous actions are refused', async t => {
  const gw = await startGateway(t, { identities: IDENTITIES, http: { port: 0, auth: 'basic' }, plugins: { dashboard: {} } })
  await deadLetters(gw, ['Other/job'])
  const base = gw.httpUrl
  assert.equal((await request(base, '/api/dashboard/retry', { method: 'POST', body: { function: 'Other/job' } })).status, 401)
  const retried = await request(base, '/api/dashboard/retry', { method: 'POST', body: { function: 'Other/job' }, headers: basic('viewer') })
  assert.deepEqual([retried.status, retried.body], [200, { revived: 1 }])
  const dashboard = await request(base, '/api/dashboard', { headers: basic('viewer') })
  assert.equal(dashboard.body.canAct, true, 'the page shows its buttons to a signed-in operator')
  assert.equal((await request(base, '/api/dashboard')).body.canAct, false)
})

test('signing in: /login asks for Basic until it gets valid credentials, then sends the browser to the page', async t => {
  const gw = await startGateway(t, { identities: IDENTITIES, policy: POLICY, http: { port: 0, auth: 'basic' }, plugins: { dashboard: {} } })
  const base = gw.httpUrl
  const login = async headers => await fetch(`${base}/login`, { headers, redirect: 'manual' })

  const anonymous = await login({})
  assert.deepEqual([anonymous.status, anonymous.headers.get('www-authenticate'), anonymous.headers.get('cache-control')], [401, 'Basic realm="fnbus"', 'no-store'])
  const wrong = await login(basic('operator', 'guess'))
  assert.deepEqual([wrong.status, wrong.headers.get('www-authenticate')], [401, 'Basic realm="fnbus"'])
  assert.equal((await login(basic('mallory', 'operator-secret'))).status, 401)
  for (const name of ['operator', 'viewer']) {
    const signedIn = await login(basic(name))
    assert.deepEqual([signedIn.status, signedIn.headers.get('location'), signedIn.headers.get('cache-control')], [303, '/', 'no-store'], name)
  }
  const page = await fetch(`${base}/`, { headers: basic('operator') })
  assert.equal(page.headers.get('cache-control'), 'no-store', 'a page an operator loaded is kept nowhere')

  // what the page learns: who signed in, what it may do, whether to offer signing in
  assert.deepEqual((await request(base, '/api/dashboard')).body.operator, { identity: null, canAct: false, signIn: true })
  assert.deepEqual((await request(base, '/api/dashboard', { headers: basic('operator') })).body.operator, { identity: 'operator', canAct: true, signIn: false })
  // signed in, but the policy grants no manage: no buttons, and nothing to sign in to
  assert.deepEqual((await request(base, '/api/dashboard', { headers: basic('viewer') })).body.operator, { identity: 'viewer', canAct: false, signIn: false })
})

test('signing in needs http.auth: without it /login is not offered', async t => {
  const gw = await startGateway(t, { http: { port: 0 }, plugins: { dashboard: {} } })
  assert.equal((await fetch(`${gw.httpUrl}/login`, { redirect: 'manual' })).status, 404)
  assert.deepEqual((await request(gw.httpUrl, '/api/dashboard')).body.operator, { identity: null, canAct: false, signIn: false })
})

test('http.auth basic: reads from beyond loopback need an identity', async t => {
  const address = Object.values(networkInterfaces()).flat().find(i => i?.family === 'IPv4' && !i.internal)?.address
  if (address === undefined) {
    t.skip('this machine has no non-loopback IPv4 address')
    return
  }
  const gw = await startGateway(t, { identities: IDENTITIES, http: { port: 0, host: '0.0.0.0', auth: 'basic' } })
  const base = `http://${address}:${new URL(String(gw.httpUrl)).port}`
  const anonymous = await request(base, '/api/status')
  assert.deepEqual([anonymous.status, anonymous.challenge], [401, 'Basic realm="fnbus"'])
  assert.equal((await request(base, '/api/status', { headers: basic('viewer') })).status, 200)
  assert.equal((await request(base, '/healthz', { headers: basic('viewer', 'nope') })).status, 401)
})

test('http.auth is checked: one known mode, and not together with an authorizer', async t => {
  assert.equal((await rejection(startGateway(t, { http: { port: 0, auth: /** @type {any} */ ('digest') } }))).code, 'FNBUS_CONFIG_INVALID')
  const both = await rejection(startGateway(t, { http: { port: 0, auth: 'basic', authorize: () => ({ allowed: true }) } }))
  assert.match(both.message, /http\.auth or http\.authorize, not both/)
})
