// The bridge's credentials against real Mosquitto brokers: mutual TLS with certificates made here (AWS IoT Core's
// way), user name and password with the password from the environment (Alibaba's and EMQX's), a refusal and a client
// id taken elsewhere reported in the log, status and metrics, and retried.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { tempDir } from '../helpers.js'
import { freePort } from './cli.js'
import { bridgeStatus, client, gatewayWith, makeCertificates, mosquitto } from './mosquitto.js'

const OUT = [{ from: 'telemetry/#', to: 'sites/7/telemetry/#', qos: 1 }]

test('mutual TLS: the bridge presents its client certificate and checks the broker\'s', async t => {
  const dir = await tempDir(t)
  const certs = makeCertificates(dir)
  const remote = await mosquitto(t, await tempDir(t), { tls: { ca: certs.ca, cert: certs.serverCert, key: certs.serverKey } })
  // the cloud application connects with the same client certificate: the broker asks every client for one
  const cloud = await client(t, remote.url, { ca: readFileSync(certs.ca), cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) })
  await cloud.mqtt.subscribeAsync('sites/#', { qos: 1 })
  const gateway = await gatewayWith(t, dir, {
    memory: true,
    // paths relative to the configuration file
    bridges: [{ name: 'aws', url: remote.url, clientId: 'site-7-gw', tls: { ca: 'ca.crt', cert: 'client.crt', key: 'client.key' }, out: OUT }],
  })
  const local = await client(t, gateway.url)
  await local.mqtt.publishAsync('telemetry/a', 'over mTLS', { qos: 1 })
  assert.equal((await cloud.next(m => m.topic === 'sites/7/telemetry/a')).payload.toString(), 'over mTLS')
})

test('user name and password (from FNBUS_BRIDGE_<NAME>_PASSWORD); bad credentials reported and retried', async t => {
  const remote = await mosquitto(t, await tempDir(t), { users: { gw: 's3cret', app: 'app-pw' } })
  const cloud = await client(t, remote.url, { username: 'app', password: 'app-pw' })
  await cloud.mqtt.subscribeAsync('sites/#', { qos: 1 })
  const httpPort = await freePort()
  const gateway = await gatewayWith(t, await tempDir(t), {
    memory: true,
    http: { port: httpPort },
    plugins: { metrics: {} },
    bridges: [
      { name: 'cloud', url: remote.url, username: 'gw', out: OUT },
      { name: 'bad-creds', url: remote.url, username: 'gw', password: 'wrong', out: OUT, reconnect: { minDelayMs: 50, maxDelayMs: 200 } },
    ],
  }, { env: { FNBUS_BRIDGE_CLOUD_PASSWORD: 's3cret' } })
  const local = await client(t, gateway.url)
  await local.mqtt.publishAsync('telemetry/b', 'with a password', { qos: 1 })
  await cloud.next(m => m.topic === 'sites/7/telemetry/b')

  // refused, said so at error level, and tried again
  await gateway.waitFor(/(bridge bad-creds: the remote broker refused the connection: (bad user name or password|not authorized); retrying[^\n]*\n[^]*){2}/)
  const bad = (await bridgeStatus(httpPort)).find(bridge => bridge.name === 'bad-creds')
  assert.equal(bad?.connected, false)
  assert.match(bad?.lastFailure ?? '', /^refused_(bad_credentials|not_authorized)$/)
  assert.ok((bad?.failures ?? 0) >= 2)
  const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
  assert.match(metrics, /^fnbus_bridge_connected\{bridge="bad-creds"\} 0$/m)
  assert.match(metrics, /^fnbus_bridge_refused\{bridge="bad-creds"\} 1$/m)
  assert.match(metrics, /^fnbus_bridge_connected\{bridge="cloud"\} 1$/m)
  assert.match(metrics, /^fnbus_bridge_connection_failures_total\{bridge="bad-creds"\} ([2-9]|\d{2,})$/m)
})

test('a client id taken elsewhere: the connection that keeps dropping is reported and retried', async t => {
  const remote = await mosquitto(t, await tempDir(t))
  const reconnect = { minDelayMs: 20, maxDelayMs: 100 }
  const gateway = await gatewayWith(t, await tempDir(t), {
    memory: true,
    bridges: [
      { name: 'one', url: remote.url, clientId: 'same-id', out: OUT, reconnect },
      { name: 'two', url: remote.url, clientId: 'same-id', out: OUT, reconnect },
    ],
  }, { connected: 0 })
  await gateway.waitFor(/bridge (one|two): the connection dropped \d+ times in a row within 5000 ms of connecting \(is the client id in use elsewhere\?\); retrying/, { timeoutMs: 20_000 })
})
