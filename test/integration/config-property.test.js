// The configuration file and createGateway agree, since one schema validates both: random settings the file accepts
// start a real gateway, and those it refuses are refused by createGateway with the same code and words. Random
// junk is refused with FNBUS_CONFIG_INVALID, never a crash.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { parseConfig } from '../../dist/config.js'
import { CONFIG_SCHEMA } from '../../dist/config/schema.js'
import { createGateway, FnbusError } from '../../dist/index.js'
/** @import { Thrown } from '../helpers.js' */

/**
 * What these tests read of the configuration's schema, which schema.ts declares only as a JSON object.
 * @typedef {{ properties: Record<string, unknown>, definitions: { limits: { properties: Record<string, { type: string, minimum: number, maximum: number, default?: number }> }, function: { properties: Record<string, unknown> } } }} SchemaShape
 */

const FILE = '/srv/fnbus/fnbus.config.json'
const SCHEMA = /** @type {SchemaShape} */ (CONFIG_SCHEMA)
const LIMITS = SCHEMA.definitions.limits.properties

/** Not an integer in any range: what a hand-written file or a JavaScript caller may give. */
const notAnInteger = fc.oneof(fc.double({ noInteger: true }), fc.string({ maxLength: 8 }), fc.boolean(), fc.constant(null), fc.constant([]))
const notABoolean = fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.constant(null))

/** Mostly valid values of a limit, sometimes just outside its range, sometimes not a number. */
function limitValue ({ minimum, maximum }) {
  return fc.oneof(
    { weight: 12, arbitrary: fc.integer({ min: minimum, max: Math.min(maximum, 2 ** 40) }) },
    { weight: 1, arbitrary: fc.constantFrom(minimum - 1, ...maximum < Number.MAX_SAFE_INTEGER ? [maximum + 1] : []) },
    { weight: 1, arbitrary: notAnInteger }
  )
}

/** A few limits at a time: random valid ones also break the rules between limits (a frame smaller than a payload). */
const someLimits = fc.uniqueArray(fc.constantFrom(...Object.keys(LIMITS)), { maxLength: 3 }).chain(keys =>
  fc.tuple(...keys.map(key => limitValue(LIMITS[key]))).map(values => Object.fromEntries(keys.map((key, i) => [key, values[i]]))))
const limitsArb = fc.oneof(
  { weight: 10, arbitrary: someLimits },
  { weight: 1, arbitrary: fc.constantFrom(5, [], 'big', { maxPayload: 1 }) }
)

const httpArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom({ port: 0 }, { port: 0, host: '127.0.0.1' }, { port: 0, auth: 'basic' }) },
  { weight: 1, arbitrary: fc.constantFrom({}, { port: -1 }, { port: 0, auth: 'digest' }, { port: 0, tls: true }, { port: 0, host: '' }, 'http', null) }
)

const mostly = (valid, invalid) => fc.oneof({ weight: 8, arbitrary: valid }, { weight: 1, arbitrary: invalid })

/** The keys the file and createGateway share (port 0 or wrong: a random valid port could be taken). */
const settingsArb = fc.record({
  port: mostly(fc.constant(0), fc.oneof(fc.constantFrom(-1, 65536, 1.5), notAnInteger)),
  host: mostly(fc.constant('127.0.0.1'), fc.constantFrom('', 5, null)),
  fsync: mostly(fc.boolean(), notABoolean),
  limits: limitsArb,
  http: httpArb,
  allowAnonymous: mostly(fc.boolean(), notABoolean),
  colour: fc.constant('blue'),
}, { requiredKeys: [] }).map(({ colour, ...settings }) => colour !== undefined && Object.keys(settings).length % 4 === 0 ? { ...settings, colour } : settings)

/**
 * What `run` resolves with, or what it throws.
 * @template T
 * @param {() => T | Promise<T>} run
 * @returns {Promise<{ value?: T, err?: Thrown }>}
 */
async function outcome (run) {
  try {
    return { value: await run() }
  } catch (err) {
    return { err: /** @type {Thrown} */ (err) }
  }
}

