// The configuration's JSON Schema: one statement of the keys and bounds of fnbus.config.json and createGateway,
// published for editors, compiled at build time, and worded as users read errors.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { parseConfig } from '../../dist/config.js'
import { checkFunctionOptions, checkGatewayOptions, describeError } from '../../dist/config/check.js'
import { CONFIG_SCHEMA } from '../../dist/config/schema.js'
import { schemaDigest } from '../../dist/config/validators.js'
import { DEFAULT_LIMITS, FnbusError } from '../../dist/index.js'

/**
 * What these tests read of the configuration's schema, which schema.ts declares only as a JSON object.
 * @typedef {{ properties: Record<string, unknown>, definitions: { limits: { properties: Record<string, { type: string, minimum: number, maximum: number, default?: number }> }, function: { properties: Record<string, unknown> } } }} SchemaShape
 */

const FILE = '/srv/fnbus/fnbus.config.json'
const root = new URL('../../', import.meta.url)
const publishedText = readFileSync(new URL('schema/fnbus.config.schema.json', root), 'utf8')

function fileError (raw) {
  try {
    parseConfig(raw, FILE)
  } catch (err) {
    assert.ok(err instanceof FnbusError, String(err))
    assert.equal(err.code, 'FNBUS_CONFIG_INVALID')
    assert.ok(err.message.startsWith(`${FILE}: `), err.message)
    return err.message.slice(FILE.length + 2)
  }
  assert.fail(`expected a configuration error for ${JSON.stringify(raw)}`)
}

function optionsError (options) {
  try {
    checkGatewayOptions(options)
  } catch (err) {
    assert.ok(err instanceof FnbusError, String(err))
    assert.equal(err.code, 'FNBUS_CONFIG_INVALID')
    return err.message
  }
  assert.fail(`expected an options error for ${JSON.stringify(options)}`)
}

test('the published schema is the one fnbus validates with, and the package exports it', () => {
  assert.deepEqual(JSON.parse(publishedText), CONFIG_SCHEMA)
  // the compiled validators were generated from these very bytes
  assert.equal(createHash('sha256').update(publishedText).digest('hex'), schemaDigest)
  const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'))
  assert.ok(pkg.files.includes('schema'), 'package.json files ships schema/')
  assert.equal(import.meta.resolve('fnbus/schema.json'), new URL('schema/fnbus.config.schema.json', root).href)
  assert.equal(CONFIG_SCHEMA.$schema, 'http://json-schema.org/draft-07/schema#')
})

test('the repository\'s sample configuration names the schema, and "$schema" is accepted and ignored', () => {
  const sample = JSON.parse(readFileSync(new URL('fnbus.config.json', root), 'utf8'))
  assert.equal(new URL(sample.$schema, root).href, new URL('schema/fnbus.config.schema.json', root).href)
  const config = parseConfig({ $schema: 'https://example.com/anything.json', port: 1 }, FILE)
  assert.equal(config.port, 1)
  assert.equal('$schema' in config, false)
  assert.equal(fileError({ $schema: 5 }), '$schema must be a string, got 5')
})

test('every limit is in the schema, with its default inside its range', () => {
  const limits = /** @type {SchemaShape} */ (CONFIG_SCHEMA).definitions.limits.properties
  assert.deepEqual(Object.keys(limits), Object.keys(DEFAULT_LIMITS))
  for (const [key, schema] of Object.entries(limits)) {
    assert.equal(schema.type, 'integer', key)
    if (schema.default === undefined) continue
    assert.equal(schema.default, DEFAULT_LIMITS[key], key)
    assert.ok(schema.default >= schema.minimum && schema.default <= schema.maximum, key)
  }
})

