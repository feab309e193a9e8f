// The cluster's events (src/cluster/events.ts, retained.ts) between real gateways on a real nats-server: messages
// cross once each way at QoS 0 and 1, with their topics intact, never in loops, never from `$fn/` or `$SYS`; retained
// messages reach gateways that start later; what a hostile NATS client sends is dropped and counted. Wired by hand, one
// NATS connection per gateway, as the cluster's own setup will. A lone nats-server with JetStream serves each test
// (a 3-node cluster takes ~5 s to elect a leader, which no test here needs).
import assert from 'node:assert/strict'
import test from 'node:test'
import { connect, headers } from '@nats-io/transport-node'
import mqtt from 'mqtt'
import { ClusterEvents } from '../../dist/cluster/events.js'
import { natsCluster } from '../e2e/nats-cluster.js'
import { connectClient, startGateway, tempDir, waitFor } from '../helpers.js'

const PREFIX = 'fnbus'

/** A logger that keeps what it is given. */
function memoryLogger () {
  /** @type {{ level: string, obj: any, msg?: string }[]} */
  const entries = []
  const at = level => (obj, msg) => { entries.push({ level, obj, msg }) }
  return { entries, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}

/**
 * A NATS connection with the gateways' credentials (or other ones), closed after the test.
 * @param {import('node:test').TestContext} t
 * @param {Awaited<ReturnType<typeof natsCluster>>} nats
 */
async function natsClient (t, nats, name) {
  const { user, password } = /** @type {{ user: string, password: string }} */ (nats.credentials)
  // reconnecting by itself, as the cluster's connection does
  const nc = await connect({ servers: nats.servers, user, pass: password, noEcho: true, name, reconnectTimeWait: 100, maxReconnectAttempts: -1 })
  t.after(() => nc.close())
  return nc
}

/**
 * A gateway with its cluster events on `nats`; `gatewayOptions` go to createGateway.
 * @param {import('node:test').TestContext} t
 * @param {Awaited<ReturnType<typeof natsCluster>>} nats
 * @param {string} name
 * @param {import('../../dist/index.js').GatewayOptions} [gatewayOptions]
 */
async function clusteredGateway (t, nats, name, gatewayOptions = {}) {
  const gw = await startGateway(t, gatewayOptions)
  const nc = await natsClient(t, nats, name)
  const logger = memoryLogger()
  const events = await ClusterEvents.start({ nc, prefix: PREFIX, gateway: name, aedes: gw.aedes, bus: gw.bus, logger, replicas: 1 })
  t.after(() => events.close())
  // the subscription is at the server before anyone publishes, and the retained stream has been read
  await nc.flush()
  await waitFor(() => events.status().retained === 'synced', 10_000, `${name}'s retained messages in sync`)
  return { gw, nc, events, logger }
}

/**
 * A plain MQTT.js client of `gw`, with what it receives.
 * @param {import('node:test').TestContext} t
 * @param {{ url: string }} gw
 */
async function mqttClient (t, gw) {
  const client = await mqtt.connectAsync(gw.url, { reconnectPeriod: 0 })
  t.after(() => client.endAsync())
  /** @type {{ topic: string, payload: string, qos: number, retain: boolean }[]} */
  const received = []
  client.on('message', (topic, payload, packet) => received.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain }))
  return { client, received }
}

/** Lets what is on its way arrive, so that a count checked after it would see a duplicate. */
const settle = (ms = 300) => new Promise(resolve => setTimeout(resolve, ms))

async function startNats (t) {
  return natsCluster(t, await tempDir(t, 'fnbus-cluster-events-'), { nodes: 1 })
}

