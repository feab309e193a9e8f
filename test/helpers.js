// Shared test helpers: real gateways on free ports, real MQTT clients, every resource released in t.after.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createGateway, FCClient } from '../dist/index.js'

/** A fresh temporary directory, removed after the test. */
export async function tempDir (t, prefix = 'fnbus-test-') {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** A gateway on a free loopback port (in memory unless `dataDir` is given), closed after the test. */
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

/** An FCClient connected to `gw`, closed after the test. */
export async function connectClient (t, gw, options = {}) {
  const client = new FCClient(sdkOptions({ url: gw.url, ...options }))
  t.after(() => client.close())
  await client.ready()
  return client
}

/** Polls `predicate` until it returns truthy or `timeoutMs` passes. */
export async function waitFor (predicate, timeoutMs = 5000, what = 'condition') {
  const until = Date.now() + timeoutMs
  for (;;) {
    const value = await predicate()
    if (value) return value
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** Resolves with the rejection of `promise` (fails if it resolves). */
export async function rejection (promise) {
  try {
    await promise
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}
