// The TLS listener: a client that trusts the gateway's CA connects (option or FNBUS_CA), one that does not is
// refused by its own TLS stack, and plain MQTT on the TLS port gets nowhere. A certificate made by openssl here.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { FCClient } from '../../dist/index.js'
import { hashSecret } from '../../dist/security/credentials.js'
import { startGateway, tempDir, sdkOptions } from '../helpers.js'

/** A self-signed certificate for 127.0.0.1 and localhost, in `dir`. */
function makeCertificate (dir, name = 'gateway') {
  const cert = join(dir, `${name}.crt`)
  const key = join(dir, `${name}.key`)
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-keyout', key, '-out', cert, '-subj', '/CN=fnbus test gateway',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' })
  return { cert, key }
}

/** The first thing a raw connection reports: 'connect', or its error's message. */
function firstOutcome (t, url, options = {}) {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 3000, ...options })
  t.after(() => client.end(true))
  return new Promise(resolve => {
    client.once('connect', () => resolve('connect'))
    client.once('error', err => resolve(err.message))
    client.once('close', () => resolve('closed'))
  })
}

test('TLS: a client that trusts the CA connects and invokes; one that does not, or speaks plain MQTT, does not', async t => {
  const dir = await tempDir(t)
  const files = makeCertificate(dir)
  const gw = await startGateway(t, { tls: { cert: readFileSync(files.cert), key: readFileSync(files.key) } })
  assert.match(gw.url, /^mqtts:\/\/127\.0\.0\.1:\d+$/)
  await gw.serve('Local/echo', async (event) => event)

  const trusted = new FCClient(sdkOptions({ url: gw.url, ca: readFileSync(files.cert) }))
  t.after(() => trusted.close())
  assert.equal(await trusted.invoke('Local/echo', 'over TLS'), 'over TLS')

  assert.match(await firstOutcome(t, gw.url), /self-signed certificate/)
  const stranger = makeCertificate(dir, 'stranger')
  assert.match(await firstOutcome(t, gw.url, { ca: readFileSync(stranger.cert) }), /self-signed certificate|unable to verify/)
  assert.notEqual(await firstOutcome(t, gw.url.replace('mqtts:', 'mqtt:')), 'connect')

  // the gateway keeps serving after the failed handshakes
  assert.equal(await trusted.invoke('Local/echo', 'still here'), 'still here')
})

test('TLS: FNBUS_CA names the CA file for clients made without options, as supervised functions are', async t => {
  const dir = await tempDir(t)
  const files = makeCertificate(dir)
  const gw = await startGateway(t, {
    tls: { cert: readFileSync(files.cert), key: readFileSync(files.key) },
    identities: { alice: { hash: await hashSecret('alice-secret') } },
  })
  await gw.serve('Local/echo', async (event) => event)
  Object.assign(process.env, { FNBUS_URL: gw.url, FNBUS_CA: files.cert, FNBUS_USERNAME: 'alice', FNBUS_PASSWORD: 'alice-secret' })
  let client
  try {
    client = new FCClient(sdkOptions())
  } finally {
    for (const name of ['FNBUS_URL', 'FNBUS_CA', 'FNBUS_USERNAME', 'FNBUS_PASSWORD']) delete process.env[name]
  }
  t.after(() => client.close())
  assert.equal(await client.invoke('Local/echo', 'configured by the environment'), 'configured by the environment')

  process.env.FNBUS_CA = join(dir, 'missing.crt')
  try {
    assert.throws(() => new FCClient(sdkOptions({ url: gw.url })), { code: 'FNBUS_INVALID_ARGUMENT', message: /FNBUS_CA: cannot read .*missing\.crt/ })
  } finally {
    delete process.env.FNBUS_CA
  }
})
