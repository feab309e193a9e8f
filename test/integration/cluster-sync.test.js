// Sync calls across the gateways of a cluster, with a real nats-server (test/e2e/nats-cluster.js) and gateways in
// this process: where a call goes (its own gateway first, another with room, the queue), exactly one worker per
// call, errors as they are on one gateway, waiting for a worker anywhere, the caller's identity under the worker's
// policy, hostile NATS traffic, and a gateway that starts before NATS. Processes that die: test/e2e/cluster.test.js.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { connect } from '@nats-io/transport-node'
import mqtt from 'mqtt'
import { createGateway } from '../../dist/index.js'
import { natsCluster } from '../e2e/nats-cluster.js'
import { defined, rejection, startGateway, tempDir, waitFor } from '../helpers.js'

/**
 * A single-node NATS and `names.length` gateways on it, each with the options `extra(name)` adds.
 * @param {import('node:test').TestContext} t
 * @param {string[]} names
 * @param {(name: string) => object} [extra]
 */
async function cluster (t, names, extra = () => ({})) {
  const nats = await natsCluster(t, await tempDir(t), { nodes: 1 })
  const gateways = []
  for (const name of names) {
    gateways.push(await startGateway(t, { cluster: { servers: nats.servers, name, ...nats.credentials, heartbeatMs: 200 }, ...extra(name) }))
  }
  return { nats, gateways }
}

/** Waits until `gw` sees `fn` served by the gateways named. */
async function sees (gw, fn, ...peers) {
  await waitFor(() => {
    const members = gw.cluster?.()?.members ?? []
    return peers.every(peer => members.some(m => m.name === peer && m.functions.includes(fn)))
  }, 5000, `${peers.join(', ')} serving ${fn}`)
}

test('a call reaches a worker on another gateway: values, function errors, timeouts, FUNCTION_NOT_FOUND only when no gateway serves', async t => {
  const { gateways: [a, b] } = await cluster(t, ['a', 'b'], name => name === 'a' ? { http: { port: 0 }, plugins: ['metrics'] } : {})
  const a_ = defined(a)
  const b_ = defined(b)
  await b_.serve('S/echo', async (event, context) => ({ at: 'b', event, requestId: context.requestId }))
  await b_.serve('S/fail', async () => { throw new Error('boom') })
  await b_.serve('S/slow', () => new Promise(resolve => setTimeout(() => resolve('late'), 2000)))
  await sees(a_, 'S/echo', 'b')
  await sees(a_, 'S/slow', 'b')

  assert.deepEqual((/** @type {any} */ (await a_.invoke('S/echo', { n: 1 }))).event, { n: 1 })
  assert.equal((/** @type {any} */ (await a_.invoke('S/echo', Buffer.from([1, 2, 3])))).at, 'b')
  const failed = await rejection(a_.invoke('S/fail', null))
  assert.match(failed.message, /boom/)
  assert.equal(failed.handled, false)
  const late = await rejection(a_.invoke('S/slow', null, { timeout: 200 }))
  assert.equal(late.code, 'FNBUS_TIMEOUT')
  assert.equal((await rejection(a_.invoke('S/none', null))).code, 'FNBUS_FUNCTION_NOT_FOUND')
  const status = defined(a_.cluster?.())
  assert.equal(status.state, 'connected')
  const peer = defined(status.members.find(m => m.name === 'b'))
  assert.ok(peer.calls.sent >= 4 && peer.calls.answered >= 3, JSON.stringify(peer.calls))
  assert.equal(defined(b_.cluster?.()).members.find(m => m.name === 'a')?.calls.served, peer.calls.sent)
  // the remote gateway's worker shows in the caller gateway's status, named after its gateway
  const fn = defined((await a_.status()).functions.find(f => f.name === 'S/echo'))
  assert.deepEqual(fn.workers.map(w => w.label), ['gw:b'])
  // and in the metrics
  const metrics = await (await fetch(`${a_.httpUrl}/metrics`)).text()
  assert.match(metrics, /^fnbus_cluster_connected 1$/m)
  assert.match(metrics, /^fnbus_cluster_members 1$/m)
  assert.match(metrics, new RegExp(`^fnbus_cluster_calls_sent_total\\{peer="b"\\} ${peer.calls.sent}$`, 'm'))
  assert.match(metrics, /^fnbus_cluster_call_duration_seconds_count\{peer="b"\} [1-9]\d*$/m)
})

