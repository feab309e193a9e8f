import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { lstat, readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import test from 'node:test'
import { Aedes } from 'aedes'
import mqtt from 'mqtt'
import { Level } from 'level'
import { attachFunctionBus, createGateway, FCClient } from '../../dist/index.js'
import { hashSecret } from '../../dist/security/credentials.js'
import { connectClient, portOf, rejection, sdkOptions, startGateway, tempDir, waitFor } from '../helpers.js'

test('with a data directory, aedes keeps persistent sessions in the shared LevelDB across restarts', async t => {
  const dataDir = await tempDir(t)
  let gw = await createGateway({ port: 0, dataDir })
  const port = gw.port
  const subscriber = await mqtt.connectAsync(gw.url, { clientId: 'durable-sub', clean: false, reconnectPeriod: 0 })
  await subscriber.subscribeAsync('alerts/#', { qos: 1 })
  await subscriber.endAsync()
  const publisher = await connectClient(t, gw)
  await publisher.publish('alerts/fire', 'evacuate', { qos: 1 })
  await publisher.close()
  await gw.close()

  gw = await createGateway({ port, dataDir })
  t.after(() => gw.close())
  const back = await mqtt.connectAsync(gw.url, { clientId: 'durable-sub', clean: false, reconnectPeriod: 0, manualConnect: false })
  t.after(() => back.endAsync())
  const received = []
  back.on('message', (topic, payload) => received.push([topic, payload.toString()]))
  await waitFor(() => received.length === 1, 3000, 'the queued message')
  assert.deepEqual(received, [['alerts/fire', 'evacuate']])
})

test('a second gateway on the same data directory fails clearly and leaves the first running', async t => {
  const dataDir = await tempDir(t)
  const first = await startGateway(t, { dataDir })
  await first.serve('Svc/alive', async () => 'yes')
  const err = await rejection(createGateway({ port: 0, dataDir }))
  assert.equal(err.code, 'FNBUS_DATA_DIR_LOCKED')
  assert.match(err.message, /in use by another fnbus gateway/)
  const client = await connectClient(t, first)
  assert.equal(await client.invoke('Svc/alive'), 'yes')
})

test('a data directory written by a newer store format is refused with a clear message', async t => {
  const dataDir = await tempDir(t)
  const db = new Level(dataDir)
  await db.sublevel('meta').put('format', '999')
  await db.close()
  const err = await rejection(createGateway({ port: 0, dataDir }))
  assert.equal(err.code, 'FNBUS_STORE_FAILURE')
  assert.match(err.message, /format 999/)
})

test('a port already in use is refused with FNBUS_ADDRESS_IN_USE', async t => {
  const first = await startGateway(t)
  const err = await rejection(createGateway({ port: first.port, memory: true }))
  assert.equal(err.code, 'FNBUS_ADDRESS_IN_USE')
})

test('a Unix socket: clients connect with mqtt+unix://, identities apply there too, and the file is removed at close', async t => {
  const dir = await tempDir(t)
  const path = join(dir, 'gw.sock')
  const gw = await createGateway({ port: 0, memory: true, socket: path, identities: { alice: { hash: await hashSecret('alice-secret') } } })
  let closed = false
  t.after(() => closed ? undefined : gw.close())
  assert.equal(gw.socketUrl, `mqtt+unix://${path}`)
  assert.ok((await lstat(path)).isSocket())
  await gw.serve('Svc/echo', async event => `echo ${event}`)
  const client = new FCClient(sdkOptions({ url: gw.socketUrl, username: 'alice', password: 'alice-secret' }))
  t.after(() => client.close())
  assert.equal(await client.invoke('Svc/echo', 'over the socket'), 'echo over the socket')
  const stranger = new FCClient(sdkOptions({ url: gw.socketUrl, username: 'alice', password: 'guess' }))
  t.after(() => stranger.close())
  assert.equal((await rejection(stranger.ready())).code, 'FNBUS_NOT_AUTHORIZED')

  // another gateway cannot take a socket in use, and the first goes on serving
  const second = await rejection(createGateway({ port: 0, memory: true, socket: path }))
  assert.equal(second.code, 'FNBUS_ADDRESS_IN_USE')
  assert.equal(await client.invoke('Svc/echo', 'still'), 'echo still')
  await client.close()
  await gw.close()
  closed = true
  await assert.rejects(lstat(path), { code: 'ENOENT' })
})

test('a Unix socket file left by a gateway that died is replaced; a file that is not a socket is refused and left alone', async t => {
  const dir = await tempDir(t)
  const path = join(dir, 'gw.sock')
  // a process that listens on the socket and is killed leaves the file behind
  const child = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`])
  await new Promise(resolve => child.stdout.once('data', resolve))
  child.kill('SIGKILL')
  await once(child, 'exit')
  assert.ok((await lstat(path)).isSocket(), 'the dead listener left its socket file')
  const gw = await createGateway({ port: 0, memory: true, socket: path })
  t.after(() => gw.close())
  await gw.serve('Svc/echo', async event => event)
  const client = new FCClient(sdkOptions({ url: gw.socketUrl }))
  t.after(() => client.close())
  assert.equal(await client.invoke('Svc/echo', 'hi'), 'hi')

  const notASocket = join(dir, 'notes.txt')
  await writeFile(notASocket, 'keep me')
  const err = await rejection(createGateway({ port: 0, memory: true, socket: notASocket }))
  assert.equal(err.code, 'FNBUS_CONFIG_INVALID')
  assert.match(err.message, /exists and is not a socket/)
  assert.equal(await readFile(notASocket, 'utf8'), 'keep me')
})

test('invalid options are refused, naming the option', async () => {
  await assert.rejects(createGateway({ port: 0, memory: true, limits: /** @type {any} */ ({ maxPayload: 5 }) }), { code: 'FNBUS_CONFIG_INVALID', message: /^limits: unknown key "maxPayload" \(known: maxPayloadBytes, / })
  await assert.rejects(createGateway({ port: 0, memory: true, limits: { maxQueuedCalls: -1 } }), { code: 'FNBUS_CONFIG_INVALID', message: /limits.maxQueuedCalls/ })
  await assert.rejects(createGateway({ port: 70000, memory: true }), { code: 'FNBUS_CONFIG_INVALID', message: /port/ })
  // a misspelt option is an error, as a misspelt key of the configuration file is, not a silent default
  // @ts-expect-error a misspelt option, on purpose
  await assert.rejects(createGateway({ prot: 0, memory: true }), { code: 'FNBUS_CONFIG_INVALID', message: /^unknown key "prot" \(known: port, host, / })
})

test("attachFunctionBus on the application's own aedes keeps the hooks it set", async t => {
  const published = []
  const aedes = await Aedes.createBroker({
    authorizePublish (client, packet, callback) {
      published.push(packet.topic)
      callback(null)
    },
    authorizeSubscribe (client, subscription, callback) {
      callback(null, subscription.topic.startsWith('secret/') ? null : subscription)
    },
  })
  const bus = attachFunctionBus(aedes)
  const server = createServer(bus.handle)
  await new Promise(resolve => server.listen(0, '127.0.0.1', () => resolve(undefined)))
  t.after(async () => {
    await bus.close()
    await new Promise(resolve => aedes.close(() => resolve(undefined)))
    await new Promise(resolve => server.close(() => resolve(undefined)))
  })
  const url = `mqtt://127.0.0.1:${portOf(server)}`

  await bus.serve('Host/fn', async event => `host answers ${event}`)
  const client = new FCClient(sdkOptions({ url }))
  t.after(() => client.close())
  assert.equal(await client.invoke('Host/fn', 'q'), 'host answers q')
  await client.publish('ordinary/topic', 'x')
  await waitFor(() => published.includes('ordinary/topic'), 2000, 'the host hook to see the event')
  assert.ok(!published.some(topic => topic.startsWith('$fn/')), "bus traffic does not reach the host's hook")
  await assert.rejects(client.subscribe('secret/#', () => {}), { code: 'FNBUS_NOT_AUTHORIZED' })
  await client.subscribe('open/#', () => {})
})