test('settings the file accepts start a gateway; settings it refuses, createGateway refuses with the same message', async () => {
  let accepted = 0
  let refused = 0
  await fc.assert(fc.asyncProperty(settingsArb, async settings => {
    const file = await outcome(() => parseConfig({ memory: true, ...settings }, FILE))
    // random settings, some wrong on purpose: in place of GatewayOptions
    const gateway = await outcome(() => createGateway(/** @type {any} */ ({ port: 0, memory: true, ...settings })))
    await gateway.value?.close()
    if (file.err === undefined) {
      accepted++
      assert.equal(gateway.err, undefined, `the file accepts ${JSON.stringify(settings)}, createGateway says ${gateway.err?.message}`)
      return
    }
    refused++
    assert.ok(file.err instanceof FnbusError, file.err.stack)
    assert.equal(file.err.code, 'FNBUS_CONFIG_INVALID')
    assert.ok(gateway.err instanceof FnbusError, `the file refuses ${JSON.stringify(settings)} (${file.err.message}), createGateway ${gateway.err?.stack ?? 'starts'}`)
    assert.equal(gateway.err.code, 'FNBUS_CONFIG_INVALID')
    // the file names itself, and createGateway knows keys of its own (logger, http.authorize, …): everything else is
    // worded the same
    const known = message => message.replace(/ \(known: [^)]*\)$/, ' (known: …)')
    assert.equal(known(file.err.message), `${FILE}: ${known(gateway.err.message)}`)
  }), { numRuns: 150 })
  // both sides of the property were exercised
  assert.ok(accepted >= 10 && refused >= 10, `accepted ${accepted}, refused ${refused}`)
})

function assertRefusedOrAccepted (run) {
  try {
    run()
  } catch (err) {
    // any other error fails the property as itself
    if (!(err instanceof FnbusError)) throw err
    assert.equal(err.code, 'FNBUS_CONFIG_INVALID', err.message)
    assert.ok(err.message.length < 2000, 'a message of bounded length')
  }
}

const KEYS = [...Object.keys(SCHEMA.properties), 'modul']
/** Objects with the file's keys and random JSON under them, so that the checks below the top are reached too. */
const keyedJunk = fc.dictionary(fc.constantFrom(...KEYS), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 })
const functionsJunk = fc.record({ functions: fc.array(fc.dictionary(fc.constantFrom(...Object.keys(SCHEMA.definitions.function.properties), 'x'), fc.jsonValue({ maxDepth: 2 })), { maxLength: 3 }) })

test('any JSON as the file is accepted or refused with FNBUS_CONFIG_INVALID, never another error', () => {
  fc.assert(fc.property(fc.oneof(fc.jsonValue(), keyedJunk, functionsJunk), raw => {
    assertRefusedOrAccepted(() => parseConfig(raw, FILE))
  }), { numRuns: 3000 })
})

test('any value as createGateway\'s options or one of them is refused with FNBUS_CONFIG_INVALID, or starts a gateway', async () => {
  // undefined is no junk: it is the defaults, port 1883 included
  const optionsJunk = fc.oneof(
    fc.anything({ maxDepth: 2 }).filter(value => value !== undefined),
    fc.dictionary(fc.constantFrom('port', 'host', 'limits', 'http', 'fsync', 'allowAnonymous', 'shutdownGraceMs', 'logPayloads', 'tls', 'plugins', 'pluginConfig', 'prot'), fc.anything({ maxDepth: 2, withBigInt: true }), { maxKeys: 4 })
  )
  await fc.assert(fc.asyncProperty(optionsJunk, async junk => {
    // on loopback, in memory, with no file of its own (dataDir, socket): whatever else it is given
    // any value in place of GatewayOptions, junk on purpose
    /** @type {any} */
    const options = typeof junk === 'object' && junk !== null && !Array.isArray(junk) ? { ...junk, port: 0, host: '127.0.0.1', memory: true } : junk
    if (typeof options === 'object' && options !== null) {
      delete options.dataDir
      delete options.socket
      delete options.identities
    }
    const gateway = await outcome(() => createGateway(options))
    await gateway.value?.close()
    if (gateway.err !== undefined) {
      assert.ok(gateway.err instanceof FnbusError, gateway.err.stack)
      assert.equal(gateway.err.code, 'FNBUS_CONFIG_INVALID', gateway.err.message)
    }
  }), { numRuns: 300 })
})
