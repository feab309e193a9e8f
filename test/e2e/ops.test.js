// Operating a gateway from outside: `fnbus start --http-port`, /healthz following the supervised functions,
// /metrics from the config's plugins, and `fnbus status` as a table and as JSON.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { portOf, startGateway, tempDir, waitFor } from '../helpers.js'
import { FIXTURES, runCli, startCli } from './cli.js'

async function health (httpUrl) {
  const response = await fetch(`${httpUrl}/healthz`)
  return { status: response.status, body: await response.json() }
}

async function startOperated (t) {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
    memory: true,
    plugins: { metrics: {} },
    functions: [{ service: 'Ops', function: 'worker', module: join(FIXTURES, 'callback.cjs') }],
  }))
  const gateway = await startCli(t, ['--http-port', '0'], { cwd: dir })
  const [, httpUrl] = await gateway.waitFor(/fnbus http listening on (\S+)\n/, { stream: 'stdout' })
  assert.match(httpUrl, /^http:\/\/127\.0\.0\.1:\d+$/)
  return Object.assign(gateway, { httpUrl })
}

test('/healthz is ready only while the supervised function is up: unready when its process dies, ready again after the restart', async t => {
  const gateway = await startOperated(t)
  await waitFor(async () => (await health(gateway.httpUrl)).status === 200, 10_000, 'the instance to be ready')
  assert.deepEqual((await health(gateway.httpUrl)).body, { ready: true, broker: true, store: true, functions: true })

  const pid = Number((await runCli(t, ['invoke', 'Ops/worker', '--payload', 'pid'], { env: gateway.env })).stdout)
  assert.ok(pid > 0)
  process.kill(pid, 'SIGKILL')
  const down = await waitFor(async () => {
    const answer = await health(gateway.httpUrl)
    return answer.status === 503 ? answer : undefined
  }, 5000, '/healthz to turn unready')
  assert.deepEqual(down.body, { ready: false, broker: true, store: true, functions: false })
  // the supervisor restarts it (500 ms later) and the gateway is ready again
  await waitFor(async () => (await health(gateway.httpUrl)).status === 200, 10_000, 'the restarted instance to be ready')

  const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text()
  assert.match(metrics, /^fnbus_invocations_total\{function="Ops\/worker",type="Sync",outcome="ok"\} 1$/m)
  assert.match(metrics, /^fnbus_ready 1$/m)
})

test('fnbus status prints functions, workers, instances and queues as a table, or everything with --json', async t => {
  const gateway = await startOperated(t)
  await waitFor(async () => (await health(gateway.httpUrl)).status === 200, 10_000, 'the instance to be ready')
  await runCli(t, ['invoke', 'Ops/queued', '--async', '--payload', 'later'], { env: gateway.env })

  const table = await runCli(t, ['status'], { env: gateway.env })
  assert.equal(table.code, 0, table.stderr)
  const lines = table.stdout.split('\n')
  assert.match(lines[0], new RegExp(`^gateway  ${gateway.url.replace(/[.]/g, '\\.')}  fnbus \\S+  up \\d+s  ready$`))
  assert.match(lines[1], /^clients {2}\d+ connected, \d+ on the bus, 1 workers {2}http http:\/\/127\.0\.0\.1:\d+$/)
  const header = lines.find(line => line.startsWith('FUNCTION'))
  assert.match(String(header), /^FUNCTION\s+WORKERS\s+IN FLIGHT\s+WAITING\s+PENDING\s+ASYNC RUNNING\s+DEAD\s+INSTANCES\s+RESTARTS$/)
  assert.match(table.stdout, /^Ops\/queued\s+0\s+0\s+0\s+1\s+0\s+0\s+-\s+-$/m)
  assert.match(table.stdout, /^Ops\/worker\s+1\s+0\s+0\s+0\s+0\s+0\s+1\/1\s+0$/m)
  assert.match(table.stdout, /^WORKER OF\s+CLIENT\s+IN FLIGHT\/CONCURRENCY$/m)
  assert.match(table.stdout, /^Ops\/worker\s+\S+\s+0\/8$/m)

  const json = await runCli(t, ['status', '--json', '--url', gateway.url])
  assert.equal(json.code, 0, json.stderr)
  const status = JSON.parse(json.stdout)
  assert.equal(status.url, gateway.url)
  assert.equal(status.httpUrl, gateway.httpUrl)
  assert.equal(status.health.ready, true)
  const worker = status.functions.find(f => f.name === 'Ops/worker')
  assert.equal(worker.workers.length, 1)
  assert.equal(worker.instances.length, 1)
  assert.equal(worker.instances[0].label, 'Ops/worker#1')
  assert.equal(worker.instances[0].ready, true)
  assert.ok(worker.instances[0].pid > 0)
  assert.deepEqual(status.functions.find(f => f.name === 'Ops/queued').async, { pending: 1, inFlight: 0, dead: 0 })
})

test('fnbus status exits 1 when the gateway is not ready, and names what is down', async t => {
  // an in-process gateway told about an instance that is not up
  const gw = await startGateway(t)
  gw.attachInstances({ instances: () => [{ label: 'Ops/broken#1', pid: undefined, ready: false, restarts: 3 }] })
  const result = await runCli(t, ['status', '--url', gw.url])
  assert.equal(result.code, 1)
  assert.match(result.stdout, /NOT READY \(functions down\)/)
  assert.match(result.stdout, /^Ops\/broken\s+0\s+0\s+0\s+0\s+0\s+0\s+0\/1\s+3$/m)
})

test('fnbus status without a gateway fails with a code', async t => {
  const result = await runCli(t, ['status', '--url', 'mqtt://127.0.0.1:9'])
  assert.equal(result.code, 1)
  assert.match(result.stderr, /^FNBUS_(DISCONNECTED|TIMEOUT): /)
})

test("fnbus status against a bus on an application's own aedes prints the bus's own view as JSON", async t => {
  const { Aedes } = await import('aedes')
  const { createServer } = await import('node:net')
  const { attachFunctionBus } = await import('../../dist/index.js')
  const aedes = await Aedes.createBroker()
  const bus = attachFunctionBus(aedes)
  const server = createServer(bus.handle)
  await new Promise(resolve => server.listen(0, '127.0.0.1', () => resolve(undefined)))
  t.after(async () => {
    await bus.close()
    await new Promise(resolve => aedes.close(() => resolve(undefined)))
    await new Promise(resolve => server.close(() => resolve(undefined)))
  })
  await bus.serve('Host/fn', async () => 'ok')
  const result = await runCli(t, ['status', '--url', `mqtt://127.0.0.1:${portOf(server)}`])
  assert.equal(result.code, 0, result.stderr)
  const view = JSON.parse(result.stdout)
  assert.deepEqual(view.functions.map(f => f.name), ['Host/fn'])
  assert.deepEqual(view.queues, [])
  assert.equal(view.sessions, 1)
})