test('own gateway first, another gateway with room next, else the queue; every call runs on exactly one worker', async t => {
  const { gateways: [a, b, c] } = await cluster(t, ['a', 'b', 'c'])
  const runs = { a: 0, b: 0, c: 0 }
  /** @type {(() => void)[]} */
  const held = []
  for (const [name, gw] of /** @type {const} */ ([['a', a], ['b', b], ['c', c]])) {
    await defined(gw).serve('S/work', async (/** @type {any} */ event) => {
      runs[name]++
      if (event === 'hold') await new Promise(resolve => { held.push(() => resolve(undefined)) })
      return name
    }, { concurrency: 1 })
  }
  const a_ = defined(a)
  await sees(a_, 'S/work', 'b', 'c')
  // room on the caller's own gateway: it serves
  for (let i = 0; i < 20; i++) assert.equal(await a_.invoke('S/work', i), 'a')
  // its worker busy: the next goes to another gateway, then the third to the last one with room
  const first = a_.invoke('S/work', 'hold')
  await waitFor(() => held.length === 1)
  const second = a_.invoke('S/work', 'hold')
  await waitFor(() => held.length === 2)
  const third = a_.invoke('S/work', 'hold')
  await waitFor(() => held.length === 3)
  // every worker busy: the fourth waits at the caller's gateway for the first free slot anywhere
  const fourth = a_.invoke('S/work', 'x', { timeout: 5000 })
  await new Promise(resolve => setTimeout(resolve, 100))
  assert.equal(runs.a + runs.b + runs.c, 23)
  for (const release of held.splice(0)) release()
  assert.equal(await first, 'a')
  assert.deepEqual(new Set([await second, await third]), new Set(['b', 'c']))
  assert.ok(['a', 'b', 'c'].includes(/** @type {string} */ (await fourth)))

  // many calls at once: each runs once, somewhere
  runs.a = runs.b = runs.c = 0
  const answers = await Promise.all(Array.from({ length: 300 }, (_, i) => a_.invoke('S/work', i)))
  assert.equal(answers.length, 300)
  assert.equal(runs.a + runs.b + runs.c, 300)
  assert.ok(runs.b > 0 && runs.c > 0, `calls spread over the gateways: ${JSON.stringify(runs)}`)
})

test('waitForWorker waits for a worker on any gateway; a registration there counts here within a second', async t => {
  const { gateways: [a, b] } = await cluster(t, ['a', 'b'])
  const started = performance.now()
  const call = defined(a).invoke('S/later', 'x', { waitForWorker: 5000 })
  setTimeout(() => { void defined(b).serve('S/later', async () => 'served by b') }, 300)
  assert.equal(await call, 'served by b')
  assert.ok(performance.now() - started < 1300, `took ${performance.now() - started} ms`)

  // unregistered there: gone here too
  const served = await defined(b).serve('S/brief', async () => 'b')
  await sees(defined(a), 'S/brief', 'b')
  await served.close()
  await waitFor(async () => (await rejection(defined(a).invoke('S/brief', null))).code === 'FNBUS_FUNCTION_NOT_FOUND', 1000, 'S/brief to be gone')
})

test('a worker\'s gateway that loses its NATS node and reconnects to another at once: the calls it was running fail FNBUS_WORKER_LOST, not at their deadline', async t => {
  const nats = await natsCluster(t, await tempDir(t), { nodes: 3 })
  // heartbeats far apart: the caller's gateway cannot notice a gap of milliseconds by silence
  const options = (/** @type {string} */ name, /** @type {string[]} */ servers) => ({ cluster: { servers, name, ...nats.credentials, heartbeatMs: 5000 } })
  const b = await startGateway(t, options('b', nats.servers))
  await waitFor(() => b.cluster?.()?.state === 'connected', 10_000, 'b to join')
  const bNode = defined(nats.nodes.find(node => node.url === `nats://${b.cluster?.()?.server}`))
  // a on the other nodes: only b loses its node
  const a = await startGateway(t, options('a', nats.nodes.filter(node => node !== bNode).map(node => node.url)))
  await b.serve('S/slow', () => new Promise(resolve => setTimeout(() => resolve('late'), 1500)))
  await sees(a, 'S/slow', 'b')
  assert.equal(await a.invoke('S/slow', null), 'late')

  const running = rejection(a.invoke('S/slow', null, { timeout: 20_000 }))
  await new Promise(resolve => setTimeout(resolve, 300))
  const killedAt = performance.now()
  await bNode.kill()
  // b dropped the call (and its answer) as it lost NATS; its new incarnation tells a so
  const lost = await running
  assert.equal(lost.code, 'FNBUS_WORKER_LOST')
  assert.ok(performance.now() - killedAt < 5000, `failed after ${Math.round(performance.now() - killedAt)} ms`)
  await sees(a, 'S/slow', 'b')
  assert.equal(await a.invoke('S/slow', null), 'late')
})

