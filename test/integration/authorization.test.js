// The policy end to end: real gateway, real identities, real MQTT clients. No unauthorized call, registration or
// delivery: live, retained, queued for a persistent session, after a gateway restart.
import assert from 'node:assert/strict'
import test from 'node:test'
import mqtt from 'mqtt'
import { hashSecret } from '../../dist/security/credentials.js'
import { packr, unpackr } from '../../dist/protocol/codec.js'
import { connectClient, rejection, startGateway, tempDir, waitFor } from '../helpers.js'

const NAMES = ['caller', 'worker', 'sensor-1', 'sensor-2', 'operator', 'Plant/reader']
/** Test identities with a cheap hash (the default cost is for real secrets). */
const identities = Object.fromEntries(await Promise.all(NAMES.map(async name =>
  [name, { hash: await hashSecret(`${name}-secret`, { ln: 10, r: 8, p: 1 }) }])))
const as = (name, extra = {}) => ({ username: name, password: `${name}-secret`, ...extra })

const POLICY = [
  { identity: 'caller', allow: { invoke: ['Svc/*'], subscribe: ['cmd/#', 'ok/#'] }, deny: { invoke: ['Svc/admin'], subscribe: ['cmd/secret/#'] } },
  { identity: 'worker', allow: { serve: ['Svc/*'] } },
  { identity: 'sensor-*', allow: { publish: ['sensors/{identity}/temp'], subscribe: ['sensors/+/temp'] } },
  { identity: 'operator', allow: { publish: ['#'], manage: ['Svc/*'] } },
]

async function gateway (t, options = {}) {
  return await startGateway(t, { identities, policy: POLICY, ...options })
}

/** A raw MQTT.js client as an identity. */
async function rawClient (t, gw, name, options = {}) {
  const client = await mqtt.connectAsync(gw.url, { clientId: `${name.replace('/', ':')}.raw${Math.random().toString(36).slice(2, 8)}`, reconnectPeriod: 0, ...as(name), ...options })
  t.after(() => client.endAsync(true))
  return client
}

async function subscribeRefused (client, filter) {
  const err = await client.subscribeAsync(filter).then(() => null, e => e)
  return err !== null && err.name === 'ErrorWithSubackPacket'
}

test('invoke: allowed functions run; others are FNBUS_NOT_AUTHORIZED, deny winning over allow', async t => {
  const gw = await gateway(t)
  const worker = await connectClient(t, gw, as('worker'))
  await worker.serve('Svc/echo', async event => event)
  await worker.serve('Svc/admin', async () => 'admin things')
  await gw.serve('Other/fn', async () => 'other')
  const caller = await connectClient(t, gw, as('caller'))
  assert.equal(await caller.invoke('Svc/echo', 'hi'), 'hi')
  assert.equal((await rejection(caller.invoke('Svc/admin'))).code, 'FNBUS_NOT_AUTHORIZED', 'denied explicitly')
  assert.equal((await rejection(caller.invoke('Other/fn'))).code, 'FNBUS_NOT_AUTHORIZED', 'not allowed: default deny')
  assert.equal((await rejection(caller.invokeAsync('Other/fn', 'x'))).code, 'FNBUS_NOT_AUTHORIZED', 'Async too')
  const viaLink = await new Promise(resolve => caller.invokeFunction({ serviceName: 'Other', functionName: 'fn' }, err => resolve(err)))
  assert.equal(viaLink.code, 'FNBUS_NOT_AUTHORIZED')
  const sensor = await connectClient(t, gw, as('sensor-1'))
  assert.equal((await rejection(sensor.invoke('Svc/echo', 'hi'))).code, 'FNBUS_NOT_AUTHORIZED')
  // in-process calls act as the gateway unless they name an identity
  assert.equal(await gw.invoke('Svc/admin'), 'admin things')
  assert.equal((await rejection(gw.invoke('Svc/admin', null, { identity: 'caller' }))).code, 'FNBUS_NOT_AUTHORIZED')
  assert.equal(await caller.invoke('Svc/echo', 'still connected'), 'still connected')
})

