// The log of `fnbus start` as an operator reads it: JSON lines on stderr, the level chosen on the command line,
// one invocation followed through the gateway and its supervised function by its requestId.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { tempDir } from '../helpers.js'
import { FIXTURES, runCli, startCli, terminate } from './cli.js'

test('--log-level debug: JSON lines only (besides the functions\' own prefixed output), one invocation traceable by requestId', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
    memory: true,
    functions: [{ service: 'Test', function: 'callback', module: join(FIXTURES, 'callback.cjs') }],
  }))
  const gateway = await startCli(t, ['--log-level', 'debug'], { cwd: dir })
  await gateway.waitFor('"msg":"serving Test/callback')
  const result = await runCli(t, ['invoke', 'Test/callback', '--payload', 'log'], { env: gateway.env })
  assert.equal(result.stdout, 'logged')
  await gateway.waitFor('"msg":"invocation finished"')
  await terminate(gateway)

  const lines = gateway.stderr.split('\n').filter(Boolean)
  const functionOutput = lines.filter(line => line.startsWith('[Test/callback#1] '))
  // stdout and stderr are two pipes: their lines interleave in any order
  assert.deepEqual(functionOutput.sort(), ['[Test/callback#1] line one', '[Test/callback#1] line two', '[Test/callback#1] to stderr'])
  const entries = lines.filter(line => !line.startsWith('[')).map(line => JSON.parse(line))
  const received = entries.find(e => e.msg === 'invocation received')
  const trace = entries.filter(e => e.requestId === received.requestId && e.component === undefined)
  assert.deepEqual(trace.map(e => e.msg), ['invocation received', 'invocation dispatched', 'invocation finished'])
  assert.equal(trace[2].outcome, 'ok')
  assert.equal(trace[2].fn, 'Test/callback')
  // the same requestId in the function's own process, whose runtime logs at the gateway's level
  const inWorker = entries.filter(e => e.requestId === received.requestId && e.component === 'runtime')
  assert.deepEqual(inWorker.map(e => [e.msg, e.instance]), [['invocation started', 'Test/callback#1'], ['invocation ended', 'Test/callback#1']])
  assert.equal(inWorker[1].outcome, 'ok')
  // the worker's client id in the gateway's lines is the one the runtime registered with
  assert.ok(entries.some(e => e.msg === `${trace[1].worker} serves Test/callback`))
  // the supervised runtime logs at the gateway's level too, naming its instance
  assert.ok(entries.some(e => e.component === 'runtime' && e.instance === 'Test/callback#1' && e.pid !== entries[0].pid))
  assert.ok(entries.some(e => e.component === 'supervisor' && e.instance === 'Test/callback#1' && e.msg.includes('stopped (exited with code 0)')))
})

test('the default level shows no invocation lines; --log-format pretty prints readable ones; a bad level exits 2', async t => {
  const quiet = await startCli(t, ['--memory'])
  const invoked = await runCli(t, ['invoke', 'Nobody/here'], { env: quiet.env })
  assert.equal(invoked.code, 1)
  await terminate(quiet)
  assert.doesNotMatch(quiet.stderr, /invocation received/)
  assert.match(quiet.stderr, /"level":"info".*"msg":"stopped"/)

  const pretty = await startCli(t, ['--memory', '--log-format', 'pretty'])
  await terminate(pretty)
  assert.match(pretty.stderr, /^\d\d:\d\d:\d\d\.\d{3} INFO {2}fnbus gateway listening on mqtt:\/\/127\.0\.0\.1:\d+ {2}url=/m)

  const bad = await runCli(t, ['start', '--memory', '--log-level', 'loud'])
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /^fnbus start: --log-level must be one of fatal, error, warn, info, debug, trace, silent, got "loud"/)
})
