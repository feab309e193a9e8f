// Workers and callers that disappear, gateways that restart: every call ends with a code, promptly.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import test from 'node:test'
import { createGateway, FCClient } from '../../dist/index.js'
import { connectClient, defined, rejection, sdkOptions, startGateway, waitFor } from '../helpers.js'

const hangingWorker = fileURLToPath(new URL('../fixtures/hanging-worker.js', import.meta.url))

function spawnWorker (t, gw) {
  const child = spawn(process.execPath, [hangingWorker], { env: { ...process.env, FNBUS_URL: gw.url }, stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => child.kill('SIGKILL'))
  let out = ''
  child.stdout.on('data', chunk => { out += chunk })
  return { child, said: text => waitFor(() => out.includes(text), 10_000, `worker to say ${text}`) }
}

test('a worker process killed mid-call: the caller gets FNBUS_WORKER_LOST promptly, not at the timeout', async t => {
  const gw = await startGateway(t)
  const worker = spawnWorker(t, gw)
  await worker.said('serving')
  const caller = await connectClient(t, gw)
  const call = caller.invoke('Svc/hang', 'x', { timeout: 30_000 })
  await worker.said('started')
  const killedAt = Date.now()
  worker.child.kill('SIGKILL')
  const err = await rejection(call)
  assert.equal(err.code, 'FNBUS_WORKER_LOST')
  assert.ok(Date.now() - killedAt < 5000, 'well before the 30 s timeout')
})

test('a worker that disconnects mid-call: FNBUS_WORKER_LOST', async t => {
  const gw = await startGateway(t)
  const worker = new FCClient(sdkOptions({ url: gw.url, reconnectPeriod: 0 }))
  let started
  const running = new Promise(resolve => { started = resolve })
  await worker.serve('Svc/stuck', () => { started(); return new Promise(() => {}) })
  const caller = await connectClient(t, gw)
  const call = caller.invoke('Svc/stuck', 'x', { timeout: 30_000 })
  await running
  defined(gw.aedes.clients[worker.clientId]).conn.destroy()
  assert.equal((await rejection(call)).code, 'FNBUS_WORKER_LOST')
  await worker.close()
})

test('the caller loses its connection: calls in flight fail FNBUS_DISCONNECTED, and the client reconnects by itself', async t => {
  const gw = await startGateway(t)
  /** @type {((value?: unknown) => void) | undefined} */
  let release
  await gw.serve('Svc/slow', () => new Promise(resolve => { release = resolve }))
  await gw.serve('Svc/fast', async () => 'fast')
  const caller = await connectClient(t, gw, { reconnectPeriod: 50 })
  const call = caller.invoke('Svc/slow', 'x', { timeout: 30_000 })
  await waitFor(() => release !== undefined, 2000, 'the call to start')
  defined(gw.aedes.clients[caller.clientId]).conn.destroy()
  assert.equal((await rejection(call)).code, 'FNBUS_DISCONNECTED')
  defined(release)('too late')
  // it reconnects without help and works again
  assert.equal(await caller.invoke('Svc/fast', 'y', { timeout: 5000 }), 'fast')
})

test('across a gateway restart: calls made while disconnected wait, and a serving client registers again by itself', async t => {
  let gw = await createGateway({ port: 0, memory: true })
  const port = gw.port
  t.after(() => gw.close())
  const worker = await connectClient(t, gw, { reconnectPeriod: 50 })
  await worker.serve('Svc/survivor', async event => `survived ${event}`)
  const caller = await connectClient(t, gw, { reconnectPeriod: 50 })
  assert.equal(await caller.invoke('Svc/survivor', 1), 'survived 1')

  await gw.close()
  await waitFor(() => !caller.connected && !worker.connected, 5000, 'both clients to notice')
  // made while the gateway is down; waits for the reconnection within its deadline
  const pending = caller.invoke('Svc/survivor', 2, { timeout: 10_000, waitForWorker: 5000 })
  await new Promise(resolve => setTimeout(resolve, 200))
  gw = await createGateway({ port, memory: true })
  assert.equal(await pending, 'survived 2')
})

test('a call made while disconnected fails FNBUS_TIMEOUT at its deadline if no connection comes', async t => {
  const gw = await startGateway(t)
  const url = gw.url
  await gw.close()
  const caller = new FCClient(sdkOptions({ url, reconnectPeriod: 50 }))
  t.after(() => caller.close())
  caller.on('warning', () => {}) // connection refused, over and over
  const started = Date.now()
  const err = await rejection(caller.invoke('Svc/any', 'x', { timeout: 300 }))
  assert.equal(err.code, 'FNBUS_TIMEOUT')
  assert.ok(Date.now() - started < 3000)
})

test('closing the gateway: calls in flight finish within the grace, later ones fail FNBUS_SHUTTING_DOWN', async t => {
  const gw = await createGateway({ port: 0, memory: true, shutdownGraceMs: 2000 })
  t.after(() => gw.close())
  await gw.serve('Svc/finishing', async () => {
    await new Promise(resolve => setTimeout(resolve, 200))
    return 'finished'
  })
  const finishing = gw.invoke('Svc/finishing')
  await new Promise(resolve => setTimeout(resolve, 20))
  const closed = gw.close()
  assert.equal((await rejection(gw.invoke('Svc/finishing'))).code, 'FNBUS_SHUTTING_DOWN')
  assert.equal(await finishing, 'finished')
  await closed
})

test('closing the gateway: a call still running after the grace fails FNBUS_SHUTTING_DOWN', async t => {
  const gw = await createGateway({ port: 0, memory: true, shutdownGraceMs: 50 })
  t.after(() => gw.close())
  await gw.serve('Svc/forever', () => new Promise(() => {}))
  const caller = new FCClient(sdkOptions({ url: gw.url, reconnectPeriod: 0 }))
  t.after(() => caller.close())
  await caller.ready()
  const failed = rejection(caller.invoke('Svc/forever', 'x', { timeout: 30_000 }))
  await waitFor(() => gw.stats().inFlight === 1, 2000, 'the call to run')
  await gw.close()
  assert.equal((await failed).code, 'FNBUS_SHUTTING_DOWN')
})

test('closing a client fails its waiting calls with FNBUS_CLIENT_CLOSED', async t => {
  const gw = await startGateway(t)
  const url = gw.url
  await gw.close()
  const caller = new FCClient(sdkOptions({ url, reconnectPeriod: 50 }))
  caller.on('warning', () => {})
  const call = caller.invoke('Svc/any', 'x', { timeout: 30_000 })
  await caller.close()
  assert.equal((await rejection(call)).code, 'FNBUS_CLIENT_CLOSED')
  assert.equal((await rejection(caller.invoke('Svc/any'))).code, 'FNBUS_CLIENT_CLOSED')
})
