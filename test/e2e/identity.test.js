// Identities as an operator uses them: `fnbus identity` writes hashed credentials, `fnbus start` enforces them,
// supervised functions connect with the secret the gateway generates for them, and TLS with --ca.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import mqtt from 'mqtt'
import { join } from 'node:path'
import { test } from 'node:test'
import { tempDir } from '../helpers.js'
import { FIXTURES, runCli, startCli } from './cli.js'

async function supervisingConfig (dir, extra = {}) {
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
    memory: true,
    functions: [
      { service: 'Test', function: 'echo', module: join(FIXTURES, 'echo.mjs') },
      // calls Test/echo with `new FCClient()`: the credentials come from its environment
      { service: 'Test', function: 'caller', module: join(FIXTURES, 'caller.cjs') },
    ],
    ...extra,
  }))
}

test('fnbus identity add|ls|rm: a generated secret printed once, only its hash stored', async t => {
  const dir = await tempDir(t)
  const added = await runCli(t, ['identity', 'add', 'alice'], { cwd: dir })
  assert.equal(added.code, 0, added.stderr)
  const secret = added.stdout.trim()
  assert.match(secret, /^[A-Za-z0-9_-]{43}$/)
  assert.match(added.stderr, /identity alice added to .*fnbus\.identities\.json; its clients may use any free client id; "alice" and "alice\.SUFFIX" are reserved for it/)
  const text = await readFile(join(dir, 'fnbus.identities.json'), 'utf8')
  assert.ok(!text.includes(secret), 'the secret is not in the file')
  assert.match(JSON.parse(text).identities.alice.hash, /^\$scrypt\$/)

  const again = await runCli(t, ['identity', 'add', 'alice'], { cwd: dir })
  assert.equal(again.code, 1)
  assert.match(again.stderr, /^FNBUS_INVALID_ARGUMENT: .* has an identity alice already; --force gives it a new secret/)

  const piped = await runCli(t, ['identity', 'add', 'Plant/reader', '--password-stdin'], { cwd: dir, input: 'chosen secret\n' })
  assert.equal(piped.code, 0, piped.stderr)
  assert.equal(piped.stdout, '', 'a secret the operator chose is not echoed')

  const listed = await runCli(t, ['identity', 'ls', '--json'], { cwd: dir })
  assert.deepEqual(JSON.parse(listed.stdout).map(row => row.name), ['Plant/reader', 'alice'])

  assert.equal((await runCli(t, ['identity', 'rm', 'Plant/reader'], { cwd: dir })).code, 0)
  const missing = await runCli(t, ['identity', 'rm', 'Plant/reader'], { cwd: dir })
  assert.equal(missing.code, 1)
  assert.match(missing.stderr, /^FNBUS_INVALID_ARGUMENT: .* has no identity Plant\/reader/)
  const badName = await runCli(t, ['identity', 'add', 'no.dots'], { cwd: dir })
  assert.equal(badName.code, 2)
})

test('fnbus start with identities: supervised functions connect with generated secrets and invoke; callers need credentials', async t => {
  const dir = await tempDir(t)
  await supervisingConfig(dir)
  const alice = (await runCli(t, ['identity', 'add', 'alice'], { cwd: dir })).stdout.trim()
  const gateway = await startCli(t, [], { cwd: dir })
  await gateway.waitFor(/1 identity from .*fnbus\.identities\.json; anonymous clients refused/)
  await gateway.waitFor('"msg":"serving Test/echo')
  await gateway.waitFor('"msg":"serving Test/caller')

  // caller.cjs makes its own FCClient at the first call: it is accepted only with the credentials it inherited
  const asAlice = { ...gateway.env, FNBUS_USERNAME: 'alice', FNBUS_PASSWORD: alice }
  const called = await runCli(t, ['invoke', 'Test/caller', '--payload', 'hi'], { env: asAlice })
  assert.equal(called.code, 0, called.stderr)
  assert.equal(called.stdout, 'hi via caller')

  const anonymous = await runCli(t, ['invoke', 'Test/echo', '--payload', 'hi'], { env: gateway.env })
  assert.equal(anonymous.code, 1)
  assert.match(anonymous.stderr, /^FNBUS_NOT_AUTHORIZED: the gateway at .* refused the connection: Not authorized/)
  const wrong = await runCli(t, ['invoke', 'Test/echo', '--payload', 'hi'], { env: { ...asAlice, FNBUS_PASSWORD: 'guess' } })
  assert.equal(wrong.code, 1)
  assert.match(wrong.stderr, /^FNBUS_NOT_AUTHORIZED: .*Bad username or password/)

  // an identity added while the gateway runs works at once
  const carol = (await runCli(t, ['identity', 'add', 'carol'], { cwd: dir })).stdout.trim()
  const asCarol = await runCli(t, ['invoke', 'Test/echo', '--payload', 'from carol'], { env: { ...gateway.env, FNBUS_USERNAME: 'carol', FNBUS_PASSWORD: carol } })
  assert.equal(asCarol.stdout, 'from carol', asCarol.stderr)
})

