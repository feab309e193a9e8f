// The edit-and-test loop: `fnbus start --watch` runs the new version of a function as soon as its file is saved.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'node:test'
import { FCClient } from '../../dist/index.js'
import { tempDir, waitFor } from '../helpers.js'
import { startCli } from './cli.js'

test('fnbus start --watch restarts a function when its module changes, and only that function', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'greet.cjs'), "exports.handler = async name => 'hello ' + name\n")
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
    dataDir: './data',
    functions: [{ service: 'Dev', function: 'greet', module: './greet.cjs' }],
  }))
  const gateway = await startCli(t, ['--watch'], { cwd: dir })
  await gateway.waitFor('--watch: restarting functions when their files change')
  const fc = new FCClient({ url: gateway.url })
  t.after(() => fc.close())
  assert.equal(await fc.invoke('Dev/greet', 'ada', { waitForWorker: 10_000 }), 'hello ada')
  await writeFile(join(dir, 'greet.cjs'), "exports.handler = async name => 'bonjour ' + name\n")
  await gateway.waitFor(/greet\.cjs changed: restarting Dev\/greet/)
  const answer = await waitFor(async () => {
    const result = await fc.invoke('Dev/greet', 'ada', { waitForWorker: 5000 }).catch(() => undefined)
    return result === 'bonjour ada' ? result : undefined
  }, 15_000, 'the new version')
  assert.equal(answer, 'bonjour ada')
  const status = await fc.status()
  const instance = status.functions.find(f => f.name === 'Dev/greet')?.instances[0]
  assert.equal(instance?.restarts, 1, 'one restart, asked for')
  // the gateway's own writes (its data directory beside the module) restart nothing
  await fc.invokeAsync('Nobody/here', 'stored')
  await new Promise(resolve => setTimeout(resolve, 800))
  assert.equal((await fc.status()).functions.find(f => f.name === 'Dev/greet')?.instances[0]?.restarts, 1)
})

test('fnbus init scaffolds a function and its configuration entry; fnbus start runs it as written', async t => {
  const dir = await tempDir(t)
  const { runCli } = await import('./cli.js')
  const created = await runCli(t, ['init', 'Plant/reader'], { cwd: dir })
  assert.equal(created.code, 0, created.stderr)
  assert.match(created.stdout, /created functions\/Plant-reader\.cjs\ncreated fnbus\.config\.json: Plant\/reader → \.\/functions\/Plant-reader\.cjs/)
  // the new file points editors at the package's schema, which `fnbus start` accepts as a key
  const written = JSON.parse(await readFile(join(dir, 'fnbus.config.json'), 'utf8'))
  assert.equal(resolve(dir, written.$schema), fileURLToPath(new URL('../../schema/fnbus.config.schema.json', import.meta.url)))
  const esm = await runCli(t, ['init', 'Plant/writer', '--esm'], { cwd: dir })
  assert.equal(esm.code, 0, esm.stderr)
  assert.match(esm.stdout, /updated fnbus\.config\.json: Plant\/writer → \.\/functions\/Plant-writer\.mjs/)
  const twice = await runCli(t, ['init', 'Plant/reader'], { cwd: dir })
  assert.equal(twice.code, 2)
  assert.match(twice.stderr, /Plant\/reader is listed already/)
  const gateway = await startCli(t, ['--memory'], { cwd: dir })
  const fc = new FCClient({ url: gateway.url })
  t.after(() => fc.close())
  assert.equal(await fc.invoke('Plant/reader', 'hi', { waitForWorker: 10_000 }), 'reader got: hi')
  assert.equal(await fc.invoke('Plant/writer', 'hi', { waitForWorker: 10_000 }), 'writer got: hi')
})

test('fnbus restart Service/function runs the edited module; a function the gateway does not supervise is FNBUS_FUNCTION_NOT_FOUND', async t => {
  const dir = await tempDir(t)
  const { runCli } = await import('./cli.js')
  await writeFile(join(dir, 'count.cjs'), "exports.handler = async () => 'v1'\n")
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ functions: [{ service: 'Dev', function: 'count', module: './count.cjs', instances: 2 }] }))
  const gateway = await startCli(t, ['--memory'], { cwd: dir })
  const fc = new FCClient({ url: gateway.url })
  t.after(() => fc.close())
  assert.equal(await fc.invoke('Dev/count', null, { waitForWorker: 10_000 }), 'v1')
  await writeFile(join(dir, 'count.cjs'), "exports.handler = async () => 'v2'\n")
  const restarted = await runCli(t, ['restart', 'Dev/count'], { env: gateway.env })
  assert.equal(restarted.code, 0, restarted.stderr)
  assert.equal(restarted.stdout, 'restarting 2 instances of Dev/count\n')
  await waitFor(async () => {
    const status = await fc.status()
    const instances = status.functions.find(f => f.name === 'Dev/count')?.instances ?? []
    return instances.length > 0 && instances.every(i => i.ready && i.restarts === 1)
  }, 15_000, 'both instances back')
  for (let i = 0; i < 4; i++) assert.equal(await fc.invoke('Dev/count', null, { waitForWorker: 5000 }), 'v2')
  const nobody = await runCli(t, ['restart', 'Dev/other'], { env: gateway.env })
  assert.equal(nobody.code, 1)
  assert.match(nobody.stderr, /^FNBUS_FUNCTION_NOT_FOUND: the gateway supervises no function Dev\/other/)
})
