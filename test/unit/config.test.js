// fnbus.config.json: validated once at start, every error naming the file and the key.
import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { loadConfig, parseConfig } from '../../dist/config.js'
import { DEFAULT_LIMITS } from '../../dist/index.js'
import { tempDir } from '../helpers.js'
/** @import { Thrown } from '../helpers.js' */

const FILE = '/etc/fnbus/fnbus.config.json'

function configError (raw) {
  try {
    parseConfig(raw, FILE)
  } catch (err) {
    assert.equal(/** @type {Thrown} */ (err).code, 'FNBUS_CONFIG_INVALID')
    return /** @type {Thrown} */ (err).message
  }
  assert.fail('expected a configuration error')
}

test('a full configuration: defaults filled in, paths relative to the file', () => {
  const config = parseConfig({
    port: 1884,
    host: '0.0.0.0',
    dataDir: './data',
    socket: './run/fnbus.sock',
    memory: false,
    fsync: true,
    limits: { maxPayloadBytes: 65536 },
    functions: [
      {
        service: 'EdgeFC', function: 'helloworld', module: './examples/helloworld.cjs', instances: 2, concurrency: 4, env: { A: 'b' }, timeoutMs: 5000, memoryLimitMb: 128, lambdaName: 'helloworld', isolation: 'thread', runtimeHost: 'edge-1',
        async: { maxRetries: 5, maxEventAgeSec: 60, maxStored: 10, retryDelayMs: 100, idempotencyWindowSec: 600, onSuccess: 'ok/topic', onFailure: 'failed/topic' },
      },
      { service: 'EdgeFC', function: 'outside' },
    ],
  }, FILE)
  assert.equal(config.file, FILE)
  assert.equal(config.port, 1884)
  assert.equal(config.host, '0.0.0.0')
  assert.equal(config.dataDir, '/etc/fnbus/data')
  assert.equal(config.socket, '/etc/fnbus/run/fnbus.sock')
  assert.equal(config.memory, false)
  assert.equal(config.fsync, true)
  assert.deepEqual(config.limits, { maxPayloadBytes: 65536 })
  assert.deepEqual(config.functions[0], {
    service: 'EdgeFC', function: 'helloworld', name: 'EdgeFC/helloworld', module: '/etc/fnbus/examples/helloworld.cjs',
    instances: 2, concurrency: 4, env: { A: 'b' }, timeoutMs: 5000, lambdaName: 'helloworld', memoryLimitMb: 128, isolation: 'thread', runtimeHost: 'edge-1',
    async: { maxRetries: 5, maxEventAgeSec: 60, maxStored: 10, retryDelayMs: 100, idempotencyWindowSec: 600, onSuccess: 'ok/topic', onFailure: 'failed/topic' },
  })
  assert.deepEqual(config.functions[1], {
    service: 'EdgeFC', function: 'outside', name: 'EdgeFC/outside', module: undefined,
    instances: 1, concurrency: 8, env: {}, timeoutMs: undefined, lambdaName: undefined, memoryLimitMb: undefined, isolation: undefined, runtimeHost: undefined, async: undefined,
  })
  assert.ok(Object.isFrozen(config))
})

test('unknown keys are errors that name the key and the file', () => {
  assert.equal(configError({ prot: 1 }), `${FILE}: unknown key "prot" (known: port, host, dataDir, memory, fsync, limits, functions, log, http, plugins, routes, policy, identities, allowAnonymous, tls, socket, bridges, cluster)`)
  assert.equal(configError({ functions: [{ service: 'S', function: 'f', async: { retries: 1 } }] }),
    `${FILE}: functions[0].async: unknown key "retries" (known: maxRetries, maxEventAgeSec, maxStored, retryDelayMs, idempotencyWindowSec, onSuccess, onFailure)`)
  assert.match(configError({ functions: [{ service: 'S', function: 'f', modul: 'x' }] }), /^\/etc\/fnbus\/fnbus\.config\.json: functions\[0\]: unknown key "modul"/)
  // limits name the known ones too, as every other block does
  assert.equal(configError({ limits: { maxPayload: 1 } }), `${FILE}: limits: unknown key "maxPayload" (known: ${Object.keys(DEFAULT_LIMITS).join(', ')})`)
})