test('QoS 0 and 1 cross gateways exactly once to each subscriber, wildcards included', async t => {
  const nats = await startNats(t)
  const a = await clusteredGateway(t, nats, 'gw-a')
  const b = await clusteredGateway(t, nats, 'gw-b')
  // one client per filter: aedes gives a client one copy of a message however many of its filters match
  const plus = await mqttClient(t, b.gw)
  await plus.client.subscribeAsync('sensors/+/temp', { qos: 1 })
  const hash = await mqttClient(t, b.gw)
  await hash.client.subscribeAsync('#', { qos: 1 })
  const exact = await mqttClient(t, b.gw)
  await exact.client.subscribeAsync('sensors/1/temp', { qos: 0 })
  const near = await mqttClient(t, a.gw)
  await near.client.subscribeAsync('sensors/#', { qos: 1 })
  const pub = await mqttClient(t, a.gw)
  const n = 40
  // QoS 0 and QoS 1 interleaved, from two publishers at once
  const second = await mqttClient(t, a.gw)
  await Promise.all([
    (async () => { for (let i = 0; i < n; i++) await pub.client.publishAsync(`sensors/${i % 4}/temp`, `q0-${i}`, { qos: 0 }) })(),
    (async () => { for (let i = 0; i < n; i++) await second.client.publishAsync(`sensors/${i % 4}/temp`, `q1-${i}`, { qos: 1 }) })(),
  ])
  await waitFor(() => plus.received.length >= 2 * n && hash.received.length >= 2 * n && exact.received.length >= 2 * n / 4, 5000, 'every message on the far gateway')
  await waitFor(() => near.received.length >= 2 * n, 5000, 'every message on the near gateway')
  await settle()
  for (const [name, sub, count] of /** @type {const} */ ([['+', plus, 2 * n], ['#', hash, 2 * n], ['exact', exact, 2 * n / 4], ['near', near, 2 * n]])) {
    assert.equal(sub.received.length, count, `${name}: each message once`)
    assert.equal(new Set(sub.received.map(m => m.payload)).size, count, `${name}: no duplicate`)
  }
  assert.ok(exact.received.every(m => m.topic === 'sensors/1/temp' && m.qos === 0))
  // the QoS travels: a QoS 1 message reaches a QoS 1 subscription at QoS 1, a QoS 0 one at 0
  for (const m of plus.received) assert.equal(m.qos, m.payload.startsWith('q1-') ? 1 : 0, m.payload)
  // in order, per publisher
  const order = prefix => hash.received.filter(m => m.payload.startsWith(prefix)).map(m => Number(m.payload.slice(3)))
  assert.deepEqual(order('q0-'), [...Array(n).keys()])
  assert.deepEqual(order('q1-'), [...Array(n).keys()])
  assert.equal(a.events.status().exported, 2 * n)
  assert.equal(b.events.status().imported, 2 * n)
  assert.equal(a.events.status().imported, 0, 'nothing echoed back')
  assert.equal(a.events.status().dropped + b.events.status().dropped, 0)
})

test('topics with characters NATS reserves, empty levels and UTF-8 cross intact; subjects are escaped', async t => {
  const nats = await startNats(t)
  const a = await clusteredGateway(t, nats, 'gw-a')
  const b = await clusteredGateway(t, nats, 'gw-b')
  const spy = await natsClient(t, nats, 'spy')
  /** @type {string[]} */
  const subjects = []
  spy.subscribe(`${PREFIX}.>`, { callback: (_err, msg) => { subjects.push(msg.subject) } })
  await spy.flush()
  const far = await mqttClient(t, b.gw)
  await far.client.subscribeAsync('#', { qos: 1 })
  const topics = [
    'a.b/c', 'x/*/y', 'x/>/y', 'x/a*b>c', 'with space/ok', '/leading', 'trailing/', 'a//b', '//', 'pct/%/%25/%2E',
    'température/°C', 'emoji/😀', 'unicode space/\u00a0/\u2028', 'question?/no', 'dollar/$x',
  ]
  const pub = await mqttClient(t, a.gw)
  for (const [i, topic] of topics.entries()) await pub.client.publishAsync(topic, `payload ${i} é😀`, { qos: 1 })
  await waitFor(() => far.received.length >= topics.length, 5000, 'every topic on the far gateway')
  await settle()
  const got = new Map(far.received.map(m => [m.topic, m.payload]))
  for (const [i, topic] of topics.entries()) assert.equal(got.get(topic), `payload ${i} é😀`, topic)
  assert.equal(got.size, topics.length)
  await waitFor(() => subjects.length >= topics.length, 2000, 'the spy saw them')
  for (const subject of ['fnbus.ev.a%2Eb.c', 'fnbus.ev.x.%2A.y', 'fnbus.ev.x.%3E.y', 'fnbus.ev.with%20space.ok', 'fnbus.ev.%.leading', 'fnbus.ev.a.%.b', 'fnbus.ev.%.%.%', 'fnbus.ev.%.leading', 'fnbus.ev.pct.%25.%2525.%252E', 'fnbus.ev.température.°C']) {
    assert.ok(subjects.includes(subject), `${subject} in ${subjects.join(' ')}`)
  }
})