test('an unknown key names the known keys, at every depth', () => {
  assert.equal(fileError({ prot: 1 }),
    'unknown key "prot" (known: port, host, dataDir, memory, fsync, limits, functions, log, http, plugins, routes, policy, identities, allowAnonymous, tls, socket, bridges, cluster)')
  assert.equal(fileError({ functions: [{ service: 'S', function: 'f' }, { service: 'S', function: 'g', modul: './g.js' }] }),
    'functions[1]: unknown key "modul" (known: service, function, module, instances, concurrency, env, timeoutMs, memoryLimitMb, isolation, runtimeHost, async, lambdaName)')
  assert.equal(fileError({ functions: [{ service: 'S', function: 'f', async: { retries: 1 } }] }),
    'functions[0].async: unknown key "retries" (known: maxRetries, maxEventAgeSec, maxStored, retryDelayMs, idempotencyWindowSec, onSuccess, onFailure)')
  assert.equal(fileError({ limits: { maxPayload: 1 } }), `limits: unknown key "maxPayload" (known: ${Object.keys(DEFAULT_LIMITS).join(', ')})`)
  assert.equal(fileError({ tls: { cert: 'c', key: 'k', pass: 'x' } }), 'tls: unknown key "pass" (known: cert, key, ca)')
  // createGateway: the same schema for the same keys, and its own keys known
  assert.equal(optionsError({ limits: { maxPayload: 1 } }), `limits: unknown key "maxPayload" (known: ${Object.keys(DEFAULT_LIMITS).join(', ')})`)
  assert.match(optionsError({ prot: 1 }), /^unknown key "prot" \(known: port, host, dataDir, memory, fsync, limits, http, plugins, policy, identities, allowAnonymous, tls, socket, bridges, cluster, shutdownGraceMs, logPayloads, pluginConfig, logger, store, diskSpace, clientIdStore, clock\)$/)
  // a key with a JSON Pointer's special characters is named as written
  assert.match(fileError({ 'a/b~c': 1 }), /^unknown key "a\/b~c"/)
})

test('a wrong type or a value out of range names the key path and what was given', () => {
  const cases = [
    [{ port: '1883' }, 'port must be an integer between 0 and 65535, got "1883"'],
    [{ port: 65536 }, 'port must be an integer between 0 and 65535, got 65536'],
    [{ fsync: 1 }, 'fsync must be true or false, got 1'],
    [{ limits: { maxQueuedCalls: -1 } }, 'limits.maxQueuedCalls must be an integer ≥ 0, got -1'],
    [{ limits: { maxTopicLevels: 101 } }, 'limits.maxTopicLevels must be an integer between 1 and 100, got 101'],
    [{ limits: { maxPayloadBytes: 2 ** 60 } }, 'limits.maxPayloadBytes must be an integer between 1 and 9007199254740991, got 1152921504606847000'],
    [{ limits: { connectTimeoutMs: 1.5 } }, 'limits.connectTimeoutMs must be an integer between 1 and 2147483647, got 1.5'],
    [{ functions: [{ service: 'S', function: 'f' }, { service: 'S', function: 'g', instances: 1025 }] }, 'functions[1].instances must be an integer between 1 and 1024, got 1025'],
    [{ functions: [{ service: 'S', function: 'f', async: { maxRetries: 101 } }] }, 'functions[0].async.maxRetries must be an integer between 0 and 100, got 101'],
    [{ functions: [{ service: 'S', function: 'f', async: { onSuccess: '' } }] }, 'functions[0].async.onSuccess must be a non-empty string, got ""'],
    [{ functions: [{ service: '__proto__', function: 'f' }] }, 'functions[0].service must not be one of __proto__, constructor, prototype, got "__proto__"'],
    [{ functions: [{ service: 'S', function: 'f', env: { A: 'ok', B: null } }] }, 'functions[0].env.B must be a string, got null'],
    [{ log: { format: 'xml' } }, 'log.format must be one of json, pretty, got "xml"'],
    [{ http: { port: 0, auth: 'digest' } }, 'http.auth must be "basic" (operators sign in as identities), got "digest"'],
    [{ tls: { cert: 'c' } }, 'tls: "key" is required'],
  ]
  for (const [raw, message] of cases) assert.equal(fileError(raw), message, JSON.stringify(raw))
  // the same bounds and words for createGateway's options
  assert.equal(optionsError({ limits: { maxTopicLevels: 101 } }), 'limits.maxTopicLevels must be an integer between 1 and 100, got 101')
  assert.equal(optionsError({ shutdownGraceMs: -1 }), 'shutdownGraceMs must be an integer between 0 and 2147483647, got -1')
  assert.equal(optionsError({ http: { port: 0, auth: 'digest' } }), 'http.auth must be "basic" (operators sign in as identities), got "digest"')
  assert.equal(optionsError({ tls: { cert: 'PEM' } }), 'tls: "key" is required')
  assert.equal(optionsError(null), 'the options must be an object, got null')
})

