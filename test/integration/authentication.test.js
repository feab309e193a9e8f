// Who may connect: identities with hashed secrets, client ids derived from the identity, no session takeover by
// another identity, anonymous access only where the operator allows it, and no listener beyond loopback without
// either. A real gateway, real MQTT.js and FCClient connections.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { join } from 'node:path'
import { test } from 'node:test'
import { Aedes } from 'aedes'
import mqtt from 'mqtt'
import { createServer } from 'node:net'
import { attachFunctionBus, createGateway, FCClient } from '../../dist/index.js'
import { hashSecret, writeIdentitiesFile } from '../../dist/security/credentials.js'
import { identityOf } from '../../dist/security/identity.js'
import { portOf, rejection, sdkOptions, startGateway, tempDir, waitFor } from '../helpers.js'

const SECRETS = { alice: 'alice-secret', bob: 'bob-secret', 'Plant/reader': 'reader-secret' }
const IDENTITIES = Object.fromEntries(await Promise.all(Object.entries(SECRETS).map(async ([name, secret]) => [name, { hash: await hashSecret(secret) }])))

/** A raw MQTT.js connection that does not retry: resolves with the CONNACK's return code (0: accepted). */
function rawConnect (t, url, options = {}) {
  const client = mqtt.connect(url, { reconnectPeriod: 0, protocolVersion: 4, ...options })
  t.after(() => client.end(true))
  return new Promise(resolve => {
    client.once('connect', () => resolve({ client, code: 0 }))
    client.once('error', err => resolve({ client, code: /** @type {{ code?: number }} */ (err).code, message: err.message }))
  })
}

test('a good password connects as its identity; a wrong one, an unknown user or no password is refused (CONNACK 4)', async t => {
  const gw = await startGateway(t, { identities: IDENTITIES })
  const good = await rawConnect(t, gw.url, { clientId: 'alice.raw', username: 'alice', password: 'alice-secret' })
  assert.equal(good.code, 0)
  assert.equal(identityOf(gw.aedes.clients['alice.raw']), 'alice')

  assert.equal((await rawConnect(t, gw.url, { clientId: 'alice.x', username: 'alice', password: 'bob-secret' })).code, 4)
  assert.equal((await rawConnect(t, gw.url, { clientId: 'alice.y', username: 'alice', password: 'alice-secret ' })).code, 4)
  assert.equal((await rawConnect(t, gw.url, { clientId: 'mallory', username: 'mallory', password: 'alice-secret' })).code, 4)
  assert.equal((await rawConnect(t, gw.url, { clientId: 'alice.z', username: 'alice' })).code, 4)
  assert.equal(gw.aedes.clients['alice.x'], undefined)
})

test('FCClient: credentials from options or FNBUS_USERNAME/FNBUS_PASSWORD, a client id of its identity, FNBUS_NOT_AUTHORIZED when refused', async t => {
  const gw = await startGateway(t, { identities: IDENTITIES })
  await gw.serve('Local/whoami', async (event) => event)

  const alice = new FCClient(sdkOptions({ url: gw.url, username: 'alice', password: 'alice-secret' }))
  t.after(() => alice.close())
  assert.match(alice.clientId, /^alice\.[0-9a-z]{16}$/)
  assert.equal(await alice.invoke('Local/whoami', 'hi'), 'hi')
  assert.equal(identityOf(gw.aedes.clients[alice.clientId]), 'alice')

  process.env.FNBUS_USERNAME = 'Plant/reader'
  process.env.FNBUS_PASSWORD = 'reader-secret'
  let reader
  try {
    reader = new FCClient(sdkOptions({ url: gw.url }))
  } finally {
    delete process.env.FNBUS_USERNAME
    delete process.env.FNBUS_PASSWORD
  }
  t.after(() => reader.close())
  assert.match(reader.clientId, /^Plant:reader\.[0-9a-z]{16}$/)
  await reader.ready()
  assert.equal(identityOf(gw.aedes.clients[reader.clientId]), 'Plant/reader')

  const wrong = new FCClient(sdkOptions({ url: gw.url, username: 'alice', password: 'nope' }))
  t.after(() => wrong.close())
  const pending = wrong.invoke('Local/whoami', 'hi', { timeout: 20_000 })
  const err = await rejection(wrong.ready())
  assert.equal(err.code, 'FNBUS_NOT_AUTHORIZED')
  assert.match(err.message, /refused the connection: Bad username or password/)
  // a call made meanwhile fails at once rather than at its deadline
  assert.equal((await rejection(pending)).code, 'FNBUS_NOT_AUTHORIZED')
})

