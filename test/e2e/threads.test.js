// `fnbus start` with functions as threads: the repository's own configuration, a module that does not load,
// `fnbus restart`, `--watch` and `fnbus status`, all through the command as a user runs it.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'node:test'
import { FCClient } from '../../dist/index.js'
import { tempDir, waitFor } from '../helpers.js'
import { ROOT, runCli, startCli, terminate } from './cli.js'

test('fnbus start runs the sample configuration\'s functions as threads of its own process; the invoker reaches helloworld', async t => {
  const gateway = await startCli(t, ['--memory'], { cwd: ROOT })
  const fc = new FCClient({ url: gateway.url })
  t.after(() => fc.close())
  assert.equal(await fc.invoke('EdgeFC/helloworld', 'hi', { waitForWorker: 10_000 }), 'Message from helloworld')
  await fc.invoke('EdgeFC/invoker', null, { waitForWorker: 10_000 })
  await gateway.waitFor('[EdgeFC/invoker#1] Message from helloworld')
  const instances = (await fc.status()).functions.flatMap(f => f.instances)
  assert.equal(instances.length, 2)
  assert.ok(instances.every(i => i.isolation === 'thread' && i.pid === gateway.child.pid && i.ready), JSON.stringify(instances))
  const status = await runCli(t, ['status'], { env: gateway.env })
  assert.match(status.stdout, new RegExp(`^EdgeFC/helloworld#1 +thread +${gateway.child.pid}/\\d+ +up `, 'm'))
  const { code } = await terminate(gateway)
  assert.equal(code, 0)
})

test('a thread module that throws as it loads stops fnbus start with exit 2, as a process module does', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'bad.cjs'), "throw new Error('no config found')\n")
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ functions: [{ service: 'Dev', function: 'bad', module: './bad.cjs', isolation: 'thread' }] }))
  const run = await runCli(t, ['start', '--memory', '--port', '0'], { cwd: dir })
  assert.equal(run.code, 2, run.stderr)
  assert.match(run.stderr, /functions\[0\] \(Dev\/bad\): its module did not load in its first instance: .*no config found/)
})

test('fnbus restart and --watch run a thread function\'s new version', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'greet.cjs'), "exports.handler = async name => 'hello ' + name\n")
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
    functions: [{ service: 'Dev', function: 'greet', module: './greet.cjs', isolation: 'thread', memoryLimitMb: 64 }],
  }))
  const gateway = await startCli(t, ['--memory', '--watch'], { cwd: dir })
  const fc = new FCClient({ url: gateway.url })
  t.after(() => fc.close())
  assert.equal(await fc.invoke('Dev/greet', 'ada', { waitForWorker: 10_000 }), 'hello ada')
  const newVersion = async expected => await waitFor(async () => {
    const result = await fc.invoke('Dev/greet', 'ada', { waitForWorker: 5000 }).catch(() => undefined)
    return result === expected ? result : undefined
  }, 15_000, expected)
  await writeFile(join(dir, 'greet.cjs'), "exports.handler = async name => 'bonjour ' + name\n")
  await gateway.waitFor(/greet\.cjs changed: restarting Dev\/greet/)
  assert.equal(await newVersion('bonjour ada'), 'bonjour ada')
  await writeFile(join(dir, 'greet.cjs'), "exports.handler = async name => 'hola ' + name\n")
  const restarted = await runCli(t, ['restart', 'Dev/greet'], { env: gateway.env })
  assert.equal(restarted.code, 0, restarted.stderr)
  assert.equal(await newVersion('hola ada'), 'hola ada')
})