test('serve needs a serve grant, or the function\'s own identity', async t => {
  const gw = await gateway(t)
  const caller = await connectClient(t, gw, as('caller'))
  assert.equal((await rejection(caller.serve('Svc/echo', async e => e))).code, 'FNBUS_NOT_AUTHORIZED', 'a caller may not serve')
  const worker = await connectClient(t, gw, as('worker'))
  assert.equal((await rejection(worker.serve('Plant/reader', async () => 1))).code, 'FNBUS_NOT_AUTHORIZED', 'beyond its grant')
  const own = await connectClient(t, gw, as('Plant/reader'))
  await own.serve('Plant/reader', async () => 'reading')
  assert.equal(await gw.invoke('Plant/reader'), 'reading')
  // the refused registration did not take calls away from anyone
  await worker.serve('Svc/echo', async e => e)
  assert.equal(await caller.invoke('Svc/echo', 'ok'), 'ok')
})

test('subscribe by containment: sensors/+/temp does not grant sensors/#; publish only where allowed', async t => {
  const gw = await gateway(t)
  const listener = await rawClient(t, gw, 'sensor-2')
  assert.ok(await subscribeRefused(listener, 'sensors/#'))
  assert.ok(await subscribeRefused(listener, 'sensors/+/humidity'))
  assert.ok(await subscribeRefused(listener, '$SYS/#'))
  await listener.subscribeAsync('sensors/+/temp', { qos: 1 })
  const seen = []
  listener.on('message', (topic, payload) => seen.push(`${topic}=${payload}`))

  const sensor = await rawClient(t, gw, 'sensor-1')
  await sensor.publishAsync('sensors/sensor-2/temp', 'forged', { qos: 1 }) // another sensor's topic: dropped
  await sensor.publishAsync('sensors/sensor-1/temp', '21.5', { qos: 1 })
  await waitFor(() => seen.length > 0, 2000, 'the allowed event')
  // the forged one was published (and acknowledged) first: had it been let through, it would have arrived first
  assert.deepEqual(seen, ['sensors/sensor-1/temp=21.5'])
  assert.ok(sensor.connected, 'a refused publish is dropped, the publisher stays connected')

  // the SDK reports a refused subscription with a code
  const sdk = await connectClient(t, gw, as('sensor-1'))
  await assert.rejects(sdk.subscribe('sensors/#', () => {}), { code: 'FNBUS_NOT_AUTHORIZED' })
  const unsubscribe = await sdk.subscribe('sensors/+/temp', () => {})
  await unsubscribe()
})

test('live and retained deliveries obey a deny inside an allowed subscription', async t => {
  const gw = await gateway(t)
  await gw.publish('cmd/secret/key', 'retained secret', { retain: true, qos: 1 })
  await gw.publish('cmd/open/door', 'retained open', { retain: true, qos: 1 })
  const caller = await rawClient(t, gw, 'caller')
  assert.ok(await subscribeRefused(caller, 'cmd/secret/#'), 'wholly denied filters are refused')
  const seen = []
  caller.on('message', (topic, payload) => seen.push(`${topic}=${payload}`))
  await caller.subscribeAsync('cmd/#', { qos: 1 })
  const operator = await rawClient(t, gw, 'operator')
  await operator.publishAsync('cmd/secret/live', 'live secret', { qos: 1 })
  await operator.publishAsync('cmd/open/live', 'live open', { qos: 1 })
  await waitFor(() => seen.length >= 2, 2000, 'the allowed messages')
  await new Promise(resolve => setTimeout(resolve, 100))
  assert.deepEqual(seen.sort(), ['cmd/open/door=retained open', 'cmd/open/live=live open'])
})