test("an identity may use any well-formed client id but another identity's (CONNACK 2 otherwise)", async t => {
  const gw = await startGateway(t, { identities: IDENTITIES })
  const as = (clientId, username = 'alice') => rawConnect(t, gw.url, { clientId, username, password: SECRETS[username] })
  assert.equal((await as('alice')).code, 0)
  assert.equal((await as('alice.phone')).code, 0)
  assert.equal((await as('Plant:reader.1', 'Plant/reader')).code, 0)
  // ids of no known identity's form are anyone's to take: standard clients' defaults, names of no identity
  for (const free of ['mqttjs_1a2b3c4d', 'fnbus-abc', 'alice2', 'alicex.1', 'auto-0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0']) {
    assert.equal((await as(free)).code, 0, free)
  }
  // another identity's namespace, and ids that are not well-formed
  for (const other of ['bob', 'bob.x', 'Plant:reader', 'alice.a/b', 'a b', '#', 'x'.repeat(129)]) {
    assert.equal((await as(other)).code, 2, other)
  }
  // the refusal comes before aedes registers the client: nobody was kicked, nothing was added
  assert.ok(gw.aedes.clients.alice)
  assert.equal(gw.aedes.clients.bob, undefined)
})

test('no session takeover by another identity, a wrong password or an anonymous client; the same identity may resume its own', async t => {
  const gw = await startGateway(t, { identities: IDENTITIES, allowAnonymous: true })
  const first = await rawConnect(t, gw.url, { clientId: 'alice.session', username: 'alice', password: 'alice-secret', clean: false })
  assert.equal(first.code, 0)
  await /** @type {Promise<void>} */ (new Promise((resolve, reject) => first.client.subscribe('alerts/#', { qos: 1 }, err => err ? reject(err) : resolve())))
  const original = gw.aedes.clients['alice.session']

  assert.equal((await rawConnect(t, gw.url, { clientId: 'alice.session', username: 'bob', password: 'bob-secret', clean: false })).code, 2)
  assert.equal((await rawConnect(t, gw.url, { clientId: 'alice.session', username: 'alice', password: 'guess', clean: false })).code, 4)
  assert.equal((await rawConnect(t, gw.url, { clientId: 'alice.session', clean: false })).code, 2, 'anonymous')
  assert.equal((await rawConnect(t, gw.url, { clientId: 'alice', clean: false })).code, 2, 'anonymous, the bare stem')
  assert.equal(gw.aedes.clients['alice.session'], original, 'the first connection is still the session')
  assert.equal(first.client.connected, true)

  // alice herself, from elsewhere, takes over her own session and its subscriptions, as MQTT says ([MQTT-3.1.4-2])
  const again = await rawConnect(t, gw.url, { clientId: 'alice.session', username: 'alice', password: 'alice-secret', clean: false })
  assert.equal(again.code, 0)
  assert.equal(again.client.connected, true)
  await waitFor(() => gw.aedes.clients['alice.session'] !== original, 5000, 'the takeover')
  const received = once(again.client, 'message')
  await gw.publish('alerts/fire', 'evacuate', { qos: 1 })
  const [topic, payload] = await received
  assert.equal(topic, 'alerts/fire')
  assert.equal(payload.toString(), 'evacuate')
})