test('http: a port (0 for a free one) and an optional host; plugins: built-in names to objects', () => {
  const config = parseConfig({ http: { port: 8080, host: '0.0.0.0' }, plugins: { metrics: {}, dashboard: { historySeconds: 60 } } }, FILE)
  assert.deepEqual(config.http, { port: 8080, host: '0.0.0.0', auth: undefined })
  assert.deepEqual(parseConfig({ http: { port: 8080, auth: 'basic' } }, FILE).http, { port: 8080, host: undefined, auth: 'basic' })
  assert.equal(configError({ http: { port: 1, auth: 'token' } }), `${FILE}: http.auth must be "basic" (operators sign in as identities), got "token"`)
  assert.deepEqual(config.plugins, { metrics: {}, dashboard: { historySeconds: 60 } })
  assert.equal(parseConfig({}, FILE).http, undefined)
  assert.equal(configError({ http: { host: '127.0.0.1' } }), `${FILE}: http: "port" is required`)
  assert.equal(configError({ http: { port: 70000 } }), `${FILE}: http.port must be an integer between 0 and 65535, got 70000`)
  assert.equal(configError({ http: { port: 1, tls: true } }), `${FILE}: http: unknown key "tls" (known: port, host, auth, allowedHosts)`)
  assert.deepEqual(parseConfig({ http: { port: 1, allowedHosts: ['gw.example.com', '.plant.example'] } }, FILE).http?.allowedHosts, ['gw.example.com', '.plant.example'])
  assert.equal(configError({ http: { port: 1, allowedHosts: 'gw.example.com' } }),
    `${FILE}: http.allowedHosts must be an array of host names, such as ["gateway.example.com", ".plant.example"], got "gw.example.com"`)
  assert.equal(configError({ http: { port: 1, allowedHosts: ['gw.example.com:8080'] } }),
    `${FILE}: http.allowedHosts: "gw.example.com:8080" is not a host name (no scheme, no port; ".example.com" allows a domain and every name under it)`)
  assert.equal(configError({ plugins: ['metrics'] }), `${FILE}: plugins must be an object of built-in plugin names to their configuration, such as { "metrics": {} }, got ["metrics"]`)
  assert.equal(configError({ plugins: { prometheus: {} } }), `${FILE}: plugins: unknown key "prometheus" (known: metrics, dashboard, routes, websocket)`)
  assert.equal(configError({ plugins: { metrics: true } }), `${FILE}: plugins.metrics must be an object (its configuration; {} for the defaults), got true`)
})