test('the caller\'s identity travels: the worker\'s gateway applies its own policy to it', async t => {
  const policy = (/** @type {string} */ name) => ({
    policy: name === 'a'
      // a lets everyone invoke anything; b lets only "ops" invoke S/admin
      ? [{ identity: '*', allow: { invoke: ['*/*'] } }]
      : [{ identity: '*', allow: { invoke: ['S/open'], serve: ['*/*'] } }, { identity: 'ops', allow: { invoke: ['S/admin'] } }],
  })
  const { gateways: [a, b] } = await cluster(t, ['a', 'b'], policy)
  await defined(b).serve('S/admin', async () => 'done')
  await defined(b).serve('S/open', async () => 'open')
  await sees(defined(a), 'S/admin', 'b')
  assert.equal(await defined(a).invoke('S/admin', null, { identity: 'ops' }), 'done')
  assert.equal(await defined(a).invoke('S/open', null, { identity: 'guest' }), 'open')
  const refused = await rejection(defined(a).invoke('S/admin', null, { identity: 'guest' }))
  assert.equal(refused.code, 'FNBUS_NOT_AUTHORIZED')
  assert.match(refused.message, /guest may not invoke S\/admin/)
})

test('hostile NATS traffic is dropped and counted; a client without the credentials is refused by the servers', async t => {
  const { nats, gateways: [a, b] } = await cluster(t, ['a', 'b'])
  await defined(b).serve('S/echo', async event => event)
  await sees(defined(a), 'S/echo', 'b')
  const nc = await connect({ servers: nats.servers, ...{ user: nats.credentials.user, pass: nats.credentials.password } })
  t.after(() => nc.close())
  const junk = [Buffer.alloc(0), Buffer.from('not msgpack \xc1'), Buffer.from([0x93, 1, 2, 3]), Buffer.from([0x81, 0xa1, 0x76, 0x01])]
  for (const data of junk) {
    nc.publish('fnbus.dir', data)
    nc.publish('fnbus.gw.a', data, { reply: 'fnbus.gw.b' })
    nc.publish('fnbus.gw.a', data)
  }
  // a result for a call that was never made, from a known peer: ignored
  const { encodeMessage } = await import('../../dist/protocol/index.js')
  nc.publish('fnbus.gw.a', encodeMessage([{ v: 1, t: 'result', id: 77, pk: 1, p: Buffer.from('forged') }]), { reply: 'fnbus.gw.b' })
  // an announcement naming a gateway with thousands of bogus functions and a bad concurrency
  const { pack } = await import('../../dist/protocol/codec.js')
  nc.publish('fnbus.dir', pack({ v: 1, g: 'evil', i: 'x', hb: 1000, f: [['S/echo', 0]] }))
  nc.publish('fnbus.dir', pack({ v: 1, g: 'evil', i: 'x', hb: 1000, f: Array.from({ length: 10_001 }, (_, i) => [`S/f${i}`, 1]) }))
  await nc.flush()
  await waitFor(() => (defined(a).cluster?.()?.dropped ?? 0) >= 10, 5000, 'the drops counted')
  assert.equal(await defined(a).invoke('S/echo', 'still'), 'still')
  assert.deepEqual(defined(a.cluster?.()).members.map(m => m.name), ['b'])

  await assert.rejects(connect({ servers: nats.servers, reconnect: false }), /Authorization/i)
})