test('setFunctionOptions has the bounds of functions[] in the file', () => {
  const refused = (options) => {
    try {
      checkFunctionOptions(options, 'S/f')
    } catch (err) {
      assert.ok(err instanceof FnbusError, String(err))
      assert.equal(err.code, 'FNBUS_INVALID_ARGUMENT')
      return err.message
    }
    assert.fail('expected an error')
  }
  assert.equal(refused({ async: { maxRetries: 101 } }), 'S/f: async.maxRetries must be an integer between 0 and 100, got 101')
  assert.equal(refused({ lambdaName: '9lives' }), 'S/f: lambdaName must be letters, digits, - and _, starting with a letter (at most 64), got "9lives"')
  assert.equal(refused({ timeoutMs: 0 }), 'S/f: timeoutMs must be an integer between 1 and 2147483647, got 0')
  assert.equal(refused({ concurrency: 4 }), 'S/f: unknown key "concurrency" (known: timeoutMs, lambdaName, async)')
  checkFunctionOptions({ timeoutMs: 5, async: { maxRetries: 100, onSuccess: 'done' }, lambdaName: 'f' }, 'S/f')
})

test('a hostile value is shown short, and one JSON cannot write by its type', () => {
  const cyclic = {}
  cyclic.self = cyclic
  const error = value => ({ instancePath: '/port', keyword: 'type', params: { type: 'integer' }, parentSchema: { type: 'integer', minimum: 0, maximum: 65535 }, data: value })
  assert.equal(describeError(error(cyclic), 'the options'), 'port must be an integer between 0 and 65535, got [Object]')
  assert.equal(describeError(error(10n), 'the options'), 'port must be an integer between 0 and 65535, got [bigint]')
  assert.equal(describeError(error(Object.create(null)), 'the options'), 'port must be an integer between 0 and 65535, got {}')
  const long = describeError(error('x'.repeat(10_000)), 'the options')
  assert.ok(long.length < 200 && long.endsWith('…'), long)
  assert.equal(optionsError({ port: 1n }), 'port must be an integer between 0 and 65535, got [bigint]')
})

test('requiring fnbus loads no ajv: the validators are compiled code', () => {
  // a loader hook that fails any import from ajv's package; the second run proves it would notice one
  const hooks = 'export async function load (url, context, next) { if (url.includes("/node_modules/ajv/")) throw new Error("ajv loaded: " + url); return next(url, context) }'
  const register = `import { register } from 'node:module'; register(${JSON.stringify('data:text/javascript,' + encodeURIComponent(hooks))})`
  const run = code => spawnSync(process.execPath, ['--import', 'data:text/javascript,' + encodeURIComponent(register), '--input-type=module', '-e', code], { cwd: new URL('.', root), encoding: 'utf8' })
  const fnbus = run("const m = await import('./dist/index.js'); await m.createGateway({ port: 0, memory: true, prot: 1 }).catch(err => { if (err.code !== 'FNBUS_CONFIG_INVALID') throw err })")
  assert.equal(fnbus.status, 0, fnbus.stderr)
  const control = run("await import('ajv')")
  assert.notEqual(control.status, 0)
  assert.match(control.stderr, /ajv loaded/)
})
