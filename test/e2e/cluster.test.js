// Gateways as users run them (`fnbus start --cluster`, processes) on a 3-node NATS cluster of the test's own
// (test/e2e/nats-cluster.js): a call from a client of one gateway runs in a function another supervises; a gateway
// SIGKILLed mid-call fails that call FNBUS_WORKER_LOST and serves again once restarted; a NATS node lost is failed
// over; a gateway that loses every NATS node keeps serving its own clients, reports itself unhealthy for the
// cluster in /healthz, `fnbus status` and /api/status, and rejoins by itself.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { FCClient } from '../../dist/index.js'
import { defined, rejection, tempDir, waitFor } from '../helpers.js'
import { FIXTURES, freePort, runCli, startCli } from './cli.js'
import { natsCluster } from './nats-cluster.js'

/** `fnbus start` in `dir` with `config` (the cluster's servers and credentials added), its HTTP port on a free one. */
async function gateway (t, dir, nats, name, config = {}) {
  const httpPort = await freePort()
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ memory: true, ...config, cluster: { servers: nats.servers, name, heartbeatMs: 200 } }))
  // the credentials come from the environment, as docs/cluster.md advises
  const env = { FNBUS_CLUSTER_USER: nats.credentials.user, FNBUS_CLUSTER_PASSWORD: nats.credentials.password }
  const gw = await startCli(t, ['--http-port', String(httpPort)], { cwd: dir, env })
  await gw.waitFor('cluster: connected to NATS')
  return Object.assign(gw, { httpUrl: `http://127.0.0.1:${httpPort}`, dir, start: () => gateway(t, dir, nats, name, config) })
}

/** @param {{ url: string }} gw */
function client (t, gw) {
  const c = new FCClient({ url: gw.url })
  t.after(() => c.close())
  return c
}

test('processes: a call crosses gateways; a gateway killed mid-call loses that call (FNBUS_WORKER_LOST) and serves again after a restart', async t => {
  const nats = await natsCluster(t, await tempDir(t), { nodes: 3 })
  const a = await gateway(t, await tempDir(t), nats, 'a', {
    functions: [{ service: 'Local', function: 'echo', module: join(FIXTURES, 'echo.mjs'), isolation: 'thread' }],
  })
  let b = await gateway(t, await tempDir(t), nats, 'b', {
    functions: [{ service: 'Test', function: 'slow', module: join(FIXTURES, 'slow.cjs'), isolation: 'thread' }],
  })
  await b.waitFor('"msg":"serving Test/slow')
  const caller = client(t, a)
  const invoke = (/** @type {string} */ payload, options = {}) => caller.invoke('Test/slow', payload, { waitForWorker: 5000, ...options })
  assert.equal(await invoke('10'), 'slept 10')

  const status = await runCli(t, ['status'], { env: a.env })
  assert.match(status.stdout, /cluster {2}a {2}connected to \S+ {2}1 other gateway/)
  assert.match(status.stdout, /b +Test\/slow +1 +1 +0/)

  // b dies with the call running: a's client hears FNBUS_WORKER_LOST within a few heartbeats, not at the deadline
  const running = rejection(invoke('20000', { timeout: 30_000 }))
  await new Promise(resolve => setTimeout(resolve, 300))
  const killedAt = Date.now()
  b.child.kill('SIGKILL')
  const lost = await running
  assert.equal(lost.code, 'FNBUS_WORKER_LOST')
  assert.ok(Date.now() - killedAt < 3000, `lost after ${Date.now() - killedAt} ms`)
  assert.equal((await rejection(invoke('10', { waitForWorker: 0 }))).code, 'FNBUS_FUNCTION_NOT_FOUND')

  b = await b.start()
  await b.waitFor('"msg":"serving Test/slow')
  assert.equal(await invoke('10'), 'slept 10')
})

test('processes: a NATS node lost is failed over; all lost, a gateway serves its own clients, says it is unhealthy for the cluster, and rejoins', async t => {
  const nats = await natsCluster(t, await tempDir(t), { nodes: 3 })
  const a = await gateway(t, await tempDir(t), nats, 'a', {
    functions: [{ service: 'Local', function: 'echo', module: join(FIXTURES, 'echo.mjs'), isolation: 'thread' }],
  })
  const b = await gateway(t, await tempDir(t), nats, 'b', {
    functions: [{ service: 'Test', function: 'slow', module: join(FIXTURES, 'slow.cjs'), isolation: 'thread' }],
  })
  await a.waitFor('"msg":"serving Local/echo')
  await b.waitFor('"msg":"serving Test/slow')
  const caller = client(t, a)
  const remote = () => caller.invoke('Test/slow', '1', { waitForWorker: 10_000 })
  const local = () => caller.invoke('Local/echo', 'here')
  assert.equal(await remote(), 'slept 1')

  // the node a is connected to goes: it moves to another, and calls cross again
  const status = async () => /** @type {any} */ (await (await fetch(`${a.httpUrl}/api/status`)).json())
  const server = defined((await status()).cluster.server)
  const node = defined(nats.nodes.find(n => server.endsWith(`:${n.port}`)), `the node a uses (${server})`)
  await node.kill()
  await waitFor(async () => {
    const { cluster } = await status()
    return cluster.state === 'connected' && !cluster.server.endsWith(`:${node.port}`)
  }, 15_000, 'a to fail over')
  assert.equal(await remote(), 'slept 1')

  // every node gone: local calls go on, the cluster is reported down
  await Promise.all(nats.nodes.map(n => n.kill()))
  await waitFor(async () => (await status()).cluster.state !== 'connected', 15_000, 'a to notice')
  assert.equal(await local(), 'here')
  const health = await fetch(`${a.httpUrl}/healthz`)
  assert.equal(health.status, 503)
  assert.deepEqual(await health.json(), { ready: false, broker: true, store: true, functions: true, cluster: false })
  const cli = await runCli(t, ['status'], { env: a.env })
  assert.equal(cli.code, 1)
  assert.match(cli.stdout, /NOT READY \(cluster down\)/)
  assert.equal((await rejection(caller.invoke('Test/slow', '1'))).code, 'FNBUS_FUNCTION_NOT_FOUND')

  // back: a rejoins by itself, and b's function is reachable again
  await Promise.all(nats.nodes.map(n => n.start()))
  await waitFor(async () => (await fetch(`${a.httpUrl}/healthz`)).status === 200, 20_000, 'a to rejoin')
  assert.equal(await remote(), 'slept 1')
})
