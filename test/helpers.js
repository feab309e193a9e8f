// Shared test helpers: real gateways on free ports, real MQTT clients, every resource released in t.after.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createGateway, FCClient } from '../dist/index.js'
/** @import { TestContext } from 'node:test' */
/** @import { FCClientOptions, Gateway, GatewayOptions } from '../dist/index.js' */

/**
 * A fresh temporary directory, removed after the test.
 * @param {TestContext} t
 */
export async function tempDir (t, prefix = 'fnbus-test-') {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/**
 * A gateway on a free loopback port (in memory unless `dataDir` is given), closed after the test.
 * @param {TestContext} t
 * @param {GatewayOptions} [options]
 */
export async function startGateway (t, options = {}) {
  const gw = await createGateway({ port: 0, memory: options.dataDir === undefined, ...options })
  t.after(() => gw.close())
  return gw
}

/**
 * Which transport the SDK's tests run on: its own socket transport by default, MQTT.js with
 * FNBUS_TEST_TRANSPORT=mqtt.js (then every client is given MQTT.js options, which only MQTT.js reads).
 */
export const TEST_TRANSPORT = process.env.FNBUS_TEST_TRANSPORT === 'mqtt.js' ? 'mqtt.js' : 'socket'

/** FCClient options for the transport under test. */
export function sdkOptions (options = {}) {
  return TEST_TRANSPORT === 'mqtt.js' ? { ...options, mqtt: { ...options.mqtt } } : options
}

/**
 * An FCClient connected to `gw`, closed after the test.
 * @param {TestContext} t
 * @param {Gateway} gw
 * @param {FCClientOptions} [options]
 */
export async function connectClient (t, gw, options = {}) {
  const client = new FCClient(sdkOptions({ url: gw.url, ...options }))
  t.after(() => client.close())
  await client.ready()
  return client
}

/**
 * Polls `predicate` until it returns truthy or `timeoutMs` passes.
 * @template T
 * @param {() => T | Promise<T>} predicate
 * @returns {Promise<NonNullable<T>>}
 */
export async function waitFor (predicate, timeoutMs = 5000, what = 'condition') {
  const until = Date.now() + timeoutMs
  for (;;) {
    const value = await predicate()
    if (value) return /** @type {NonNullable<T>} */ (value)
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/**
 * Resolves with the rejection of `promise` (fails if it resolves). What the tests read of it: fnbus rejects with
 * an Error, coded (`FnbusError`) or not; a function's error also says whether its handler handled it.
 * @param {Promise<unknown>} promise
 * @returns {Promise<Thrown>}
 */
export async function rejection (promise) {
  try {
    await promise
  } catch (err) {
    return /** @type {Thrown} */ (err)
  }
  throw new Error('expected a rejection')
}

/**
 * What a validator function given to `assert.throws` or `assert.rejects` reads of the error (node's types hand it
 * over as `unknown`): an Error, coded (`FnbusError`) or not.
 * @typedef {Error & { code?: string, retryable?: boolean, requestId?: unknown, handled?: boolean }} Thrown
 */

/**
 * `value`, which must be there (neither undefined nor null): for what a test finds before it reads it.
 * @template T
 * @param {T} value
 * @param {string} [what]
 * @returns {NonNullable<T>}
 */
export function defined (value, what = 'a value') {
  assert.ok(value !== undefined && value !== null, `expected ${what}, got ${value}`)
  return value
}

/**
 * The port a listening TCP server (net, http, https) is bound to.
 * @param {{ address (): import('node:net').AddressInfo | string | null }} server
 */
export function portOf (server) {
  const address = server.address()
  assert.ok(address !== null && typeof address === 'object', 'a TCP server, listening')
  return address.port
}
