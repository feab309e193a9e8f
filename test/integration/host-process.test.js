// Thread functions in a host process of their own (`runtimeHost`): a real host process, real Workers in it, a real
// gateway reached over its socket. A thread that breaks restarts alone; the host dying takes only its threads.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import test from 'node:test'
import { fileURLToPath } from 'node:url'
import { connectClient, defined, startGateway, waitFor } from '../helpers.js'
import { supervise } from '../supervise.js'
/** @typedef {import('../../dist/runtime/runner.js').SupervisedFunction} SupervisedFunction */

const FIXTURES = fileURLToPath(new URL('../fixtures/threads', import.meta.url))

/** @returns {SupervisedFunction} */
function fn (name, module, runtimeHost) {
  return { service: 'Host', function: name, name: `Host/${name}`, module: join(FIXTURES, module), instances: 1, concurrency: 4, env: {}, memoryLimitMb: undefined, isolation: 'thread', runtimeHost }
}

test('thread functions naming a runtimeHost run in a process of their own, restart alone, and come back when the host dies', async t => {
  const gw = await startGateway(t)
  const functions = [fn('relay', 'relay.cjs', 'h1'), fn('fragile', 'hostile.cjs', 'h1'), fn('home', 'hostile.cjs', undefined)]
  const { supervisor, output } = await supervise(t, gw, functions)
  const client = await connectClient(t, gw)
  const instance = name => defined(supervisor.instances().find(i => i.label === `Host/${name}#1`), name)

  const hostPid = defined(instance('relay').pid, 'the host pid')
  assert.notEqual(hostPid, process.pid, 'not the gateway\'s process')
  assert.equal(instance('fragile').pid, hostPid, 'the functions of one host share its process')
  assert.equal(instance('home').pid, process.pid, 'a thread without runtimeHost runs in the gateway\'s process')
  assert.deepEqual([instance('relay').host, instance('home').host], ['h1', undefined], 'the status names the host')
  assert.ok(['relay', 'fragile'].every(name => instance(name).isolation === 'thread' && instance(name).threadId !== undefined))
  // the thread's own FCClient reaches the gateway through its host, as its function's identity
  assert.equal(await client.invoke('Host/relay', { op: 'invoke', fn: 'Host/home', payload: 'through the host' }), 'through the host')
  const identity = /** @type {any} */ (await client.invoke('Host/relay', { op: 'identity' }))
  assert.deepEqual([identity.username, identity.pid], ['Host/relay', hostPid])

  // a thread that exits ends alone: its host and its neighbour stay
  await assert.rejects(client.invoke('Host/fragile', 'exit', { timeout: 5000 }), { code: 'FNBUS_WORKER_LOST' })
  await waitFor(() => instance('fragile').ready && instance('fragile').restarts === 1, 10_000, 'Host/fragile restarted')
  assert.equal(instance('fragile').pid, hostPid)
  assert.equal(instance('relay').restarts, 0)
  assert.equal(await client.invoke('Host/fragile', 'back'), 'back')

  // the host process dies: its threads restart in a new one; the gateway's own thread is untouched
  process.kill(hostPid, 'SIGKILL')
  await waitFor(() => instance('relay').ready && instance('relay').restarts === 1 && instance('fragile').restarts === 2, 15_000, 'both restarted in a new host')
  assert.notEqual(instance('relay').pid, hostPid)
  assert.equal(instance('relay').pid, instance('fragile').pid)
  assert.match(output(), /Host\/relay#1 its host process "h1" was killed by SIGKILL/, 'the log says why')
  assert.equal(instance('home').restarts, 0)
  assert.equal(await client.invoke('Host/relay', { op: 'invoke', fn: 'Host/fragile', payload: 'again' }), 'again')
})
