// What `import 'fnbus'` and `require('fnbus')` load: the SDK, not the gateway. Each is loaded in a child process
// that records every module it resolves (test/fixtures/load-trace), and its RSS is reported.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Aedes } from 'aedes'
import { attachFunctionBus, createGateway, FunctionBus } from '../../dist/index.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const TRACE = fileURLToPath(new URL('../fixtures/load-trace/register.mjs', import.meta.url))

/** Packages only the gateway (or a plugin) needs, and MQTT.js, which only WebSocket clients and `mqtt` options need. */
export const GATEWAY_PACKAGES = ['aedes', 'aedes-persistence-level', 'level', 'classic-level', 'pino', 'prom-client', 'ws', 'mqtt']
/** The gateway's own modules, under dist/, and the configuration's validators (~180 KB: only the gateway checks a configuration). */
const GATEWAY_MODULES = /\/dist\/(gateway\.js|gateway\/|broker\/|store\/|http\/server\.js|dispatcher\/(?!tally\.js)|config\/validators\.js)/

/** Runs `code` in a child with the load trace; resolves with what it loaded, its RSS and how long it ran. */
export async function traceLoads (t, code, { type = 'module', env = {} } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'fnbus-load-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const out = join(dir, 'trace.json')
  await promisify(execFile)(process.execPath, ['--import', TRACE, `--input-type=${type}`, '-e', code], {
    cwd: ROOT, env: { ...process.env, ...env, LOAD_TRACE_OUT: out },
  })
  const trace = JSON.parse(await readFile(out, 'utf8'))
  return { ...trace, packages: new Set(trace.loaded.flatMap(url => [...url.matchAll(/node_modules\/((?:@[^/]+\/)?[^/]+)/g)].map(match => match[1]))) }
}

function assertLean (trace, what, sdkModule = '/dist/client/fc-client.js') {
  const packages = GATEWAY_PACKAGES.filter(name => trace.packages.has(name))
  assert.deepEqual(packages, [], `${what} loaded ${packages.join(', ')}`)
  const modules = trace.loaded.filter(url => GATEWAY_MODULES.test(url))
  assert.deepEqual(modules, [], `${what} loaded the gateway's modules`)
  // the SDK itself is there: the trace sees what it should
  assert.ok(trace.loaded.some(url => url.includes(sdkModule)), `${what}: the trace did not see ${sdkModule} load`)
}

test("import 'fnbus' loads the SDK, not the gateway", async t => {
  const trace = await traceLoads(t, "await import('fnbus')")
  assertLean(trace, "import 'fnbus'")
  t.diagnostic(`import('fnbus'): RSS ${(trace.rss / 2 ** 20).toFixed(1)} MiB, ${trace.ms.toFixed(0)} ms, ${trace.loaded.length} modules`)
})

test("require('fnbus') loads the SDK, not the gateway, and every public name is there", async t => {
  const names = Object.keys(await import('../../dist/index.js')).sort()
  const trace = await traceLoads(t, `const fnbus = require('fnbus'); require('node:assert').deepEqual(Object.keys(fnbus).sort(), ${JSON.stringify(names)})`, { type: 'commonjs' })
  // Node 20 runs no resolve hook inside a require(esm) graph: what it shows are the CommonJS modules (the entry, and
  // every package above but msgpackr and nanoid is CommonJS); the ES modules are the same graph as import's, above
  assertLean(trace, "require('fnbus')", '/cjs/index.cjs')
  t.diagnostic(`require('fnbus'): RSS ${(trace.rss / 2 ** 20).toFixed(1)} MiB, ${trace.ms.toFixed(0)} ms, ${trace.loaded.length} modules`)
})

test('createGateway loads the gateway when first called', async t => {
  const trace = await traceLoads(t, "const { createGateway } = await import('fnbus'); const gw = await createGateway({ port: 0, memory: true }); await gw.close()")
  assert.ok(trace.packages.has('aedes'))
  assert.ok(trace.loaded.some(url => url.endsWith('/dist/gateway.js')))
})

test('FunctionBus stands in for the class: new, instanceof, subclasses, statics', async t => {
  const aedes = await Aedes.createBroker()
  t.after(() => new Promise(resolve => aedes.close(() => resolve(undefined))))
  const attached = attachFunctionBus(aedes)
  t.after(() => attached.close())
  assert.ok(attached instanceof FunctionBus)
  assert.equal(typeof attached.serve, 'function')
  assert.equal(Object.getPrototypeOf(attached), FunctionBus.prototype)
  assert.ok(!({} instanceof FunctionBus))
  // @ts-expect-error called without new, on purpose: as a class, it must throw
  assert.throws(() => FunctionBus(aedes), TypeError)

  const second = await Aedes.createBroker()
  t.after(() => new Promise(resolve => second.close(() => resolve(undefined))))
  class Tagged extends FunctionBus {
    tag () { return 'tagged' }
  }
  const sub = new Tagged(second)
  t.after(() => sub.close())
  assert.ok(sub instanceof Tagged)
  assert.ok(sub instanceof FunctionBus)
  assert.equal(sub.tag(), 'tagged')
  assert.equal(sub.aedes, second)
  assert.equal(typeof createGateway, 'function')
})

test('a client on mqtt: uses the socket transport and never loads MQTT.js; MQTT.js options or a ws: url load it', async t => {
  const call = options => `const { createGateway, FCClient } = await import('fnbus')
    const gw = await createGateway({ port: 0, memory: true })
    const worker = new FCClient({ url: gw.url, ...${options} })
    const caller = new FCClient({ url: gw.url, ...${options} })
    await worker.serve('Entry/echo', x => x)
    if (await caller.invoke('Entry/echo', 'hi') !== 'hi') process.exit(3)
    await Promise.all([worker.close(), caller.close()])
    await gw.close()`
  const socket = await traceLoads(t, call('{}'))
  assert.ok(!socket.packages.has('mqtt'), 'MQTT.js loaded for an mqtt: url')
  assert.ok(socket.loaded.some(url => url.endsWith('/dist/client/socket-transport.js')))
  const mqttjs = await traceLoads(t, call('{ mqtt: {} }'))
  assert.ok(mqttjs.packages.has('mqtt'), 'MQTT.js options did not load MQTT.js')
  const ws = await traceLoads(t, "const { FCClient } = await import('fnbus'); const c = new FCClient({ url: 'ws://127.0.0.1:9/mqtt', reconnectPeriod: 0 }); c.on('warning', () => {}); await c.close()")
  assert.ok(ws.packages.has('mqtt'), 'a ws: url did not load MQTT.js')
})