test('messages queued for a persistent session obey the policy, across gateway restarts and policy changes', async t => {
  const dataDir = await tempDir(t)
  const clientId = 'caller.persistent'
  let gw = await gateway(t, { dataDir })
  const sub = await mqtt.connectAsync(gw.url, { clientId, clean: false, reconnectPeriod: 0, ...as('caller') })
  await sub.subscribeAsync(['cmd/#', 'ok/#'], { qos: 1 })
  await sub.endAsync()

  const publishAll = async (gateway, messages) => {
    const operator = await mqtt.connectAsync(gateway.url, { clientId: 'operator.pub', reconnectPeriod: 0, ...as('operator') })
    for (const topic of messages) await operator.publishAsync(topic, topic, { qos: 1 })
    await operator.endAsync()
  }
  const reconnect = async (gateway) => {
    const seen = []
    const client = mqtt.connect(gateway.url, { clientId, clean: false, reconnectPeriod: 0, ...as('caller') })
    client.on('message', topic => seen.push(topic))
    await new Promise((resolve, reject) => { client.once('connect', resolve); client.once('error', reject) })
    return { client, seen }
  }

  await publishAll(gw, ['cmd/secret/a', 'cmd/open/b', 'ok/1'])
  await gw.close()
  gw = await gateway(t, { dataDir })
  let { client, seen } = await reconnect(gw)
  await waitFor(() => seen.includes('ok/1') && seen.includes('cmd/open/b'), 3000, 'the queued allowed messages')
  await new Promise(resolve => setTimeout(resolve, 200))
  assert.deepEqual(seen.sort(), ['cmd/open/b', 'ok/1'], 'the denied one stayed behind')
  await client.endAsync()

  // queued while offline, then the operator takes cmd/ away from the caller and restarts the gateway
  await publishAll(gw, ['cmd/open/c', 'ok/2'])
  await gw.close()
  const narrower = [{ identity: 'caller', allow: { subscribe: ['ok/#'] } }, ...POLICY.slice(1)]
  gw = await gateway(t, { dataDir, policy: narrower })
  ;({ client, seen } = await reconnect(gw))
  t.after(() => client.endAsync(true))
  await waitFor(() => seen.includes('ok/2'), 3000, 'the queued message still allowed')
  await new Promise(resolve => setTimeout(resolve, 200))
  assert.deepEqual(seen, ['ok/2'], 'nothing of cmd/ after the policy took it away')
  // the restored cmd/# subscription was not renewed: live messages do not arrive either
  await publishAll(gw, ['cmd/open/d', 'ok/3'])
  await waitFor(() => seen.includes('ok/3'), 3000, 'a live allowed message')
  await new Promise(resolve => setTimeout(resolve, 100))
  assert.deepEqual(seen, ['ok/2', 'ok/3'])
})

test('cancel and queue requests under a policy: callers cancel what they may invoke, operators manage, others see nothing', async t => {
  const gw = await gateway(t)
  const caller = await connectClient(t, gw, as('caller'))
  const { invocationId } = await caller.invokeAsync('Svc/later', 'x')
  const sensor = await connectClient(t, gw, as('sensor-1'))
  assert.equal((await rejection(sensor.cancel(invocationId))).code, 'FNBUS_NOT_AUTHORIZED', 'guessing the id is not enough')
  assert.equal((await rejection(sensor.queueCounts('Svc/later'))).code, 'FNBUS_NOT_AUTHORIZED')
  assert.deepEqual(await sensor.queueCounts(), [], 'a listing shows only the functions one may manage')
  const operator = await connectClient(t, gw, as('operator'))
  const counts = await operator.queueCounts()
  assert.deepEqual(counts.map(c => [c.function, c.pending]), [['Svc/later', 1]])
  await caller.cancel(invocationId)
  assert.deepEqual((await operator.queueCounts()).filter(c => c.pending > 0), [], 'cancelled')
})