test('wrong types and values name their key', () => {
  const cases = [
    [[], 'the configuration must be a JSON object, got []'],
    [{ port: 70000 }, 'port must be an integer between 0 and 65535, got 70000'],
    [{ port: '1883' }, 'port must be an integer between 0 and 65535, got "1883"'],
    [{ host: '' }, 'host must be a non-empty string, got ""'],
    [{ memory: 'yes' }, 'memory must be true or false, got "yes"'],
    [{ limits: 5 }, 'limits must be an object, got 5'],
    [{ limits: { maxPayloadBytes: 0 } }, 'limits.maxPayloadBytes must be an integer ≥ 1, got 0'],
    [{ functions: {} }, 'functions must be an array, got {}'],
    [{ functions: ['x'] }, 'functions[0] must be an object, got "x"'],
    [{ functions: [{ function: 'f' }] }, 'functions[0]: "service" is required'],
    [{ functions: [{ service: 'S', function: 'no/slash' }] }, 'functions[0].function must match [a-zA-Z][\\w-]{0,127}, got "no/slash"'],
    [{ functions: [{ service: 'S', function: 'f', instances: 0 }] }, 'functions[0].instances must be an integer between 1 and 1024, got 0'],
    [{ functions: [{ service: 'S', function: 'f', concurrency: 1.5 }] }, 'functions[0].concurrency must be an integer ≥ 1, got 1.5'],
    // a function's concurrency and timeout are bounded by the gateway's limits, which the same file may change
    [{ functions: [{ service: 'S', function: 'f', concurrency: 2000 }] }, 'functions[0].concurrency must be an integer between 1 and 1024 (limits.maxConcurrency), got 2000'],
    [{ functions: [{ service: 'S', function: 'f', env: { PORT: 80 } }] }, 'functions[0].env.PORT must be a string, got 80'],
    [{ functions: [{ service: 'S', function: 'f', timeoutMs: 0 }] }, 'functions[0].timeoutMs must be an integer between 1 and 2147483647, got 0'],
    [{ functions: [{ service: 'S', function: 'f', timeoutMs: 900001 }] }, 'functions[0].timeoutMs must be an integer between 1 and 900000 (limits.maxTimeoutMs), got 900001'],
    [{ limits: { maxTimeoutMs: 1000 }, functions: [{ service: 'S', function: 'f', timeoutMs: 2000 }] }, 'functions[0].timeoutMs must be an integer between 1 and 1000 (limits.maxTimeoutMs), got 2000'],
    [{ limits: { maxConcurrency: 4096 }, functions: [{ service: 'S', function: 'f', concurrency: 5000 }] }, 'functions[0].concurrency must be an integer between 1 and 4096 (limits.maxConcurrency), got 5000'],
    [{ functions: [{ service: 'S', function: 'f', async: { maxRetries: -1 } }] }, 'functions[0].async.maxRetries must be an integer between 0 and 100, got -1'],
    [{ functions: [{ service: 'S', function: 'f', async: { onFailure: 'dead/#' } }] }, 'functions[0].async.onFailure: topic "dead/#" must not contain wildcards'],
    [{ functions: [{ service: 'S', function: 'f', memoryLimitMb: 1 }] }, 'functions[0].memoryLimitMb must be an integer between 16 and 1048576, got 1'],
    [{ functions: [{ service: 'S', function: 'f', isolation: 'isolate' }] }, 'functions[0].isolation must be "process" or "thread", got "isolate"'],
    [{ functions: [{ service: 'S', function: 'f', isolation: 'thread' }] }, 'functions[0]: isolation says how the gateway runs the function\'s module, and it has no "module"'],
    [{ functions: [{ service: 'S', function: 'f', module: 'f.js', runtimeHost: 'h' }] }, 'functions[0]: runtimeHost names a process that hosts thread functions; it needs "isolation": "thread"'],
    [{ functions: [{ service: 'S', function: 'f', module: 'f.js', isolation: 'thread', runtimeHost: 'a b' }] }, 'functions[0].runtimeHost must be letters, digits, - and _ (at most 64), such as "untrusted", got "a b"'],
    [{ functions: [{ service: 'S', function: 'f', module: 3 }] }, 'functions[0].module must be a non-empty string, got 3'],
    [{ functions: [{ service: 'S', function: 'f' }, { service: 'S', function: 'f' }] }, 'functions[1]: S/f is listed twice'],
  ]
  for (const [raw, message] of cases) assert.equal(configError(raw), `${FILE}: ${message}`)
})

test('loadConfig: fnbus.config.json of the working directory when present, nothing when absent', async t => {
  const dir = await tempDir(t)
  assert.deepEqual(loadConfig(undefined, dir).functions, [])
  assert.equal(loadConfig(undefined, dir).file, undefined)
  await writeFile(join(dir, 'fnbus.config.json'), '{ "port": 1999 }')
  assert.equal(loadConfig(undefined, dir).port, 1999)
  assert.equal(loadConfig(undefined, dir).file, join(dir, 'fnbus.config.json'))
})

test('loadConfig: --config must exist; paths are relative to that file; bad JSON names the file', async t => {
  const dir = await tempDir(t)
  await mkdir(join(dir, 'etc'))
  await writeFile(join(dir, 'etc', 'gw.json'), '{ "dataDir": "../state", "functions": [{ "service": "S", "function": "f", "module": "f.js" }] }')
  const config = loadConfig('etc/gw.json', dir)
  assert.equal(config.dataDir, join(dir, 'state'))
  assert.equal(config.functions[0].module, join(dir, 'etc', 'f.js'))

  assert.throws(() => loadConfig('missing.json', dir), (/** @type {Thrown} */ err) => err.code === 'FNBUS_CONFIG_INVALID' && err.message.startsWith(`${join(dir, 'missing.json')}: cannot read`))
  await writeFile(join(dir, 'bad.json'), '{ "port": 1, }')
  assert.throws(() => loadConfig('bad.json', dir), (/** @type {Thrown} */ err) => err.message.startsWith(`${join(dir, 'bad.json')}: not valid JSON`))
})

test('the repository ships a valid fnbus.config.json supervising the seed samples', () => {
  const root = new URL('../..', import.meta.url).pathname
  const config = loadConfig(undefined, root)
  assert.deepEqual(config.functions.map(f => [f.name, f.module]), [
    ['EdgeFC/helloworld', join(root, 'examples/helloworld.cjs')],
    ['EdgeFC/invoker', join(root, 'examples/invoker.cjs')],
  ])
  assert.equal(config.port, 1883)
  assert.equal(config.dataDir, join(root, 'data'))
})
