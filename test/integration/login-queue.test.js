// The secret checks of MQTT logins and HTTP Basic sign-ins share one queue, two at a time (scrypt shares libuv's
// thread pool with the store). A flood of logins from one address must not delay a login from another address,
// nor one that comes after the flood's sockets closed: the queue serves addresses in turn, bounds what one
// address has waiting (limits.maxPendingLoginsPerAddress), and drops the checks of connections already gone.
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { connect } from 'node:net'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { hashSecret } from '../../dist/security/credentials.js'
import { startGateway, waitFor } from '../helpers.js'
import { connectFrame } from '../mqtt-frames.js'

const FLOOD = 250

/** CONNECTs with unknown user names from 127.0.0.1, each on its own socket; `close`: each socket closed right after. */
async function flood (gw, { close }) {
  const sockets = []
  const answers = []
  await Promise.all(Array.from({ length: FLOOD }, (_, i) => new Promise(/** @param {(value?: unknown) => void} resolve */ resolve => {
    const socket = connect({ port: gw.port, host: '127.0.0.1' })
    socket.on('error', () => {})
    socket.on('data', chunk => answers.push(chunk[3]))
    socket.once('connect', () => {
      socket.write(connectFrame({ clientId: `flood-${i}`, username: `nobody-${i}`, password: 'guess' }))
      if (close) socket.destroy()
      resolve()
    })
    sockets.push(socket)
  })))
  return { sockets, answers }
}

let logins = 0

/** ms until an MQTT.js login from `localAddress` (one of this machine's 127/8) is accepted. */
async function login (gw, username, password, localAddress = '127.0.0.1') {
  const started = performance.now()
  // MQTT.js' own TCP transport does not bind a local address: give it the socket
  const client = new mqtt.MqttClient(() => connect({ port: gw.port, host: '127.0.0.1', localAddress }), {
    clientId: `${username}.${++logins}`, username, password, reconnectPeriod: 0, connectTimeout: 60_000, protocolVersion: 4, clean: true,
  })
  try {
    await new Promise((resolve, reject) => {
      client.once('connect', resolve)
      client.once('error', reject)
    })
    return performance.now() - started
  } finally {
    await client.endAsync(true)
  }
}

/** ms until an HTTP Basic sign-in from `localAddress` is answered, and its status. */
function signIn (gw, username, password, localAddress) {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const req = request(`${gw.httpUrl}/api/status`, { localAddress, headers: { authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` } }, res => {
      res.resume()
      res.once('end', () => resolve({ ms: performance.now() - started, status: res.statusCode }))
    })
    req.once('error', reject)
    req.end()
  })
}

async function gateway (t, options = {}) {
  // the default cost, as `fnbus identity add` writes hashes: one check is what a flood makes the queue pay
  const identities = { alice: { hash: await hashSecret('alice-secret') } }
  return await startGateway(t, { identities, http: { port: 0, host: '127.0.0.1', auth: 'basic' }, ...options })
}

test('a flood of logins sent and closed at once does not delay the next login: its checks are dropped', async t => {
  const gw = await gateway(t)
  const alone = await login(gw, 'alice', 'alice-secret')
  await flood(gw, { close: true })
  const after = await login(gw, 'alice', 'alice-secret')
  t.diagnostic(`login alone ${Math.round(alone)} ms; right after ${FLOOD} closed logins ${Math.round(after)} ms`)
  // the checks already running when the flood closed (two at most) and its own
  assert.ok(after < 4 * alone + 1000, `${Math.round(after)} ms after the flood, ${Math.round(alone)} ms alone`)
  await waitFor(() => gw.bus.authenticator.loginsWaiting === 0, 5000, 'nothing left waiting')
})

test('a flood from one address that stays connected delays neither an MQTT login nor an HTTP sign-in from another, and is bounded', async t => {
  const gw = await gateway(t)
  const bound = 32 // limits.maxPendingLoginsPerAddress, by default
  const alone = await login(gw, 'alice', 'alice-secret', '127.0.0.2')
  const { sockets, answers } = await flood(gw, { close: false })
  t.after(() => { for (const socket of sockets) socket.destroy() })
  const during = await login(gw, 'alice', 'alice-secret', '127.0.0.2')
  const http = await signIn(gw, 'alice', 'alice-secret', '127.0.0.3')
  t.diagnostic(`login alone ${Math.round(alone)} ms; during the flood, from another address: MQTT ${Math.round(during)} ms, HTTP Basic ${Math.round(http.ms)} ms`)
  assert.equal(http.status, 200)
  // a check running for the flood and one of its own, in turn with the flood's address
  assert.ok(during < 4 * alone + 1000, `MQTT ${Math.round(during)} ms during the flood, ${Math.round(alone)} ms alone`)
  assert.ok(http.ms < 4 * alone + 1000, `HTTP ${Math.round(http.ms)} ms during the flood, ${Math.round(alone)} ms alone`)
  // the flooding address has `bound` checks waiting at most; the rest were answered "server unavailable" at once
  assert.ok(gw.bus.authenticator.loginsWaiting <= bound, `${gw.bus.authenticator.loginsWaiting} waiting`)
  await waitFor(() => answers.filter(code => code === 3).length >= FLOOD / 2, 10_000, 'the excess refused at once')
  // the flood's own checks are all answered, as wrong secrets are
  await waitFor(() => answers.length === FLOOD, 60_000, 'every flooding login answered')
  assert.equal(answers.filter(code => code === 4).length + answers.filter(code => code === 3).length, FLOOD)
})