test('an anonymous connection acts as $anonymous: no rights unless a rule names it', async t => {
  const gw = await startGateway(t, {
    allowAnonymous: true,
    identities,
    policy: [...POLICY, { identity: '$anonymous', allow: { invoke: ['Public/*'] } }, { identity: '*', allow: { invoke: ['Everyone/*'] } }],
  })
  await gw.serve('Public/hello', async () => 'hello')
  await gw.serve('Everyone/fn', async () => 'everyone')
  const anonymous = await connectClient(t, gw)
  assert.equal(await anonymous.invoke('Public/hello'), 'hello')
  assert.equal((await rejection(anonymous.invoke('Everyone/fn'))).code, 'FNBUS_NOT_AUTHORIZED', '* does not include $anonymous')
  const caller = await connectClient(t, gw, as('caller'))
  assert.equal(await caller.invoke('Everyone/fn'), 'everyone')
})

test('another identity can neither read nor answer a worker\'s invocations, even guessing delivery ids', async t => {
  const gw = await gateway(t)
  const worker = await rawClient(t, gw, 'worker', { clientId: 'worker.w1' })
  await worker.subscribeAsync('$fn/in/worker.w1')
  const workerInbox = []
  worker.on('message', (topic, payload) => workerInbox.push(...unpackr.unpackMultiple(payload)))
  worker.publish('$fn/up', packr.pack({ v: 1, t: 'reg', id: 1, fn: 'Svc/target', conc: 8 }))
  await waitFor(() => workerInbox.some(e => e.t === 'ack'), 2000, 'registration')

  const intruder = await rawClient(t, gw, 'caller', { clientId: 'caller.intruder' })
  for (const filter of ['$fn/in/worker.w1', '$fn/in/+', '$fn/#', '#']) {
    assert.ok(await subscribeRefused(intruder, filter), `${filter} refused`)
  }
  await intruder.subscribeAsync('$fn/in/caller.intruder')
  const intruderInbox = []
  intruder.on('message', (topic, payload) => intruderInbox.push(...unpackr.unpackMultiple(payload)))
  intruder.publish('$fn/in/worker.w1', packr.pack({ v: 1, t: 'hello', id: 9 }))
  await waitFor(() => intruderInbox.some(e => e.code === 'FNBUS_NOT_AUTHORIZED'), 2000, 'a refusal of publishing into another inbox')
  // the intruder may invoke Svc/*, but not serve it: its registration is refused
  intruder.publish('$fn/up', packr.pack({ v: 1, t: 'reg', id: 10, fn: 'Svc/target', conc: 1 }))
  await waitFor(() => intruderInbox.some(e => e.id === 10 && e.code === 'FNBUS_NOT_AUTHORIZED'), 2000, 'the refused registration')

  const caller = await connectClient(t, gw, as('caller'))
  const answers = Array.from({ length: 5 }, (_, i) => caller.invoke('Svc/target', `q${i}`, { timeout: 5000 }))
  await waitFor(() => workerInbox.filter(e => e.t === 'invoke').length === 5, 2000, 'five invocations at the worker')
  // every plausible delivery id, forged
  for (let id = 0; id < 200; id++) intruder.publish('$fn/up', packr.pack({ v: 1, t: 'result', id, pk: 1, p: Buffer.from('forged') }))
  // the gateway answers the intruder's next message after it has handled every forged result before it
  intruder.publish('$fn/up', packr.pack({ v: 1, t: 'reg', id: 11, fn: 'Svc/target', conc: 1 }))
  await waitFor(() => intruderInbox.some(e => e.id === 11 && e.code === 'FNBUS_NOT_AUTHORIZED'), 2000, 'the forged results handled')
  for (const invoke of workerInbox.filter(e => e.t === 'invoke')) {
    worker.publish('$fn/up', packr.pack({ v: 1, t: 'result', id: invoke.id, pk: 1, p: Buffer.from(`genuine ${invoke.p}`) }))
  }
  assert.deepEqual(await Promise.all(answers), ['genuine q0', 'genuine q1', 'genuine q2', 'genuine q3', 'genuine q4'])
  assert.equal(intruderInbox.filter(e => e.t === 'invoke').length, 0, 'the intruder never saw an invocation')
})
