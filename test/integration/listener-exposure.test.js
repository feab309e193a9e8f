// Every listener obeys the loopback rule of the MQTT port: none listens beyond this machine while anonymous clients are
// accepted by default (no identity configured, allowAnonymous not set) — the WebSocket listener and the HTTP port too.
import assert from 'node:assert/strict'
import test from 'node:test'
import mqtt from 'mqtt'
import { createGateway } from '../../dist/index.js'
import { hashSecret } from '../../dist/security/credentials.js'
import { websocketPlugin } from '../../dist/plugins/websocket/index.js'
import { defined, rejection, startGateway } from '../helpers.js'

const IDENTITIES = { alice: { hash: await hashSecret('alice-secret') } }

test('a WebSocket listener of its own beyond loopback: refused without identities, as the MQTT port is', async t => {
  const err = await rejection(createGateway({ port: 0, memory: true, plugins: { websocket: { port: 0, host: '0.0.0.0' } } }))
  assert.equal(err.code, 'FNBUS_CONFIG_INVALID')
  assert.match(err.message, /^plugin websocket: plugins\.websocket\.host 0\.0\.0\.0 is reachable beyond this machine, and no identity is configured: anyone who can reach it could connect to the bus anonymously/)
  assert.match(err.message, /allowAnonymous: true/)

  // with identities it listens, and an anonymous client there is refused by MQTT
  const plugin = websocketPlugin({ port: 0, host: '0.0.0.0' })
  await startGateway(t, { identities: IDENTITIES, plugins: [plugin] })
  const url = defined(plugin.listener).url.replace('0.0.0.0', '127.0.0.1')
  const refused = await mqtt.connectAsync(url, { reconnectPeriod: 0, clientId: 'anyone' }).then(() => null, e => e)
  assert.equal(refused?.code, 5, 'CONNACK 5: not authorized')
  const alice = await mqtt.connectAsync(url, { reconnectPeriod: 0, clientId: 'alice', username: 'alice', password: 'alice-secret' })
  await alice.endAsync()

  // open on purpose
  await startGateway(t, { allowAnonymous: true, plugins: [websocketPlugin({ port: 0, host: '0.0.0.0' })] })
  // loopback addresses are this machine only
  await startGateway(t, { plugins: [websocketPlugin({ port: 0, host: '127.0.0.2' })] })
})

test('the HTTP port beyond loopback: refused without identities, as the MQTT port is', async t => {
  const err = await rejection(createGateway({ port: 0, memory: true, http: { port: 0, host: '0.0.0.0' } }))
  assert.equal(err.code, 'FNBUS_CONFIG_INVALID')
  assert.match(err.message, /^http\.host 0\.0\.0\.0 is reachable beyond this machine, and no identity is configured/)
  await startGateway(t, { identities: IDENTITIES, http: { port: 0, host: '0.0.0.0' } })
  await startGateway(t, { allowAnonymous: true, http: { port: 0, host: '0.0.0.0' } })
  await startGateway(t, { http: { port: 0, host: '127.0.0.2' } })
})
