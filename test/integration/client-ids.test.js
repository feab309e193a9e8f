// One client-id rule for every client: well-formed ids only (a client id names one topic level, its inbox
// `$fn/in/{clientId}`), and each id belongs to the identity that first used it while one of its connections or a
// persistent session of it exists — across a restart too. Standard clients (mosquitto_pub/mosquitto_sub, MQTT.js)
// connect with their default ids; a wrong secret is "bad user name or password" whatever the id.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { hashSecret } from '../../dist/security/credentials.js'
import { identityOf } from '../../dist/security/identity.js'
import { startGateway, tempDir, waitFor } from '../helpers.js'

const SECRETS = { alice: 'alice-secret', bob: 'bob-secret' }
// a lower scrypt cost than the default: these tests are about client ids, not the hashes' cost
const IDENTITIES = Object.fromEntries(await Promise.all(Object.entries(SECRETS).map(async ([name, secret]) => [name, { hash: await hashSecret(secret, { ln: 12, r: 8, p: 1 }) }])))

/** A raw MQTT.js connection that does not retry: resolves with the CONNACK's return code (0: accepted). */
function rawConnect (t, url, options = {}) {
  const client = mqtt.connect(url, { reconnectPeriod: 0, protocolVersion: 4, ...options })
  t.after(() => client.end(true))
  return new Promise(resolve => {
    client.once('connect', connack => resolve({ client, code: 0, sessionPresent: connack.sessionPresent }))
    client.once('error', err => resolve({ client, code: /** @type {{ code?: number }} */ (err).code, message: err.message }))
  })
}

const as = (t, gw, username, clientId, options = {}) =>
  rawConnect(t, gw.url, { clientId, username, password: SECRETS[username], ...options })

test('every client, anonymous too, needs a well-formed client id: "#" never gets $fn/in/#', async t => {
  const gw = await startGateway(t)
  for (const bad of ['#', '+', 'a/b', 'a b', 'x'.repeat(129), 'café', '$fn']) {
    assert.equal((await rawConnect(t, gw.url, { clientId: bad })).code, 2, JSON.stringify(bad))
  }
  assert.equal(Object.keys(gw.aedes.clients).length, 0, 'none of them was registered')
  // what standard clients send by default, and the longest id there may be
  for (const good of ['mqttjs_1a2b3c4d', 'paho4716250187736', 'auto-0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0', 'x'.repeat(128), 'node:7@site-a.local']) {
    const { client, code } = await rawConnect(t, gw.url, { clientId: good })
    assert.equal(code, 0, good)
    client.end(true)
  }
  // MQTT.js' own default id
  const defaulted = await rawConnect(t, gw.url)
  assert.equal(defaulted.code, 0)
  assert.match(defaulted.client.options.clientId, /^mqttjs_/)
})

test('a client id is held by its first identity while connected: others are refused (CONNACK 2), the same identity takes it over', async t => {
  const gw = await startGateway(t, { identities: IDENTITIES, allowAnonymous: true })
  const first = await as(t, gw, 'alice', 'device-7')
  assert.equal(first.code, 0)
  assert.equal((await as(t, gw, 'bob', 'device-7')).code, 2, 'another identity')
  assert.equal((await rawConnect(t, gw.url, { clientId: 'device-7' })).code, 2, 'an anonymous client')
  assert.equal(identityOf(gw.aedes.clients['device-7']), 'alice')
  assert.equal(first.client.connected, true, 'the holder was not disconnected')

  // an anonymous client's id is held the same way, by all anonymous clients together
  const anonymous = await rawConnect(t, gw.url, { clientId: 'sensor-3' })
  assert.equal(anonymous.code, 0)
  assert.equal((await as(t, gw, 'alice', 'sensor-3')).code, 2)

  // alice from elsewhere takes over her own session, as MQTT says ([MQTT-3.1.4-2])
  const again = await as(t, gw, 'alice', 'device-7')
  assert.equal(again.code, 0)
  await once(first.client, 'close')
  // once alice's clean sessions are gone, the id is free again
  again.client.end(true)
  await waitFor(() => gw.aedes.clients['device-7'] === undefined, 5000, 'alice gone')
  await waitFor(async () => (await as(t, gw, 'bob', 'device-7')).code === 0, 5000, 'bob takes the free id')
})

