// Refusals that say what to do: the first things a user of a secured gateway, or of an HTTP port without its
// plugins, trips on.
import assert from 'node:assert/strict'
import test from 'node:test'
import { tempDir } from '../helpers.js'
import { freePort, runCli, startCli } from './cli.js'

test('a CLI command refused by a gateway with identities says how to connect as one; --username with FNBUS_PASSWORD does', async t => {
  const dir = await tempDir(t)
  const added = await runCli(t, ['identity', 'add', 'alice'], { cwd: dir })
  const secret = added.stdout.trim()
  const gateway = await startCli(t, ['--memory'], { cwd: dir })
  const anonymous = await runCli(t, ['status'], { env: gateway.env })
  assert.equal(anonymous.code, 1)
  assert.match(anonymous.stderr, /^FNBUS_NOT_AUTHORIZED: .*set FNBUS_USERNAME and FNBUS_PASSWORD \(or --username NAME with FNBUS_PASSWORD\)/)
  const wrong = await runCli(t, ['status', '--username', 'alice'], { env: { ...gateway.env, FNBUS_PASSWORD: 'guess' } })
  assert.equal(wrong.code, 1)
  assert.match(wrong.stderr, /FNBUS_NOT_AUTHORIZED: .*[Bb]ad user ?name or password.*check the identity and its secret/)
  const alice = await runCli(t, ['status', '--username', 'alice'], { env: { ...gateway.env, FNBUS_PASSWORD: secret } })
  assert.equal(alice.code, 0, alice.stderr)
  assert.match(alice.stdout, /^gateway {2}mqtt:/)
})

test('an HTTP path of a plugin that is off names the plugin and how to enable it; --plugin enables it', async t => {
  const httpPort = await freePort()
  const bare = await startCli(t, ['--memory', '--http-port', String(httpPort)], { cwd: await tempDir(t) })
  const response = await fetch(`http://127.0.0.1:${httpPort}/metrics`)
  assert.equal(response.status, 404)
  assert.match(/** @type {{ message: string }} */ (await response.json()).message, /the metrics plugin's, which is not enabled \(add "plugins": \{ "metrics": \{\} \} to the configuration, or start with --plugin metrics\)/)
  bare.child.kill('SIGTERM')
  await bare.exited
  const withMetrics = await startCli(t, ['--memory', '--http-port', String(httpPort), '--plugin', 'metrics'], { cwd: await tempDir(t) })
  const metrics = await fetch(`http://127.0.0.1:${httpPort}/metrics`)
  assert.equal(metrics.status, 200)
  assert.match(await metrics.text(), /^fnbus_invocations_total|# HELP/m)
  withMetrics.child.kill('SIGTERM')
  await withMetrics.exited
  const unknown = await runCli(t, ['start', '--memory', '--plugin', 'grafana'], { cwd: await tempDir(t) })
  assert.equal(unknown.code, 2)
  assert.match(unknown.stderr, /--plugin "grafana": not a built-in plugin \(metrics, dashboard, routes, websocket\)/)
})

test('calls waiting when the gateway stops learn why (FNBUS_SHUTTING_DOWN), while the one running finishes', async t => {
  const dir = await tempDir(t)
  const { writeFile } = await import('node:fs/promises')
  const { join } = await import('node:path')
  const { FCClient } = await import('../../dist/index.js')
  await writeFile(join(dir, 'slow.cjs'), 'exports.handler = async event => { await new Promise(resolve => setTimeout(resolve, 1500)); return "done " + event }\n')
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ functions: [{ service: 'Site', function: 'slow', module: './slow.cjs', concurrency: 1 }] }))
  const gateway = await startCli(t, ['--memory'], { cwd: dir })
  const fc = new FCClient({ url: gateway.url, reconnectPeriod: 0 })
  t.after(() => fc.close())
  await fc.invoke('Site/slow', 'warm', { waitForWorker: 10_000 })
  const outcomes = ['a', 'b', 'c'].map(p => fc.invoke('Site/slow', p).then(value => value, err => err.code))
  await new Promise(resolve => setTimeout(resolve, 400))
  gateway.child.kill('SIGTERM')
  assert.deepEqual(await Promise.all(outcomes), ['done a', 'FNBUS_SHUTTING_DOWN', 'FNBUS_SHUTTING_DOWN'])
})

test('an Async invocation of a name nothing serves or declares: stored, said once in the log, listed by fnbus status', async t => {
  const dir = await tempDir(t)
  const { writeFile } = await import('node:fs/promises')
  const { join } = await import('node:path')
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ functions: [{ service: 'Site', function: 'declared' }] }))
  const gateway = await startCli(t, ['--memory'], { cwd: dir })
  for (const name of ['Site/tpyo', 'Site/tpyo', 'Site/declared']) {
    const stored = await runCli(t, ['invoke', name, '--async', '--payload', 'x'], { env: gateway.env })
    assert.equal(stored.code, 0, stored.stderr)
  }
  await gateway.waitFor('an Async invocation of Site/tpyo was stored, but no worker serves it and no configuration names it')
  assert.equal(gateway.stderr.split('an Async invocation of Site/tpyo was stored').length, 2, 'said once')
  assert.doesNotMatch(gateway.stderr, /invocation of Site\/declared was stored, but/)
  const status = await runCli(t, ['status'], { env: gateway.env })
  assert.match(status.stdout, /WAITING FOR A WORKER NOTHING PROVIDES[^\n]*\nSite\/tpyo {2}2 stored\n/)
  assert.doesNotMatch(status.stdout, /Site\/declared {2}\d+ stored/)
})
