// The cluster block made ready to join, alone: the environment fills in what the block leaves out, defaults, files
// read, and every mistake an FNBUS_CONFIG_INVALID naming `cluster`.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'node:test'
import { hasCredentials, resolveCluster } from '../../dist/cluster/cluster-config.js'
import { tempDir } from '../helpers.js'

const servers = ['nats://10.0.0.1:4222', 'nats://10.0.0.2:4222']

test('defaults: the host name, the fnbus prefix, replicas min(3, servers), a 1 s heartbeat, no credentials', () => {
  const resolved = resolveCluster({ servers }, {})
  assert.equal(resolved.prefix, 'fnbus')
  assert.equal(resolved.replicas, 2)
  assert.equal(resolved.heartbeatMs, 1000)
  assert.match(resolved.name, /^[A-Za-z0-9_-]{1,64}$/)
  assert.equal(hasCredentials(resolved), false)
  assert.equal(resolveCluster({ servers: [...servers, 'nats://c:1', 'nats://d:1'] }, {}).replicas, 3)
})

test('the environment fills in what the block leaves out; the block wins', () => {
  const env = {
    FNBUS_CLUSTER_SERVERS: 'nats://a:1, nats://b:2',
    FNBUS_CLUSTER_NAME: 'from-env',
    FNBUS_CLUSTER_USER: 'u',
    FNBUS_CLUSTER_PASSWORD: 'p',
    FNBUS_CLUSTER_PREFIX: 'site7',
  }
  const fromEnv = resolveCluster({}, env)
  assert.deepEqual(fromEnv.servers, ['nats://a:1', 'nats://b:2'])
  assert.equal(fromEnv.name, 'from-env')
  assert.equal(fromEnv.user, 'u')
  assert.equal(fromEnv.password, 'p')
  assert.equal(fromEnv.prefix, 'site7')
  assert.equal(hasCredentials(fromEnv), true)
  const block = resolveCluster({ servers, name: 'gw-a', user: 'x' }, env)
  assert.deepEqual(block.servers, servers)
  assert.equal(block.name, 'gw-a')
  assert.equal(block.user, 'x')
  // the password still comes from the environment
  assert.equal(block.password, 'p')
})

test('a credentials file and TLS files are read (relative to the base); PEM contents are taken as they are', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'gw.creds'), 'JWT AND SEED')
  await writeFile(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n')
  const resolved = resolveCluster({ servers, creds: 'gw.creds', tls: { ca: 'ca.pem', cert: '-----BEGIN CERTIFICATE-----c', key: '-----BEGIN PRIVATE KEY-----k' } }, {}, dir)
  assert.equal(resolved.creds?.toString(), 'JWT AND SEED')
  assert.match(resolved.tls?.ca ?? '', /BEGIN CERTIFICATE/)
  assert.equal(resolved.tls?.cert, '-----BEGIN CERTIFICATE-----c')
  assert.equal(hasCredentials(resolved), true)
})

test('mistakes are FNBUS_CONFIG_INVALID naming what is wrong', () => {
  /** @type {[object, RegExp][]} */
  const cases = [
    [{}, /give the NATS servers/],
    [{ servers: ['http://a:1'] }, /not a NATS url/],
    [{ servers, name: 'has space' }, /cluster.name/],
    [{ servers, prefix: 'a.b' }, /cluster.prefix/],
    [{ servers, token: 't', nkey: 'SU' }, /one way to log in/],
    [{ servers, password: 'p' }, /a password needs a user/],
    [{ servers, tls: { cert: '-----BEGIN CERTIFICATE-----' } }, /cert and key together/],
    [{ servers, creds: '/nonexistent/x.creds' }, /cannot read/],
  ]
  for (const [config, message] of cases) {
    assert.throws(() => resolveCluster(config, {}), (/** @type {any} */ err) => err.code === 'FNBUS_CONFIG_INVALID' && message.test(err.message), JSON.stringify(config))
  }
})
