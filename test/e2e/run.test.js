// `fnbus run MODULE`: a function module hosted as a worker process, driven through the SDK and the CLI.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { connectClient, rejection, startGateway, tempDir, waitFor } from '../helpers.js'
import { FIXTURES, freePort, ROOT, runCli, spawnCli, terminate } from './cli.js'

/** `fnbus run` of a fixture as `service/function`, resolved once it serves. */
async function runWorker (t, gw, module, name, extra = [], options = {}) {
  const [service, fn] = name.split('/')
  const worker = spawnCli(t, ['run', module, '--service', service, '--function', fn, ...extra], { env: { FNBUS_URL: gw.url }, ...options })
  await worker.waitFor(`serving ${name}`)
  return worker
}

test('hosts a CommonJS callback-style module and an ESM async one', async t => {
  const gw = await startGateway(t)
  await runWorker(t, gw, join(FIXTURES, 'callback.cjs'), 'Test/cjs')
  await runWorker(t, gw, join(FIXTURES, 'echo.mjs'), 'Test/esm')
  const client = await connectClient(t, gw)

  assert.equal(await client.invoke('Test/cjs', 'hi'), 'cjs got hi')
  assert.deepEqual(await client.invokeFunction({ serviceName: 'Test', functionName: 'cjs', payload: 'handled' }),
    { statusCode: 200, payload: 'bad input', functionError: 'Handled' })
  assert.deepEqual(await client.invoke('Test/esm', 'object'), { answer: 42, list: [1, 2] })
  assert.deepEqual(await client.invokeFunction({ serviceName: 'Test', functionName: 'esm', payload: 'throw' }),
    { statusCode: 200, payload: 'boom', functionError: 'Unhandled' })
  assert.deepEqual(await client.invoke('Test/esm', 'context', { context: { who: 'test' } }), { who: 'test' })
})

test('a hosted function calls another with new FCClient(): the runtime passes the address in FNBUS_URL', async t => {
  const gw = await startGateway(t)
  await gw.serve('Test/echo', event => `echo: ${event}`)
  // --url only: the module's own `new FCClient()` must still find this gateway
  const worker = spawnCli(t, ['run', join(FIXTURES, 'caller.cjs'), '--service', 'Test', '--function', 'caller', '--url', gw.url])
  await worker.waitFor('serving Test/caller')
  const result = await runCli(t, ['invoke', 'Test/caller', '--payload', 'hello'], { env: { FNBUS_URL: gw.url } })
  assert.equal(result.stdout, 'echo: hello via caller')
})

test('SIGTERM drains: the call in flight completes, new calls find no worker, exit 0', async t => {
  const gw = await startGateway(t)
  const worker = await runWorker(t, gw, join(FIXTURES, 'slow.cjs'), 'Test/slow')
  const client = await connectClient(t, gw)

  const inFlight = client.invoke('Test/slow', '700')
  await waitFor(() => gw.stats().inFlight === 1, 5000, 'the call to reach the worker')
  const exit = terminate(worker)
  assert.equal(await inFlight, 'slept 700')
  assert.deepEqual(await exit, { code: 0, signal: null })
  assert.match(worker.stderr, /draining Test\/slow/)
  const err = await rejection(client.invoke('Test/slow', '1'))
  assert.equal(err.code, 'FNBUS_FUNCTION_NOT_FOUND')
})

