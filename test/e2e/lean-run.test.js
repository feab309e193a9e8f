// What the process of a supervised function (`fnbus run`) loads: the SDK and the one command, not the gateway, its
// store, its logger (pino) or its metrics; and the other commands load only their own module.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import test from 'node:test'
import { fileURLToPath } from 'node:url'
import { FCClient } from '../../dist/index.js'
import { startGateway, tempDir } from '../helpers.js'
import { ROOT, spawnCli } from './cli.js'
import { join } from 'node:path'

const TRACE = fileURLToPath(new URL('../fixtures/load-trace/register.mjs', import.meta.url))
const HEAVY_PACKAGES = ['aedes', 'aedes-persistence-level', 'level', 'classic-level', 'pino', 'prom-client', 'ws', 'mqtt', 'msgpackr-extract']
const GATEWAY_MODULES = /\/dist\/(gateway\.js|gateway\/|broker\/|store\/|http\/|dispatcher\/|logging\.js|config\.js|plugins\.js)/

/**
 * Runs `fnbus ARGS…` with the load trace; `during(cli)` runs while it does. Resolves with what it loaded.
 * @param {import('node:test').TestContext} t
 * @param {string[]} args
 * @param {(cli: ReturnType<typeof spawnCli>) => Promise<void>} [during]
 */
async function traced (t, args, during = async () => {}) {
  const out = join(await tempDir(t), 'trace.json')
  const cli = spawnCli(t, args, { env: { NODE_OPTIONS: `--import=${TRACE}`, LOAD_TRACE_OUT: out } })
  await during(cli)
  await cli.exited
  const trace = JSON.parse(await readFile(out, 'utf8'))
  const packages = new Set(trace.loaded.flatMap(url => [...url.matchAll(/node_modules\/((?:@[^/]+\/)?[^/]+)/g)].map(match => match[1])))
  const commands = trace.loaded.filter(url => url.includes('/dist/cli/commands/')).map(url => url.replace(/.*\/commands\//, ''))
  return { ...trace, packages, commands }
}

test('fnbus run serves its function with the SDK alone, as one bundled module: no gateway modules, no pino, no MQTT.js, no native msgpack', async t => {
  const gw = await startGateway(t)
  const trace = await traced(t, ['run', join(ROOT, 'examples/helloworld.cjs'), '--service', 'Lean', '--function', 'hello', '--url', gw.url, '--log-level', 'warn'], async cli => {
    const caller = new FCClient({ url: gw.url })
    t.after(() => caller.close())
    assert.match(String(await caller.invoke('Lean/hello', 'hi', { waitForWorker: 10_000 })), /Message from helloworld/)
    cli.child.kill('SIGTERM')
  })
  assert.deepEqual(HEAVY_PACKAGES.filter(name => trace.packages.has(name)), [])
  assert.deepEqual(trace.loaded.filter(url => GATEWAY_MODULES.test(url)), [])
  // the command alone, bundled into one module (scripts/build-runtime.js, which refuses to bundle the gateway's code)
  assert.deepEqual(trace.loaded.filter(url => url.includes('/dist/')).map(url => url.replace(/.*\/dist\//, '')), ['run.js'])
  t.diagnostic(`fnbus run: RSS ${(trace.rss / 2 ** 20).toFixed(1)} MiB at exit (with the load trace's own thread), ${trace.loaded.length} modules`)
})

test('fnbus --version and fnbus status --help load no other command', async t => {
  assert.deepEqual((await traced(t, ['--version'])).commands, [])
  const status = await traced(t, ['status', '--help'])
  assert.deepEqual(status.commands, ['status.js'])
  assert.ok(!status.packages.has('aedes'))
})
