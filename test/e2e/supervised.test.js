// Functions that `fnbus start` supervises from its configuration: crash and restart, timeoutMs, output relay.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { rejection, startGateway, tempDir } from '../helpers.js'
import { FIXTURES, runCli, startCli, terminate } from './cli.js'

async function startSupervising (t) {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
    memory: true,
    functions: [
      { service: 'Test', function: 'crashy', module: join(FIXTURES, 'callback.cjs'), env: { GREETING: 'hello' } },
      { service: 'Test', function: 'slow', module: join(FIXTURES, 'slow.cjs'), timeoutMs: 300 },
      // options only: its workers would run elsewhere
      { service: 'Test', function: 'external', timeoutMs: 1000 },
    ],
  }))
  const gateway = await startCli(t, [], { cwd: dir })
  await gateway.waitFor('"msg":"serving Test/crashy')
  await gateway.waitFor('"msg":"serving Test/slow')
  return gateway
}

test('a crashed function is restarted, announced on stderr, and serves again', async t => {
  const gateway = await startSupervising(t)
  const invoke = (...args) => runCli(t, ['invoke', 'Test/crashy', ...args], { env: gateway.env })

  const before = await invoke('--payload', 'pid')
  assert.match(before.stdout, /^\d+$/)

  const crash = await invoke('--payload', 'crash')
  assert.equal(crash.code, 1)
  assert.match(crash.stderr, /^FNBUS_WORKER_LOST: /)
  await gateway.waitFor('Test/crashy#1 exited with code 1; restarting in 500 ms')

  const after = await invoke('--payload', 'pid', '--wait-for-worker', '5000')
  assert.equal(after.code, 0, after.stderr)
  assert.match(after.stdout, /^\d+$/)
  assert.notEqual(after.stdout, before.stdout, 'a new process serves')
})

test("a supervised function gets its entry's env and FNBUS_URL; its output is prefixed line by line", async t => {
  const gateway = await startSupervising(t)
  const env = await runCli(t, ['invoke', 'Test/crashy', '--payload', 'env'], { env: gateway.env })
  assert.equal(env.stdout, 'hello from Test/crashy#1')
  const logged = await runCli(t, ['invoke', 'Test/crashy', '--payload', 'log'], { env: gateway.env })
  assert.equal(logged.stdout, 'logged')
  await gateway.waitFor('[Test/crashy#1] line one\n[Test/crashy#1] line two\n')
  await gateway.waitFor('[Test/crashy#1] to stderr\n')
})

test("a handler that overruns its function's timeoutMs fails that call with FNBUS_TIMEOUT", async t => {
  const gateway = await startSupervising(t)
  // Without the function's timeoutMs (300) the handler would answer 'slept 3000' well within the caller's own 30 s:
  // a timeout proves the cap, with no clock in the test (a loaded machine makes any wall-clock bound flaky).
  const late = await runCli(t, ['invoke', 'Test/slow', '--payload', '3000'], { env: gateway.env })
  assert.equal(late.code, 1)
  assert.match(late.stderr, /^FNBUS_TIMEOUT: Test\/slow did not answer within its deadline/)
  const inTime = await runCli(t, ['invoke', 'Test/slow', '--payload', '10'], { env: gateway.env })
  assert.equal(inTime.stdout, 'slept 10')
})

test('SIGTERM stops the supervised functions, then the gateway, and exits 0', async t => {
  const gateway = await startSupervising(t)
  assert.deepEqual(await terminate(gateway), { code: 0, signal: null })
  assert.match(gateway.stderr, /Test\/crashy#1 stopped \(exited with code 0\)/)
  assert.match(gateway.stderr, /Test\/slow#1 stopped \(exited with code 0\)/)
  assert.doesNotMatch(gateway.stderr, /restarting/)
})

test('supervised functions do not outlive a gateway that was killed', async t => {
  const gateway = await startSupervising(t)
  const pids = [...gateway.stderr.matchAll(/started \(pid (\d+)\)/g)].map(m => Number(m[1]))
  assert.equal(pids.length, 2)
  gateway.child.kill('SIGKILL')
  const alive = pid => { try { process.kill(pid, 0); return true } catch { return false } }
  const until = Date.now() + 5000
  while (pids.some(alive) && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 50))
  assert.deepEqual(pids.filter(alive), [], 'their IPC channel closed: they drained and exited')
})

test('bus.setFunctionOptions({ timeoutMs }): the default and the cap of calls to that function only', async t => {
  const gw = await startGateway(t)
  const sleep = ms => new Promise(resolve => setTimeout(() => resolve(`slept ${ms}`), ms))
  await gw.serve('Test/capped', event => sleep(Number(event)))
  await gw.serve('Test/free', event => sleep(Number(event)))
  gw.bus.setFunctionOptions('Test/capped', { timeoutMs: 200 })

  // the handler answers after 1 s, well within the 5 s asked for: only the function's cap can make it a timeout
  assert.equal((await rejection(gw.invoke('Test/capped', '1000', { timeout: 5000 }))).code, 'FNBUS_TIMEOUT', 'capped at 200 ms although the caller asked for 5 s')
  assert.equal((await rejection(gw.invoke('Test/capped', '1000', { timeout: 100 }))).code, 'FNBUS_TIMEOUT', 'a caller may ask for less')
  assert.equal(await gw.invoke('Test/free', '400'), 'slept 400', 'other functions keep the gateway default')

  gw.bus.setFunctionOptions('Test/capped', { timeoutMs: undefined })
  assert.equal(await gw.invoke('Test/capped', '400'), 'slept 400', 'undefined removes the option')
  for (const bad of [0, 1.5, 16 * 60_000]) {
    assert.throws(() => gw.bus.setFunctionOptions('Test/capped', { timeoutMs: bad }), { code: 'FNBUS_INVALID_ARGUMENT' })
  }
})
