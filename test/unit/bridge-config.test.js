// A bridge's configuration (src/bridge/bridge-config.ts, the schema's `bridges`): secrets from the environment, TLS
// files, defaults, and the mistakes refused with the entry named.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { envPrefix, publicUrl, resolveBridges } from '../../dist/bridge/bridge-config.js'
import { parseConfig } from '../../dist/config.js'
import { checkGatewayOptions } from '../../dist/config/check.js'
import { tempDir } from '../helpers.js'

const OUT = [{ from: 'a/#', to: 'b/#' }]

test('defaults; the environment fills in what the entry leaves out, and the entry wins', () => {
  const [bridge] = resolveBridges([{ name: 'cloud-1', url: 'mqtts://broker:8883', out: OUT, username: 'from-config' }], {
    FNBUS_BRIDGE_CLOUD_1_PASSWORD: 's3cret', FNBUS_BRIDGE_CLOUD_1_USERNAME: 'from-env', FNBUS_BRIDGE_CLOUD_1_CLIENT_ID: 'site-7',
  })
  assert.equal(envPrefix('cloud-1'), 'FNBUS_BRIDGE_CLOUD_1_')
  assert.equal(bridge?.password, 's3cret')
  assert.equal(bridge?.username, 'from-config')
  assert.equal(bridge?.clientId, 'site-7')
  assert.deepEqual(bridge?.queue, { maxMessages: 100_000, maxBytes: 104_857_600, maxAgeMs: 604_800_000 })
  assert.equal(bridge?.minDelayMs, 500)
  assert.equal(bridge?.maxDelayMs, 10_000)
  assert.equal(bridge?.keepaliveSec, 60)
  assert.equal(bridge?.tls, undefined)
  const [plain] = resolveBridges([{ name: 'x', url: 'ws://h', in: OUT, queue: { maxMessages: 5 } }], { FNBUS_BRIDGE_X_URL: 'mqtt://ignored' })
  assert.equal(plain?.clientId, 'fnbus-bridge-x')
  assert.equal(plain?.url, 'ws://h')
  assert.equal(plain?.queue.maxMessages, 5)
  // the url too may come from the environment
  const [fromEnv] = resolveBridges([{ name: 'y', out: OUT }], { FNBUS_BRIDGE_Y_URL: 'mqtt://env:1883' })
  assert.equal(fromEnv?.url, 'mqtt://env:1883')
})

test('TLS: PEM files (relative to the base) or PEM contents', async t => {
  const dir = await tempDir(t)
  const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
  await writeFile(join(dir, 'ca.pem'), pem)
  const [bridge] = resolveBridges([{ name: 'aws', url: 'mqtts://h', out: OUT, tls: { ca: 'ca.pem', cert: pem, key: pem, rejectUnauthorized: false } }], {}, dir)
  assert.equal(bridge?.tls?.ca?.toString(), pem)
  assert.equal(bridge?.tls?.cert?.toString(), pem)
  assert.equal(bridge?.tls?.rejectUnauthorized, false)
  assert.throws(() => resolveBridges([{ name: 'aws', url: 'mqtts://h', out: OUT, tls: { ca: 'missing.pem' } }], {}, dir), /bridges\[0\]\.tls\.ca: cannot read missing\.pem/)
  assert.throws(() => resolveBridges([{ name: 'aws', url: 'mqtts://h', out: OUT, tls: { cert: pem } }], {}, dir), /bridges\[0\]\.tls: a client certificate needs both "cert" and "key"/)
})

test('mistakes are refused with the entry named', () => {
  const refused = (bridges, pattern) => assert.throws(() => resolveBridges(bridges, {}), (/** @type {import('../helpers.js').Thrown} */ err) => err.code === 'FNBUS_CONFIG_INVALID' && pattern.test(err.message))
  refused([{ name: 'a', url: 'mqtt://h', out: OUT }, { name: 'a', url: 'mqtt://h', out: OUT }], /bridges\[1\]: the bridge name a is used twice/)
  refused([{ name: 'a', out: OUT }], /bridges\[0\]: give the remote broker's url as "url" or in FNBUS_BRIDGE_A_URL/)
  refused([{ name: 'a', url: 'mqtt://h' }], /bridges\[0\]: a bridge needs an "out" or an "in" rule/)
  refused([{ name: 'a', url: 'http://h', out: OUT }], /bridges\[0\]\.url must be an mqtt:\/\//)
  refused([{ name: 'a', url: 'mqtt://h', out: OUT, reconnect: { minDelayMs: 5000, maxDelayMs: 100 } }], /bridges\[0\]\.reconnect: minDelayMs \(5000\) is above maxDelayMs \(100\)/)
  refused([{ name: 'a', url: 'mqtt://h', in: [{ from: 'a/#', to: 'b' }] }], /bridges\[0\]\.in\[0\]: "from" and "to" must have the same wildcards/)
})

test('the url in status and logs carries no credentials', () => {
  assert.equal(publicUrl('mqtts://user:pw@broker.example.com:8883'), 'mqtts://broker.example.com:8883')
  assert.equal(publicUrl('mqtt://h:1883'), 'mqtt://h:1883')
  assert.equal(publicUrl('not a url://u:p@h'), 'not a url://h')
})

test('the configuration file: bridges checked by the schema, TLS paths made absolute', () => {
  const config = parseConfig({ bridges: [{ name: 'aws', url: 'mqtts://h:8883', tls: { ca: 'certs/ca.pem', cert: 'gw.crt', key: '/abs/gw.key' }, out: OUT }] }, '/srv/fnbus/fnbus.config.json')
  assert.deepEqual(config.bridges?.[0]?.tls, { ca: '/srv/fnbus/certs/ca.pem', cert: '/srv/fnbus/gw.crt', key: '/abs/gw.key' })
  assert.equal(parseConfig({ bridges: [{ name: 'b', url: 'mqtt://h', in: OUT }] }, '/f.json').bridges?.[0]?.tls, undefined)
  assert.throws(() => parseConfig({ bridges: [{ name: 'aws', url: 'mqtt://h', out: OUT, bogus: 1 }] }, '/f.json'), /bridges\[0\].*bogus/)
  assert.throws(() => parseConfig({ bridges: [{ name: '$bad', url: 'mqtt://h' }] }, '/f.json'), /bridges\[0\]\.name/)
  assert.throws(() => parseConfig({ bridges: [{ name: 'b', url: 'mqtt://h', out: [{ from: 'a', to: 'b', qos: 2 }] }] }, '/f.json'), /bridges\[0\]\.out\[0\]\.qos/)
  assert.throws(() => parseConfig({ bridges: [{ name: 'b', url: 'mqtt://h', queue: { maxMessages: 0 } }] }, '/f.json'), /bridges\[0\]\.queue\.maxMessages/)
  checkGatewayOptions({ bridges: [{ name: 'b', url: 'mqtt://h', out: OUT }] })
  assert.throws(() => checkGatewayOptions({ bridges: [{ url: 'mqtt://h' }] }), /bridges\[0\]/)
})
