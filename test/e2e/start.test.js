// `fnbus start`: the gateway as an operator starts it, with flags and fnbus.config.json.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { lstat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { test } from 'node:test'
import { FCClient } from '../../dist/index.js'
import { portOf, tempDir } from '../helpers.js'
import { freePort, runCli, startCli, terminate } from './cli.js'

test('prints the broker address on stdout, serves clients, and exits 0 on SIGTERM', async t => {
  const dir = await tempDir(t)
  const gateway = await startCli(t, ['--memory'], { cwd: dir })
  assert.equal(gateway.url, `mqtt://127.0.0.1:${gateway.port}`)
  assert.equal(gateway.stdout, `fnbus gateway listening on ${gateway.url}\n`)

  const client = new FCClient({ url: gateway.url })
  t.after(() => client.close())
  await client.serve('Test/hello', () => 'hello')
  assert.equal(await client.invoke('Test/hello'), 'hello')

  assert.deepEqual(await terminate(gateway), { code: 0, signal: null })
  assert.match(gateway.stderr, /SIGTERM received/)
})

test('--socket: the gateway listens on a Unix socket too, its supervised functions connect through it, and it is removed at the stop', async t => {
  const dir = await tempDir(t)
  // a function that answers with the address the runtime gave it
  await writeFile(join(dir, 'where.cjs'), 'exports.handler = async () => process.env.FNBUS_URL\n')
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ memory: true, functions: [{ service: 'Test', function: 'where', module: './where.cjs' }] }))
  const gateway = await startCli(t, ['--socket', 'gw.sock'], { cwd: dir })
  const socketUrl = `mqtt+unix://${join(dir, 'gw.sock')}`
  await gateway.waitFor(`fnbus gateway listening on ${socketUrl}\n`, { stream: 'stdout' })
  await gateway.waitFor('serving Test/where')

  const called = await runCli(t, ['invoke', 'Test/where', '--url', socketUrl])
  assert.equal(called.code, 0, called.stderr)
  assert.equal(called.stdout, socketUrl)

  assert.deepEqual(await terminate(gateway), { code: 0, signal: null })
  await assert.rejects(lstat(join(dir, 'gw.sock')), { code: 'ENOENT' })
})

test('Ctrl-C (SIGINT) closes gracefully too', async t => {
  const gateway = await startCli(t, ['--memory'], { cwd: await tempDir(t) })
  assert.deepEqual(await terminate(gateway, 'SIGINT'), { code: 0, signal: null })
})

test('refuses clearly when the port is taken: exit 1, FNBUS_ADDRESS_IN_USE on stderr', async t => {
  const squatter = createServer()
  squatter.listen(0, '127.0.0.1')
  await once(squatter, 'listening')
  t.after(() => squatter.close())
  const port = portOf(squatter)
  const result = await runCli(t, ['start', '--port', String(port), '--memory'], { cwd: await tempDir(t) })
  assert.equal(result.code, 1)
  assert.equal(result.stdout, '')
  assert.match(result.stderr, new RegExp(`FNBUS_ADDRESS_IN_USE: 127\\.0\\.0\\.1:${port} is already in use`))
})

test('refuses clearly when another gateway holds the data directory, and leaves that one running', async t => {
  const dir = await tempDir(t)
  const first = await startCli(t, ['--data', 'state'], { cwd: dir })
  const second = await runCli(t, ['start', '--port', String(await freePort()), '--data', 'state'], { cwd: dir })
  assert.equal(second.code, 1)
  assert.match(second.stderr, new RegExp(`FNBUS_DATA_DIR_LOCKED: data directory ${join(dir, 'state')} is in use`))

  const client = new FCClient({ url: first.url })
  t.after(() => client.close())
  await client.ready()
  assert.deepEqual(await terminate(first), { code: 0, signal: null })
})

test('reads fnbus.config.json from the working directory; flags win over it', async t => {
  const dir = await tempDir(t)
  const filePort = await freePort()
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ port: filePort, memory: true, limits: { defaultTimeoutMs: 5000 } }))
  const fromFile = await startCli(t, [], { cwd: dir })
  // startCli passes --port: the flag won; the file's memory: true still applies
  assert.notEqual(fromFile.port, filePort)
  assert.match(fromFile.stderr, /configuration from .*fnbus\.config\.json/)
  assert.match(fromFile.stderr, /state kept in memory only/)
  await terminate(fromFile)
})

test('--config names another file; paths in it are relative to it', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'gw.json'), JSON.stringify({ dataDir: './gw-data' }))
  const gateway = await startCli(t, ['--config', join(dir, 'gw.json')], { cwd: await tempDir(t) })
  assert.match(gateway.stderr, new RegExp(`data directory ${join(dir, 'gw-data')}`))
  await terminate(gateway)
})

test('a bad configuration exits 2 with an error naming the file and the key', async t => {
  const dir = await tempDir(t)
  const file = join(dir, 'fnbus.config.json')
  const cases = [
    [{ prot: 1883 }, 'unknown key "prot"'],
    [{ limits: { maxPayload: 10 } }, 'limits: unknown key "maxPayload" (known: maxPayloadBytes, maxFrameBytes, '],
    [{ functions: [{ service: 'EdgeFC', function: 'helloworld', modul: './x.js' }] }, 'functions[0]: unknown key "modul"'],
    [{ functions: [{ service: 'EdgeFC', function: 'helloworld', instances: 0 }] }, 'functions[0].instances must be an integer between 1 and 1024, got 0'],
  ]
  for (const [config, message] of cases) {
    await writeFile(file, JSON.stringify(config))
    const result = await runCli(t, ['start', '--port', '0', '--memory'], { cwd: dir })
    assert.equal(result.code, 2, result.stderr)
    assert.ok(result.stderr.startsWith(`FNBUS_CONFIG_INVALID: ${file}: ${message}`), result.stderr)
  }
  const missing = await runCli(t, ['start', '--config', 'nope.json'], { cwd: dir })
  assert.equal(missing.code, 2)
  assert.match(missing.stderr, /nope\.json: cannot read the configuration file/)
})
