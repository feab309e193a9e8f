// The supervisor's restart rules, with short intervals: real `fnbus run` child processes, a gateway in this process.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { test } from 'node:test'
import { Supervisor } from '../../dist/runtime/supervisor.js'
import { connectClient, defined, rejection, startGateway, waitFor } from '../helpers.js'
import { FIXTURES } from './cli.js'

const FAST = { restartDelayMs: 100, heartbeatIntervalMs: 100, unresponsiveAfterMs: 700, stopGraceMs: 3000 }

function slowFunction (overrides = {}) {
  return { service: 'Test', function: 'slow', name: 'Test/slow', module: join(FIXTURES, 'slow.cjs'), instances: 1, concurrency: 4, env: {}, ...overrides }
}

/** A supervisor on `gw`, its announcements and relayed output collected; stopped after the test. */
async function supervise (t, gw, functions, options = {}) {
  const output = new PassThrough()
  let text = ''
  output.on('data', chunk => { text += chunk })
  const supervisor = new Supervisor(functions, { url: gw.url, output, ...FAST, ...options })
  t.after(() => supervisor.stop())
  const ready = once(supervisor, 'ready')
  supervisor.start()
  await ready
  return { supervisor, output: () => text }
}

test('an instance whose event loop is stuck stops answering heartbeats and is restarted', async t => {
  const gw = await startGateway(t)
  const { supervisor, output } = await supervise(t, gw, [slowFunction()])
  const client = await connectClient(t, gw)
  const firstPid = supervisor.instances()[0].pid

  const restarted = once(supervisor, 'restart')
  const err = await rejection(client.invoke('Test/slow', 'block', { timeout: 300 }))
  assert.ok(['FNBUS_TIMEOUT', 'FNBUS_WORKER_LOST'].includes(String(err.code)), err.code)
  const [label, reason] = await restarted
  assert.equal(label, 'Test/slow#1')
  assert.match(reason, /^stopped answering \(no heartbeat for \d+ ms\)$/)
  assert.match(output(), /fnbus: Test\/slow#1 stopped answering \(no heartbeat for \d+ ms\); restarting it/)

  await once(supervisor, 'ready')
  assert.notEqual(supervisor.instances()[0].pid, firstPid)
  assert.equal(await client.invoke('Test/slow', '1', { waitForWorker: 2000 }), 'slept 1')
})

test('an instance whose last 3 invocations all overran their deadline is restarted', async t => {
  const gw = await startGateway(t)
  gw.bus.setFunctionOptions('Test/slow', { timeoutMs: 150 })
  const { supervisor, output } = await supervise(t, gw, [slowFunction()])
  const client = await connectClient(t, gw)

  const restarted = once(supervisor, 'restart')
  for (let i = 0; i < 3; i++) {
    assert.equal((await rejection(client.invoke('Test/slow', 'never'))).code, 'FNBUS_TIMEOUT')
  }
  const [, reason] = await restarted
  assert.equal(reason, 'stopped answering (its last 3 invocations overran their deadline)')
  assert.match(output(), /Test\/slow#1 stopped answering \(its last 3 invocations overran their deadline\); restarting it/)
})

test('an instance above its memoryLimitMb is restarted', async t => {
  const gw = await startGateway(t)
  const { supervisor, output } = await supervise(t, gw, [slowFunction({ memoryLimitMb: 120 })])
  const client = await connectClient(t, gw)

  const restarted = once(supervisor, 'restart')
  assert.match(String(await client.invoke('Test/slow', 'grow')), /^holding \d+ bytes$/)
  const [, reason] = await restarted
  assert.match(reason, /^uses \d+ MB, over its memoryLimitMb of 120$/)
  assert.match(output(), /Test\/slow#1 uses \d+ MB, over its memoryLimitMb of 120; restarting it/)
})

test('crashes in a row back off exponentially', async t => {
  const gw = await startGateway(t)
  const { supervisor } = await supervise(t, gw, [slowFunction()])
  const delays = []
  supervisor.on('restart', (_label, _reason, delay) => delays.push(delay))
  for (let i = 0; i < 3; i++) {
    const pid = defined(supervisor.instances()[0].pid)
    process.kill(pid, 'SIGKILL')
    await once(supervisor, 'ready')
  }
  assert.deepEqual(delays, [100, 200, 400])
  assert.equal(supervisor.instances()[0].restarts, 3)
})

test('stop() drains instances with SIGTERM and kills one that outlasts the grace', async t => {
  const gw = await startGateway(t)
  const { supervisor, output } = await supervise(t, gw, [slowFunction({ instances: 2 })], { stopGraceMs: 400 })
  await waitFor(() => supervisor.instances().every(i => i.ready), 5000, 'both instances')
  const client = await connectClient(t, gw)
  // one instance holds a call that never ends: its drain would wait for the call's 10 s deadline
  const stuck = rejection(client.invoke('Test/slow', 'never', { timeout: 10_000 }))
  await waitFor(() => gw.stats().inFlight === 1, 5000, 'the call to start')

  const exits = []
  supervisor.on('exit', (label, code, signal) => exits.push({ label, code, signal }))
  const started = Date.now()
  await supervisor.stop()
  assert.ok(Date.now() - started < 3000)
  assert.equal(exits.length, 2)
  assert.deepEqual(exits.map(e => e.signal ?? e.code).sort(), [0, 'SIGKILL'])
  assert.match(output(), /did not stop within 400 ms; killing it/)
  assert.equal((await stuck).code, 'FNBUS_WORKER_LOST')
  assert.doesNotMatch(output(), /restarting/)
})