test('a gateway whose NATS is not up yet listens anyway, reports itself not ready for the cluster, and joins once it is', async t => {
  const dir = await tempDir(t)
  const nats = await natsCluster(t, dir, { nodes: 1 })
  await nats.nodes[0]?.stop()
  const gw = await createGateway({ port: 0, memory: true, cluster: { servers: nats.servers, name: 'early', ...nats.credentials } })
  t.after(() => gw.close())
  await gw.serve('S/local', async () => 'local')
  assert.equal(await gw.invoke('S/local', null), 'local')
  assert.equal(gw.cluster?.()?.state, 'connecting')
  assert.equal(gw.health().ready, false)
  assert.equal(gw.health().cluster, false)
  await defined(nats.nodes[0]).start()
  await waitFor(() => gw.cluster?.()?.state === 'connected', 15_000, 'the gateway to join')
  assert.equal(gw.health().ready, true)
})

test('the cluster block is checked: servers, names, one way to log in', async t => {
  const bad = [
    [{ servers: [] }, /servers/],
    [{ servers: ['http://x:1'] }, /NATS url/],
    [{ servers: ['nats://127.0.0.1:1'], name: 'a.b' }, /name/],
    [{ servers: ['nats://127.0.0.1:1'], user: 'u', token: 't' }, /one way/],
    [{ servers: ['nats://127.0.0.1:1'], password: 'p' }, /password needs a user/],
    [{ servers: ['nats://127.0.0.1:1'], replicas: 9 }, /replicas/],
    [{ servers: ['nats://127.0.0.1:1'], creds: '/nonexistent/file.creds' }, /cannot read/],
  ]
  for (const [cluster, message] of bad) {
    await assert.rejects(createGateway({ port: 0, memory: true, cluster: /** @type {any} */ (cluster) }), (/** @type {any} */ err) => {
      assert.equal(err.code, 'FNBUS_CONFIG_INVALID')
      assert.match(err.message, /** @type {RegExp} */ (message))
      return true
    }, JSON.stringify(cluster))
  }
})

test('gateways joined by their cluster option carry events both ways, retained messages included, and say so in the status and metrics', async t => {
  const { nats, gateways: [a, b] } = await cluster(t, ['a', 'b'], name => name === 'b' ? { http: { port: 0 }, plugins: ['metrics'] } : {})
  await waitFor(() => a?.cluster?.()?.events?.online === true && b?.cluster?.()?.events?.online === true, 10_000, 'the events online')
  /** @type {[string, string, boolean][]} */
  const atB = []
  await defined(b).subscribe('plant/#', (topic, payload, packet) => { atB.push([topic, payload.toString(), packet.retain]) })
  await new Promise(resolve => setTimeout(resolve, 200))
  await defined(a).publish('plant/line.1/temp', '21.5', { qos: 1 })
  await waitFor(() => atB.length === 1, 5000, 'the event on b')
  assert.deepEqual(atB, [['plant/line.1/temp', '21.5', false]])
  await defined(a).publish('plant/state', 'running', { qos: 1, retain: true })
  await waitFor(() => atB.length === 2, 5000, 'the retained event on b')
  // a gateway that joins later sees the retained message
  const c = await startGateway(t, { cluster: { servers: nats.servers, name: 'c', ...nats.credentials, heartbeatMs: 200 } })
  /** @type {[string, boolean][]} */
  const atC = []
  await waitFor(() => c.cluster?.()?.events?.retained === 'synced', 10_000, 'c to read the retained messages')
  // an MQTT client's subscription gets the retained messages of its broker (an in-process one does not)
  const client = await mqtt.connectAsync(c.url, { reconnectPeriod: 0 })
  t.after(() => client.endAsync())
  client.on('message', (_topic, payload, packet) => { atC.push([payload.toString(), packet.retain]) })
  await client.subscribeAsync('plant/state', { qos: 1 })
  await waitFor(() => atC.length === 1, 5000, 'the retained message on c')
  assert.deepEqual(atC, [['running', true]])
  const events = defined(defined(b?.cluster?.()).events)
  assert.ok(events.imported >= 2, JSON.stringify(events))
  const metrics = await (await fetch(`${defined(b).httpUrl}/metrics`)).text()
  assert.match(metrics, /^fnbus_cluster_events_imported_total [2-9]\d*$/m)
  assert.match(metrics, /^fnbus_cluster_events_exported_total \d+$/m)
})