test('a module without a handler, or one that fails to load, exits 1 naming the file and the problem', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'no-handler.cjs'), 'module.exports.handle = function () {}\n')
  await writeFile(join(dir, 'broken.cjs'), "throw new Error('cannot start: missing setting')\n")
  await writeFile(join(dir, 'syntax.mjs'), 'export const handler = (\n')
  const args = ['--service', 'Test', '--function', 'f', '--url', 'mqtt://127.0.0.1:1']

  const noHandler = await runCli(t, ['run', 'no-handler.cjs', ...args], { cwd: dir })
  assert.equal(noHandler.code, 1)
  assert.equal(noHandler.stderr, `FNBUS_INVALID_ARGUMENT: ${join(dir, 'no-handler.cjs')} does not export a "handler" function (its exports: handle)\n`)

  const broken = await runCli(t, ['run', 'broken.cjs', ...args], { cwd: dir })
  assert.equal(broken.code, 1)
  assert.match(broken.stderr, new RegExp(`^FNBUS_INVALID_ARGUMENT: cannot load ${join(dir, 'broken.cjs')}: cannot start: missing setting`))

  const syntax = await runCli(t, ['run', 'syntax.mjs', ...args], { cwd: dir })
  assert.equal(syntax.code, 1)
  assert.match(syntax.stderr, /cannot load .*syntax\.mjs: syntax error: /)

  const missing = await runCli(t, ['run', 'nowhere.js', ...args], { cwd: dir })
  assert.equal(missing.code, 1)
  assert.match(missing.stderr, /cannot load .*nowhere\.js: no such file/)
})

test('run without --service or --function is a usage error (exit 2)', async t => {
  const result = await runCli(t, ['run', join(FIXTURES, 'echo.mjs'), '--function', 'f'])
  assert.equal(result.code, 2)
  assert.match(result.stderr, /^fnbus run: --service is required\n/)
})

test('a worker started before its gateway waits for it, then serves', async t => {
  const port = await freePort()
  const url = `mqtt://127.0.0.1:${port}`
  const worker = spawnCli(t, ['run', join(FIXTURES, 'echo.mjs'), '--service', 'Test', '--function', 'early'], { env: { FNBUS_URL: url } })
  await worker.waitFor('cannot reach the gateway')
  const gw = await startGateway(t, { port })
  await worker.waitFor('serving Test/early')
  assert.equal(await gw.invoke('Test/early', 'ping'), 'ping')
})

test('regression: a worker killed while draining fails its calls at once with FNBUS_WORKER_LOST, not at their deadline', async t => {
  const gw = await startGateway(t)
  const worker = await runWorker(t, gw, join(FIXTURES, 'slow.cjs'), 'Test/stuck')
  const client = await connectClient(t, gw)
  const stuck = rejection(client.invoke('Test/stuck', 'never', { timeout: 20_000 }))
  await waitFor(() => gw.stats().inFlight === 1, 5000, 'the call to reach the worker')
  worker.child.kill('SIGTERM') // drains: unregisters, then waits for the handler that never answers
  await worker.waitFor('draining Test/stuck')
  await waitFor(() => gw.stats().functions.every(f => f.workers.length === 0), 5000, 'the worker to unregister')
  const started = Date.now()
  worker.child.kill('SIGKILL')
  // WORKER_LOST, not the call's 20 s FNBUS_TIMEOUT: the kill was noticed
  assert.equal((await stuck).code, 'FNBUS_WORKER_LOST')
  assert.ok(Date.now() - started < 15_000)
})

test('regression: a supervisor gone while the module loads ends the process (its disconnect came before the listener)', async t => {
  const gw = await startGateway(t)
  const dir = await tempDir(t)
  // an ES module that takes a while to load: import() yields to the event loop, where the disconnect arrives
  const module = join(dir, 'slow.mjs')
  await writeFile(module, 'await new Promise(resolve => setTimeout(resolve, 300))\nexport const handler = async event => event\n')
  const child = spawn(process.execPath, [join(ROOT, 'bin/fnbus.js'), 'run', module, '--service', 'Orphan', '--function', 'slow', '--url', gw.url], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] })
  const exited = new Promise(resolve => child.once('exit', code => resolve(code)))
  t.after(() => { child.kill('SIGKILL') })
  setTimeout(() => child.disconnect(), 50)
  const code = await Promise.race([exited, new Promise(resolve => setTimeout(() => resolve('still running after 5 s'), 5000))])
  assert.equal(code, 0)
})
