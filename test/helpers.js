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

/** An FCClient connected to `gw`, closed after the test. */
export async function connectClient (t, gw, options = {}) {
  const client = new FCClient({ url: gw.url, ...options })
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