test('a persistent session keeps its client id for its identity across a restart; a clean session by the owner frees it', async t => {
  const dataDir = await tempDir(t)
  let gw = await startGateway(t, { dataDir, identities: IDENTITIES, allowAnonymous: true })
  const first = await as(t, gw, 'alice', 'plant-gw', { clean: false })
  assert.equal(first.code, 0)
  await first.client.subscribeAsync('alerts/#', { qos: 1 })
  await first.client.endAsync()
  assert.equal((await as(t, gw, 'bob', 'plant-gw', { clean: false })).code, 2, 'the offline session is alice\'s')
  await gw.close()

  gw = await startGateway(t, { dataDir, identities: IDENTITIES, allowAnonymous: true })
  await gw.publish('alerts/fire', 'evacuate', { qos: 1 })
  assert.equal((await as(t, gw, 'bob', 'plant-gw', { clean: false })).code, 2, 'another identity, persistent')
  assert.equal((await as(t, gw, 'bob', 'plant-gw')).code, 2, 'another identity, clean')
  assert.equal((await rawConnect(t, gw.url, { clientId: 'plant-gw', clean: false })).code, 2, 'an anonymous client')
  const back = await as(t, gw, 'alice', 'plant-gw', { clean: false })
  assert.equal(back.code, 0)
  assert.equal(back.sessionPresent, true)
  const [topic, payload] = await once(back.client, 'message')
  assert.equal(`${topic}=${payload}`, 'alerts/fire=evacuate', 'the message queued while she was away')
  await back.client.endAsync()

  // a clean session ends the persistent one [MQTT-3.1.2-6]: the id is nobody's once it closes, after a restart too
  const clean = await as(t, gw, 'alice', 'plant-gw')
  assert.equal(clean.code, 0)
  await clean.client.endAsync()
  await gw.close()
  gw = await startGateway(t, { dataDir, identities: IDENTITIES, allowAnonymous: true })
  assert.equal((await as(t, gw, 'bob', 'plant-gw')).code, 0)
})

test('a wrong, missing or unknown secret is CONNACK 4 whatever the client id', async t => {
  const gw = await startGateway(t, { identities: IDENTITIES })
  const held = await as(t, gw, 'bob', 'held-by-bob')
  assert.equal(held.code, 0)
  for (const clientId of ['alice.1', 'bob', 'held-by-bob', 'mqttjs_00ff00ff', 'a b', '#', '']) {
    assert.equal((await rawConnect(t, gw.url, { clientId, username: 'alice', password: 'wrong' })).code, 4, `wrong secret, ${JSON.stringify(clientId)}`)
    assert.equal((await rawConnect(t, gw.url, { clientId, username: 'alice' })).code, 4, `no secret, ${JSON.stringify(clientId)}`)
    assert.equal((await rawConnect(t, gw.url, { clientId, username: 'mallory', password: 'x' })).code, 4, `unknown user, ${JSON.stringify(clientId)}`)
  }
})

/** Runs a mosquitto client; resolves with its exit code and output. */
function mosquitto (command, args, { timeoutMs = 20_000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') reject(err)
      else resolve({ code: err === null ? 0 : err.code, stdout, stderr })
    })
  })
}

test('mosquitto_pub and mosquitto_sub with -u/-P and no client id, and MQTT.js with its default id, connect once identities exist', async t => {
  const gw = await startGateway(t, { identities: IDENTITIES })
  const port = String(gw.port)
  const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-u', 'alice', '-P', SECRETS.alice, '-t', 'plant/#', '-C', '2', '-W', '20', '-v'])
  t.after(() => sub.kill())
  let output = ''
  sub.stdout.on('data', chunk => { output += chunk })
  let errors = ''
  sub.stderr.on('data', chunk => { errors += chunk })
  // mosquitto_sub sends an empty client id: the gateway assigned one, bound to alice
  await waitFor(() => Object.values(gw.aedes.clients).some(c => c !== undefined && identityOf(c) === 'alice' && c.id.startsWith('aedes_')), 10_000, 'mosquitto_sub connected')
  const published = await mosquitto('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-u', 'bob', '-P', SECRETS.bob, '-t', 'plant/temp', '-m', '21.5', '-q', '1'])
  assert.equal(published.code, 0, published.stderr)

  const js = await rawConnect(t, gw.url, { username: 'bob', password: SECRETS.bob })
  assert.equal(js.code, 0, js.message)
  assert.match(js.client.options.clientId, /^mqttjs_/)
  await js.client.publishAsync('plant/pressure', '1.2', { qos: 1 })

  const [code] = await once(sub, 'exit')
  assert.equal(code, 0, errors)
  assert.equal(output, 'plant/temp 21.5\nplant/pressure 1.2\n')

  // a wrong secret says so (rc 4), not "identifier rejected"
  const wrong = await mosquitto('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-u', 'alice', '-P', 'nope', '-t', 'plant/x', '-m', 'x'])
  assert.notEqual(wrong.code, 0)
  assert.match(wrong.stderr, /bad user name or password/i)
})