test('fnbus start refuses to listen beyond loopback with no identity, unless --allow-anonymous', async t => {
  const dir = await tempDir(t)
  const refused = await runCli(t, ['start', '--host', '0.0.0.0', '--port', '0', '--memory'], { cwd: dir })
  assert.equal(refused.code, 2)
  assert.match(refused.stderr, /^FNBUS_CONFIG_INVALID: host 0\.0\.0\.0 is reachable beyond this machine, and no identity is configured/m)

  const open = await startCli(t, ['--host', '0.0.0.0', '--memory', '--allow-anonymous'], { cwd: dir })
  await open.waitFor(/anonymous clients accepted/)
  await open.waitFor(/listening beyond loopback without TLS/)
})

test('fnbus start with tls: supervised functions trust the certificate through FNBUS_CA; fnbus invoke needs --ca', async t => {
  const dir = await tempDir(t)
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-keyout', join(dir, 'gateway.key'), '-out', join(dir, 'gateway.crt'), '-subj', '/CN=fnbus',
    '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' })
  await supervisingConfig(dir, { tls: { cert: './gateway.crt', key: './gateway.key' } })
  const gateway = await startCli(t, [], { cwd: dir })
  assert.match(gateway.url, /^mqtts:\/\/127\.0\.0\.1:/)
  await gateway.waitFor('"msg":"serving Test/caller')

  const called = await runCli(t, ['invoke', 'Test/caller', '--payload', 'hi', '--ca', join(dir, 'gateway.crt')], { env: gateway.env })
  assert.equal(called.code, 0, called.stderr)
  assert.equal(called.stdout, 'hi via caller')
  const untrusted = await runCli(t, ['invoke', 'Test/caller', '--payload', 'hi'], { env: gateway.env })
  assert.equal(untrusted.code, 1)
  assert.match(untrusted.stderr, /^FNBUS_DISCONNECTED: cannot connect to the gateway .*self-signed certificate/)
})

test('each supervised process has its own secret, revoked when it exits', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
    memory: true,
    functions: [{ service: 'Test', function: 'crashy', module: join(FIXTURES, 'callback.cjs') }],
  }))
  const gateway = await startCli(t, [], { cwd: dir })
  await gateway.waitFor('"msg":"serving Test/crashy')
  // the secret as the process got it: its environment, readable by the same user
  const secretOf = async pid => (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0').find(v => v.startsWith('FNBUS_PASSWORD='))?.slice('FNBUS_PASSWORD='.length)
  const connack = (password, clientId) => new Promise(resolve => {
    const client = mqtt.connect(gateway.url, { reconnectPeriod: 0, clientId, username: 'Test/crashy', password })
    client.once('connect', () => { client.end(true); resolve(0) })
    client.once('error', err => { client.end(true); resolve(/** @type {{ code?: number }} */ (err).code) })
  })
  const firstPid = (await runCli(t, ['invoke', 'Test/crashy', '--payload', 'pid'], { env: gateway.env })).stdout
  const firstSecret = await secretOf(firstPid)
  assert.match(String(firstSecret), /^[A-Za-z0-9_-]{43}$/)
  assert.equal(await connack(firstSecret, 'Test:crashy.probe1'), 0)

  await runCli(t, ['invoke', 'Test/crashy', '--payload', 'crash'], { env: gateway.env })
  await gateway.waitFor('Test/crashy#1 exited with code 1; restarting in 500 ms')
  const secondPid = (await runCli(t, ['invoke', 'Test/crashy', '--payload', 'pid', '--wait-for-worker', '5000'], { env: gateway.env })).stdout
  assert.notEqual(secondPid, firstPid)
  const secondSecret = await secretOf(secondPid)
  assert.notEqual(secondSecret, firstSecret)
  assert.equal(await connack(firstSecret, 'Test:crashy.probe2'), 4, 'the dead process\' secret is revoked')
  assert.equal(await connack(secondSecret, 'Test:crashy.probe3'), 0)
})