test('anonymous clients: accepted without identities, refused (CONNACK 5) once identities exist unless allowAnonymous', async t => {
  const open = await startGateway(t)
  assert.equal((await rawConnect(t, open.url, { clientId: 'anyone' })).code, 0)
  assert.equal(identityOf(open.aedes.clients.anyone), undefined)

  const closed = await startGateway(t, { identities: IDENTITIES })
  assert.equal((await rawConnect(t, closed.url, { clientId: 'anyone' })).code, 5)
  const sdk = new FCClient(sdkOptions({ url: closed.url }))
  t.after(() => sdk.close())
  assert.equal((await rejection(sdk.ready())).code, 'FNBUS_NOT_AUTHORIZED')

  const mixed = await startGateway(t, { identities: IDENTITIES, allowAnonymous: true })
  assert.equal((await rawConnect(t, mixed.url, { clientId: 'anyone' })).code, 0)
  assert.equal(identityOf(mixed.aedes.clients.anyone), undefined)
  assert.equal((await rawConnect(t, mixed.url, { clientId: 'alice.1', username: 'alice', password: 'alice-secret' })).code, 0)

  const locked = await startGateway(t, { allowAnonymous: false })
  assert.equal((await rawConnect(t, locked.url, { clientId: 'anyone' })).code, 5)
})

test('the identities file: read at start, read again when it changes; once identities existed, emptying it does not open the gateway', async t => {
  const dir = await tempDir(t)
  const file = join(dir, 'fnbus.identities.json')
  await writeIdentitiesFile(file, { alice: IDENTITIES.alice })
  const gw = await startGateway(t, { identities: file })
  assert.equal((await rawConnect(t, gw.url, { clientId: 'alice', username: 'alice', password: 'alice-secret' })).code, 0)
  assert.equal((await rawConnect(t, gw.url, { clientId: 'bob', username: 'bob', password: 'bob-secret' })).code, 4)

  await writeIdentitiesFile(file, { alice: IDENTITIES.alice, bob: IDENTITIES.bob })
  assert.equal((await rawConnect(t, gw.url, { clientId: 'bob', username: 'bob', password: 'bob-secret' })).code, 0)

  await writeIdentitiesFile(file, {})
  assert.equal((await rawConnect(t, gw.url, { clientId: 'bob.2', username: 'bob', password: 'bob-secret' })).code, 4)
  assert.equal((await rawConnect(t, gw.url, { clientId: 'anyone' })).code, 5, 'anonymous stays refused')

  await assert.rejects(createGateway({ port: 0, memory: true, identities: join(dir, 'missing.json') }), { code: 'FNBUS_CONFIG_INVALID', message: /missing\.json: the identities file does not exist/ })
})

test('credentials the gateway issues (as the supervisor does) work until revoked', async t => {
  const gw = await startGateway(t, { identities: IDENTITIES })
  const issued = gw.issueCredentials('Test/echo')
  assert.equal(issued.username, 'Test/echo')
  assert.equal(issued.clientIdStem, 'Test:echo')
  const worker = new FCClient(sdkOptions({ url: gw.url, username: issued.username, password: issued.password }))
  t.after(() => worker.close())
  await worker.serve('Test/echo', async (event) => `echo ${event}`)
  assert.equal(await gw.invoke('Test/echo', 'x'), 'echo x')
  assert.equal(identityOf(gw.aedes.clients[worker.clientId]), 'Test/echo')

  const other = gw.issueCredentials('Test/echo')
  assert.notEqual(other.password, issued.password, 'each instance its own secret')
  issued.revoke()
  assert.equal((await rawConnect(t, gw.url, { clientId: 'Test:echo.new', username: 'Test/echo', password: issued.password })).code, 4)
  assert.equal((await rawConnect(t, gw.url, { clientId: 'Test:echo.other', username: 'Test/echo', password: other.password })).code, 0)
  // an anonymous client cannot take the ids of an issued identity either
  const anonymous = await startGateway(t)
  anonymous.issueCredentials('Test/echo')
  assert.equal((await rawConnect(t, anonymous.url, { clientId: 'Test:echo.1' })).code, 2)
  assert.equal((await rawConnect(t, anonymous.url, { clientId: 'fnbus-anyone' })).code, 0)
})