test('$fn/ and $SYS traffic never reaches NATS', async t => {
  const nats = await startNats(t)
  const a = await clusteredGateway(t, nats, 'gw-a')
  const spy = await natsClient(t, nats, 'spy')
  /** @type {string[]} */
  const subjects = []
  spy.subscribe(`${PREFIX}.>`, { callback: (_err, msg) => { subjects.push(msg.subject) } })
  spy.subscribe('>', { callback: (_err, msg) => { if (msg.subject.includes('$fn') || msg.subject.includes('%24')) subjects.push(msg.subject) } })
  await spy.flush()
  // a Sync call, an Async one and an event through the SDK: $fn/ frames both ways
  const worker = await connectClient(t, a.gw)
  await worker.serve('Cluster/echo', (event, _context, callback) => callback(null, event))
  const caller = await connectClient(t, a.gw)
  assert.deepEqual(await caller.invokeFunction({ serviceName: 'Cluster', functionName: 'echo', payload: 'hi' }), { statusCode: 200, payload: 'hi' })
  await caller.invokeFunction({ serviceName: 'Cluster', functionName: 'echo', payload: 'later', invocationType: 'Async' })
  // $SYS is the broker's own (a client publishing there is cut): published as aedes publishes its heartbeat
  await new Promise(resolve => a.gw.aedes.publish({ cmd: 'publish', topic: '$SYS/fake/heartbeat', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, resolve))
  await new Promise(resolve => a.gw.aedes.publish({ cmd: 'publish', topic: '$SYS/fake/state', payload: Buffer.from('x'), qos: 1, retain: true, dup: false }, resolve))
  const plain = await mqttClient(t, a.gw)
  await plain.client.publishAsync('$fn/up/forged', 'x', { qos: 1 })
  await plain.client.publishAsync('$other/x', 'x', { qos: 0 })
  await plain.client.publishAsync('marker/done', 'x', { qos: 1 })
  await waitFor(() => subjects.includes('fnbus.ev.marker.done'), 5000, 'the marker on NATS')
  await settle()
  assert.deepEqual(subjects, ['fnbus.ev.marker.done'])
  assert.equal(a.events.status().exported, 1)
})

test('three gateways: each message reaches the others once, and never comes back (no loops)', async t => {
  const nats = await startNats(t)
  const gateways = [
    await clusteredGateway(t, nats, 'gw-a'), await clusteredGateway(t, nats, 'gw-b'), await clusteredGateway(t, nats, 'gw-c'),
  ]
  const subscribers = []
  for (const g of gateways) {
    const sub = await mqttClient(t, g.gw)
    await sub.client.subscribeAsync('loop/#', { qos: 1 })
    subscribers.push(sub)
  }
  const n = 20
  await Promise.all(gateways.map(async (g, j) => {
    const pub = await mqttClient(t, g.gw)
    for (let i = 0; i < n; i++) await pub.client.publishAsync(`loop/${j}`, `${j}-${i}`, { qos: i % 2 === 0 ? 0 : 1 })
  }))
  await waitFor(() => subscribers.every(s => s.received.length >= 3 * n), 5000, 'every message on every gateway')
  await settle(500)
  for (const [j, s] of subscribers.entries()) {
    assert.equal(s.received.length, 3 * n, `gateway ${j}: each message once`)
    assert.equal(new Set(s.received.map(m => m.payload)).size, 3 * n)
  }
  for (const g of gateways) {
    assert.equal(g.events.status().exported, n, `${g.events.status().gateway} sent only its own`)
    assert.equal(g.events.status().imported, 2 * n)
  }
})

test('retained messages reach a gateway started later; a clear propagates', async t => {
  const nats = await startNats(t)
  const a = await clusteredGateway(t, nats, 'gw-a')
  const pub = await mqttClient(t, a.gw)
  await pub.client.publishAsync('state/door', 'open', { qos: 1, retain: true })
  await pub.client.publishAsync('state/window', 'shut', { qos: 0, retain: true })
  await pub.client.publishAsync('state/odd level.name', 'x y', { qos: 1, retain: true })
  await waitFor(() => a.events.status().retainedStored === 3, 5000, 'three retained messages in the stream')

  const b = await clusteredGateway(t, nats, 'gw-b')
  assert.equal(b.events.status().retainedApplied, 3)
  const late = await mqttClient(t, b.gw)
  await late.client.subscribeAsync('state/+', { qos: 1 })
  await waitFor(() => late.received.length >= 3, 5000, 'the retained messages on the later gateway')
  assert.deepEqual(late.received.map(m => [m.topic, m.payload, m.retain]).sort(), [
    ['state/door', 'open', true], ['state/odd level.name', 'x y', true], ['state/window', 'shut', true],
  ])
  // what a catch-up published here is not sent back out
  assert.equal(b.events.status().exported, 0)

  // a clear (an empty retained payload) on A: B drops it live, and a gateway started after it never sees the door
  await pub.client.publishAsync('state/door', '', { qos: 1, retain: true })
  await waitFor(() => a.events.status().retainedStored === 4, 5000, 'the clear in the stream')
  await waitFor(() => late.received.some(m => m.topic === 'state/door' && m.payload === ''), 5000, 'the clear on B')
  const after = await mqttClient(t, b.gw)
  await after.client.subscribeAsync('state/+', { qos: 1 })
  await waitFor(() => after.received.length >= 2, 5000, 'the retained messages left on B')
  await settle()
  assert.deepEqual(after.received.map(m => m.topic).sort(), ['state/odd level.name', 'state/window'])

  const c = await clusteredGateway(t, nats, 'gw-c')
  assert.equal(c.events.status().retainedApplied, 2, 'the cleared topic is not published')
  const third = await mqttClient(t, c.gw)
  await third.client.subscribeAsync('state/+', { qos: 1 })
  await waitFor(() => third.received.length >= 2, 5000, 'the retained messages on C')
  await settle()
  assert.deepEqual(third.received.map(m => m.topic).sort(), ['state/odd level.name', 'state/window'])
})

test('hostile NATS messages are dropped and counted, a flood is bounded, and the gateway keeps serving', async t => {
  const nats = await startNats(t)
  const b = await clusteredGateway(t, nats, 'gw-b', { limits: { maxPayloadBytes: 4096, maxTopicLevels: 8 } })
  const sub = await mqttClient(t, b.gw)
  await sub.client.subscribeAsync('#', { qos: 0 })
  // an intruder that got the cluster's credentials: what it can send is bounded by what the gateways accept
  const intruder = await natsClient(t, nats, 'intruder')
  const frame = (flags, payload = 'x') => Buffer.concat([Buffer.from([flags]), Buffer.from(payload)])
  intruder.publish('fnbus.ev.%ZZ', frame(0))                         // an escape no topic writes
  intruder.publish('fnbus.ev.a%2eb', frame(0))                       // lower-case hex: not ours
  intruder.publish('fnbus.ev.$fn.in.victim', frame(1))               // the bus' namespace
  intruder.publish('fnbus.ev.$SYS.x', frame(0))
  intruder.publish('fnbus.ev.%', frame(0))                           // the empty topic
  intruder.publish('fnbus.ev.wild.+', frame(0))                      // a wildcard no client may publish on
  intruder.publish('fnbus.ev.ctl.a\u0085b', frame(0))                // a C1 control character
  intruder.publish('fnbus.ev.deep.1.2.3.4.5.6.7.8', frame(0))        // 9 levels, over maxTopicLevels
  intruder.publish('fnbus.ev.big', frame(0, 'x'.repeat(5000)))       // over maxPayloadBytes
  intruder.publish('fnbus.ev.flags', frame(0xf8))                    // reserved flag bits
  intruder.publish('fnbus.ev.qos3', frame(3))
  intruder.publish('fnbus.ev.empty', new Uint8Array(0))              // no flags byte
  const garbage = headers()
  garbage.set('Fnbus-Qos', '\u00ff\u0000junk')
  garbage.set('x', 'y'.repeat(1000))
  intruder.publish('fnbus.ev.headers', frame(0, 'fine'), { headers: garbage })  // headers are not read: carried
  await intruder.flush()
  // 9 levels stop the subject's decoding early: a `subject` drop
  const expected = { subject: 6, limits: 3, frame: 3 }
  await waitFor(() => b.events.status().dropped >= 12, 5000, 'twelve drops')
  await waitFor(() => sub.received.some(m => m.topic === 'headers'), 5000, 'the message with odd headers')
  const status = b.events.status()
  for (const [reason, count] of Object.entries(expected)) assert.equal(status.drops[reason], count, reason)
  assert.equal(status.dropped, 12)
  assert.deepEqual(sub.received.map(m => m.topic), ['headers'], 'nothing else got through')
  // once per reason in the log at warn level, not once per message
  const warned = b.logger.entries.filter(e => e.msg === 'cluster events: a message was dropped')
  assert.equal(warned.length, 3)

  // a flood, as fast as the intruder can publish: everything is either routed or dropped as overload, never held
  const flood = 30_000
  const payload = frame(0, 'f'.repeat(200))
  let peak = 0
  const sampler = setInterval(() => { peak = Math.max(peak, b.events.status().importing) }, 1)
  t.after(() => clearInterval(sampler))
  for (let i = 0; i < flood; i++) {
    intruder.publish('fnbus.ev.flood', payload)
    if (i % 5000 === 0) await intruder.flush()
  }
  await intruder.flush()
  await waitFor(() => {
    const s = b.events.status()
    return s.imported + s.drops.overload >= flood + 1 && s.importing === 0
  }, 15_000, 'the flood routed or dropped')
  clearInterval(sampler)
  const after = b.events.status()
  assert.equal(after.imported + after.drops.overload, flood + 1)
  assert.ok(peak <= 1024, `at most 1024 in flight (saw ${peak})`)
  // the gateway still routes its own clients' messages
  const pub = await mqttClient(t, b.gw)
  await pub.client.publishAsync('still/here', 'yes', { qos: 1 })
  await waitFor(() => sub.received.some(m => m.topic === 'still/here'), 5000, 'a local message after the flood')
})

test('a NATS client without the gateways\' credentials is refused by the servers', async t => {
  const nats = await startNats(t)
  await assert.rejects(connect({ servers: nats.servers, reconnect: false }), /Authorization|auth/i)
  await assert.rejects(connect({ servers: nats.servers, user: 'fnbus', pass: 'wrong', reconnect: false }), /Authorization|auth/i)
  // with them, it connects (the gateways' own path)
  const nc = await natsClient(t, nats, 'ok')
  assert.equal(nc.isClosed(), false)
})

test('NATS down: start does not wait, events stay local and are counted, and the gateway catches up when it is back', async t => {
  const nats = await startNats(t)
  const a = await clusteredGateway(t, nats, 'gw-a')
  const gw = await startGateway(t)
  const nc = await natsClient(t, nats, 'gw-b')
  await nats.nodes[0].kill()
  const logger = memoryLogger()
  const started = Date.now()
  const b = await ClusterEvents.start({ nc, prefix: PREFIX, gateway: 'gw-b', aedes: gw.aedes, bus: gw.bus, logger, replicas: 1 })
  t.after(() => b.close())
  assert.ok(Date.now() - started < 1000, 'start does not wait for NATS')
  await waitFor(() => !b.status().online, 5000, 'B sees the connection down')
  assert.equal(b.status().retained, 'pending')
  const local = await mqttClient(t, gw)
  await local.client.subscribeAsync('#', { qos: 1 })
  await local.client.publishAsync('while/down', 'here', { qos: 1 })
  await local.client.publishAsync('kept/retained', 'v1', { qos: 1, retain: true })
  await waitFor(() => local.received.length === 2, 2000, 'local events still routed')
  assert.equal(b.status().drops.offline, 2)
  assert.equal(b.status().retainedUnsent, 1, 'the retained message waits for JetStream')
  // its first request to JetStream times out (5 s) while the connection is down: then it says so, once
  await waitFor(() => logger.entries.some(e => e.msg?.includes('JetStream not reachable')), 8000, 'the warning')
  await nats.nodes[0].start()
  await waitFor(() => b.status().online && b.status().retained === 'synced', 10_000, 'B back in the cluster')
  await waitFor(() => b.status().retainedStored === 1, 5000, 'the waiting retained message written')
  // A reconnects on its own schedule: its subscription is back at the server once it is online and has flushed
  await waitFor(() => a.events.status().online, 10_000, 'A back in the cluster')
  await a.nc.flush()
  // the retained message written after the outage reaches a gateway that reads the stream; live events flow again
  const aSub = await mqttClient(t, a.gw)
  await aSub.client.subscribeAsync('#', { qos: 1 })
  await local.client.publishAsync('after/up', 'again', { qos: 1 })
  await waitFor(() => aSub.received.some(m => m.topic === 'after/up'), 5000, 'events cross again')
  const c = await clusteredGateway(t, nats, 'gw-c')
  const cSub = await mqttClient(t, c.gw)
  await cSub.client.subscribeAsync('kept/+', { qos: 1 })
  await waitFor(() => cSub.received.length === 1, 5000, 'the retained message on C')
  assert.deepEqual(cSub.received.map(m => [m.topic, m.payload, m.retain]), [['kept/retained', 'v1', true]])
})
