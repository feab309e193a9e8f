// docs/protocol.md's Python worker, taken from the document itself (so the two cannot drift apart), run with the
// system's Python against a real gateway and called as any caller would: a string, bytes, a map, and a value the
// function refuses. Needs a Python with paho-mqtt (1.6 or 2.x) and msgpack: Debian's python3-paho-mqtt and
// python3-msgpack (.ci/run installs them). Without one the test fails: it never skips.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'node:test'
import { connectClient, rejection, startGateway, tempDir, waitFor } from '../helpers.js'
import { ROOT } from './cli.js'

/** The first Python that imports paho.mqtt and msgpack: Debian's own first (pyenv's `python3` may lack them). */
function findPython () {
  const tried = []
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    const probe = spawnSync(candidate, ['-c', 'import paho.mqtt, msgpack; print(paho.mqtt.__version__, msgpack.version)'], { encoding: 'utf8' })
    if (probe.status === 0) return { python: candidate, versions: probe.stdout.trim() }
    tried.push(`${candidate}: ${probe.error?.message ?? probe.stderr.trim().split('\n').at(-1)}`)
  }
  assert.fail(`no Python with paho-mqtt and msgpack (apt install python3-paho-mqtt python3-msgpack):\n${tried.join('\n')}`)
}

/** The ```python block of the section "A minimal worker in Python". */
async function exampleFromDocs () {
  const doc = await readFile(join(ROOT, 'docs/protocol.md'), 'utf8')
  const section = doc.indexOf('## A minimal worker in Python')
  assert.ok(section >= 0, 'docs/protocol.md has the Python section')
  const start = doc.indexOf('```python\n', section)
  const end = doc.indexOf('\n```', start + 1)
  assert.ok(start > section && end > start, 'the section holds a python block')
  return doc.slice(start + '```python\n'.length, end + 1)
}

test("docs/protocol.md's Python worker serves a string, bytes and a map, and answers a failure at once", async t => {
  const { python, versions } = findPython()
  t.diagnostic(`${python}: paho-mqtt, msgpack ${versions}`)
  const gw = await startGateway(t)
  const file = join(await tempDir(t), 'worker.py')
  await writeFile(file, await exampleFromDocs())

  /** @type {NodeJS.ProcessEnv} */
  const env = { ...process.env, FNBUS_HOST: '127.0.0.1', FNBUS_PORT: String(gw.port) }
  delete env.FNBUS_PASSWORD
  const worker = spawn(python, ['-u', file], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  worker.stdout.setEncoding('utf8').on('data', chunk => { stdout += chunk })
  worker.stderr.setEncoding('utf8').on('data', chunk => { stderr += chunk })
  const exited = new Promise(resolve => worker.once('close', () => resolve(undefined)))
  t.after(async () => {
    if (worker.exitCode === null && worker.signalCode === null) worker.kill('SIGKILL')
    await exited
  })
  await waitFor(() => stdout.includes('serving Py/upper') || worker.exitCode !== null, 15_000, 'the Python worker to register')
  assert.match(stdout, /serving Py\/upper/, `the worker registered; stderr:\n${stderr}`)

  const caller = await connectClient(t, gw)
  assert.equal(await caller.invoke('Py/upper', 'hello, python'), 'HELLO, PYTHON', 'a string stays a string')
  const bytes = await caller.invoke('Py/upper', Buffer.from([0x61, 0x62, 0x00, 0xff, 0x80]))
  assert.ok(Buffer.isBuffer(bytes), 'bytes stay bytes (kind 0 is not MessagePack)')
  assert.deepEqual(bytes, Buffer.from([0x41, 0x42, 0x00, 0xff, 0x80]))
  assert.deepEqual(await caller.invoke('Py/upper', { temp: 21.5, at: 1_732_000_000_123, tags: ['a', 'b'], raw: Buffer.from('x') }),
    { TEMP: 21.5, AT: 1_732_000_000_123, TAGS: ['a', 'b'], RAW: Buffer.from('x') }, 'a map, its epoch-ms integer a number')
  const failed = /** @type {import('../../dist/index.js').FunctionError} */ (await rejection(caller.invoke('Py/upper', 42, { timeout: 5000 })))
  assert.equal(failed.code, 'FNBUS_FUNCTION_ERROR', 'answered as a failure, not left to time out')
  assert.equal(failed.handled, false)
  assert.match(String(failed.payload ?? failed.message), /cannot upper-case a int/)
  // the worker is still serving, and serves Async invocations the same way
  assert.equal(await caller.invoke('Py/upper', 'still here'), 'STILL HERE')
  await caller.invokeAsync('Py/upper', 'stored')
  const done = () => gw.bus.queueStats('Py/upper').every(q => q.pending === 0 && q.inFlight === 0)
  await waitFor(done, 10_000, 'the Async invocation to complete')
  assert.deepEqual(gw.bus.queueStats('Py/upper').map(q => q.dead), [0], 'completed, not dead-lettered')
  assert.equal(worker.exitCode, null, 'the worker is still running')
  assert.doesNotMatch(stderr, /Traceback/, stderr)
})