test('beyond loopback: refused without identities, unless allowAnonymous says so', async t => {
  const err = await rejection(createGateway({ port: 0, host: '0.0.0.0', memory: true }))
  assert.equal(err.code, 'FNBUS_CONFIG_INVALID')
  assert.match(err.message, /host 0\.0\.0\.0 is reachable beyond this machine, and no identity is configured/)
  assert.match(err.message, /fnbus identity add NAME/)
  assert.match(err.message, /allowAnonymous: true/)

  const secured = await startGateway(t, { host: '0.0.0.0', identities: IDENTITIES })
  assert.equal((await rawConnect(t, `mqtt://127.0.0.1:${secured.port}`, { clientId: 'alice', username: 'alice', password: 'alice-secret' })).code, 0)
  assert.equal((await rawConnect(t, `mqtt://127.0.0.1:${secured.port}`, { clientId: 'anyone' })).code, 5)

  const open = await startGateway(t, { host: '0.0.0.0', allowAnonymous: true })
  assert.equal((await rawConnect(t, `mqtt://127.0.0.1:${open.port}`, { clientId: 'anyone' })).code, 0)
  // loopback addresses other than 127.0.0.1 are still this machine only
  await startGateway(t, { host: '127.0.0.2' })
})

test("attachFunctionBus: usernames fnbus does not know go to the host's own authenticate hook", async t => {
  const aedes = await Aedes.createBroker({
    authenticate (client, username, password, callback) {
      callback(null, username === 'legacy' && password?.toString() === 'legacy-secret')
    },
  })
  const bus = attachFunctionBus(aedes, { identities: IDENTITIES })
  const server = createServer(bus.handle)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(async () => {
    await bus.close()
    await new Promise(resolve => aedes.close(() => resolve(undefined)))
    await new Promise(resolve => server.close(() => resolve(undefined)))
  })
  const url = `mqtt://127.0.0.1:${portOf(server)}`
  assert.equal((await rawConnect(t, url, { clientId: 'old-device', username: 'legacy', password: 'legacy-secret' })).code, 0)
  assert.equal(identityOf(aedes.clients['old-device']), undefined, 'no fnbus identity for the host\'s users')
  assert.equal((await rawConnect(t, url, { clientId: 'old-device2', username: 'legacy', password: 'wrong' })).code, 5)
  // nor may they take the session of an fnbus identity
  assert.equal((await rawConnect(t, url, { clientId: 'alice.s', username: 'legacy', password: 'legacy-secret' })).code, 2)
  // fnbus' own identities are still fnbus' to decide
  assert.equal((await rawConnect(t, url, { clientId: 'alice', username: 'alice', password: 'alice-secret' })).code, 0)
  assert.equal((await rawConnect(t, url, { clientId: 'alice.2', username: 'alice', password: 'legacy-secret' })).code, 4)
})

test('regression: close() right after a session takeover ends (aedes registers the newcomer after its CONNACK)', async t => {
  const gw = await createGateway({ port: 0, memory: true, identities: IDENTITIES })
  const first = await rawConnect(t, gw.url, { clientId: 'alice.s', username: 'alice', password: 'alice-secret', clean: false })
  await new Promise(resolve => first.client.subscribe('alerts/#', { qos: 1 }, resolve))
  const second = await rawConnect(t, gw.url, { clientId: 'alice.s', username: 'alice', password: 'alice-secret', clean: false })
  assert.equal(second.code, 0)
  let timer
  const outcome = await Promise.race([
    gw.close().then(() => 'closed'),
    new Promise(resolve => { timer = setTimeout(resolve, 5000, 'close() still pending after 5 s') }),
  ])
  clearTimeout(timer)
  assert.equal(outcome, 'closed')
})
