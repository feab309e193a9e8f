// The README's quick start, as written, on a free port: `npm start` in the repository (which supervises the seed's
// two samples through fnbus.config.json), then `fnbus invoke EdgeFC/helloworld --payload hi` in another shell.
// It runs exactly the files in examples/.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { ROOT, runCli, startCli, terminate } from './cli.js'

test('npm start is fnbus start in the repository root', async () => {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8'))
  assert.equal(pkg.scripts.start, 'node ./bin/fnbus.js start')
  assert.equal(pkg.bin.fnbus, './bin/fnbus.js')
})

test('quick start: the supervised seed samples answer fnbus invoke', async t => {
  // --memory keeps the test off ./data; the port is a free one (Mosquitto holds 1883 here)
  const gateway = await startCli(t, ['--memory'], { cwd: ROOT })
  await gateway.waitFor('"msg":"serving EdgeFC/helloworld')

  const hello = await runCli(t, ['invoke', 'EdgeFC/helloworld', '--payload', 'hi'], { env: gateway.env })
  assert.equal(hello.stderr, '')
  assert.equal(hello.stdout, 'Message from helloworld')
  assert.equal(hello.code, 0)
  await gateway.waitFor('[EdgeFC/helloworld#1] hi\n')

  // the README's line itself, through npx (--no: never fetch a package named fnbus from the registry)
  const viaNpx = await new Promise(resolve => {
    execFile('npx', ['--no', 'fnbus', 'invoke', 'EdgeFC/helloworld', '--payload', 'hi'],
      { cwd: ROOT, env: { ...process.env, ...gateway.env }, timeout: 30_000 },
      (err, stdout, stderr) => resolve({ code: err === null ? 0 : err.code, stdout, stderr }))
  })
  assert.equal(viaNpx.stdout, 'Message from helloworld', viaNpx.stderr)
  assert.equal(viaNpx.code, 0)

  // the invoker sample calls helloworld with the seed's payload and invoker context, and logs the answer
  await gateway.waitFor('"msg":"serving EdgeFC/invoker')
  const invoker = await runCli(t, ['invoke', 'EdgeFC/invoker'], { env: gateway.env })
  assert.equal(invoker.code, 0, invoker.stderr)
  assert.equal(invoker.stdout, 'null\n') // it calls back with no result
  await gateway.waitFor('[EdgeFC/helloworld#1] String message from Invoker.\n')
  await gateway.waitFor("invokerContext: { custom: { data: 'Custom context from Invoker' } }")
  await gateway.waitFor('[EdgeFC/invoker#1] Message from helloworld\n')

  assert.deepEqual(await terminate(gateway), { code: 0, signal: null })
  assert.match(gateway.stderr, /EdgeFC\/helloworld#1 stopped \(exited with code 0\)/)
  assert.match(gateway.stderr, /EdgeFC\/invoker#1 stopped \(exited with code 0\)/)
})
