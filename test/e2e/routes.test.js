// Routes as an operator uses them: rules in fnbus.config.json, events from mosquitto_pub and MQTT.js, a worker in
// another process (`fnbus run`) that gets each event's topic and payload.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import mqtt from 'mqtt'
import { tempDir } from '../helpers.js'
import { FIXTURES, spawnCli, startCli } from './cli.js'

const run = promisify(execFile)

/** The JSON lines the route-sink fixture printed so far. */
function received (worker) {
  return worker.stdout.split('\n').filter(line => line.startsWith('{')).map(line => JSON.parse(line))
}

test('events from mosquitto_pub and MQTT.js reach a worker process through an Async route, stored until it comes', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
    dataDir: './state',
    routes: [{ from: 'sensors/+/temperature', to: 'Analytics/ingest', invocationType: 'Async' }],
  }))
  const gateway = await startCli(t, [], { cwd: dir })
  await gateway.waitFor('routing events on sensors/+/temperature to Analytics/ingest (Async, as routes)')

  // no worker yet: the matching event is stored, the other one is not routed at all
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gateway.port), '-q', '1', '-t', 'sensors/hall/humidity', '-m', '55'])
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gateway.port), '-q', '1', '-t', 'sensors/hall/temperature', '-m', '19.0'])

  const worker = spawnCli(t, ['run', join(FIXTURES, 'route-sink.cjs'), '--service', 'Analytics', '--function', 'ingest'], { env: gateway.env })
  await worker.waitFor('"topic":"sensors/hall/temperature"', { stream: 'stdout' })

  const plain = await mqtt.connectAsync(gateway.url, { reconnectPeriod: 0 })
  t.after(() => plain.endAsync())
  await plain.publishAsync('sensors/kitchen/temperature', '21.5', { qos: 1 })
  await worker.waitFor('"topic":"sensors/kitchen/temperature"', { stream: 'stdout' })

  const events = received(worker)
  assert.deepEqual(events.map(({ requestId, ...rest }) => rest), [
    { topic: 'sensors/hall/temperature', subject: 'sensors/hall/temperature', buffer: true, payload: '19.0', type: 'Async' },
    { topic: 'sensors/kitchen/temperature', subject: 'sensors/kitchen/temperature', buffer: true, payload: '21.5', type: 'Async' },
  ])
  assert.ok(!worker.stdout.includes('humidity'), 'the non-matching topic was not routed')
})

test('a bad rule stops fnbus start with exit 2, naming the file and the rule', async t => {
  const dir = await tempDir(t)
  const file = join(dir, 'fnbus.config.json')
  await writeFile(file, JSON.stringify({ memory: true, routes: [{ from: 'sensors/#', to: 'Analytics/ingest', invocationTyp: 'Sync' }] }))
  const started = spawnCli(t, ['start', '--port', '0'], { cwd: dir })
  const { code } = await started.exited
  assert.equal(code, 2, started.stderr)
  assert.equal(started.stderr.split('\n')[0], `FNBUS_CONFIG_INVALID: ${file}: routes[0] (sensors/# → Analytics/ingest): unknown key "invocationTyp" (known: from, to, invocationType, identity, payloadFormat, replyTo, timeoutMs)`)
})
