import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import test from 'node:test'
import mqtt from 'mqtt'
import { IoTData } from '../../dist/index.js'
import { connectClient, startGateway, waitFor } from '../helpers.js'

test('publish and subscribe with + and # wildcards', async t => {
  const gw = await startGateway(t)
  const sub = await connectClient(t, gw)
  const pub = await connectClient(t, gw)
  const plus = []
  const hash = []
  await sub.subscribe('sensors/+/temp', (topic, payload) => plus.push([topic, payload.toString()]))
  await sub.subscribe('sensors/#', (topic, payload) => hash.push([topic, payload.toString()]))
  await pub.publish('sensors/1/temp', '21.5')
  await pub.publish('sensors/2/humidity', Buffer.from('40'))
  await pub.publish('sensors/3/temp', { c: 19 }, { qos: 1 })
  await waitFor(() => hash.length === 3, 2000, 'three events on sensors/#')
  await waitFor(() => plus.length === 2, 2000, 'two events on sensors/+/temp')
  assert.deepEqual(plus, [['sensors/1/temp', '21.5'], ['sensors/3/temp', '{"c":19}']])
  assert.deepEqual(hash.map(([topic]) => topic), ['sensors/1/temp', 'sensors/2/humidity', 'sensors/3/temp'])
})

test('retained events reach later subscribers', async t => {
  const gw = await startGateway(t)
  const pub = await connectClient(t, gw)
  await pub.publish('state/door', 'open', { retain: true, qos: 1 })
  const sub = await connectClient(t, gw)
  const seen = []
  await sub.subscribe('state/+', (topic, payload, message) => seen.push([topic, payload.toString(), message.retain]))
  await waitFor(() => seen.length === 1, 2000, 'the retained event')
  assert.deepEqual(seen, [['state/door', 'open', true]])
})

test('plain MQTT.js clients interoperate on ordinary topics', async t => {
  const gw = await startGateway(t)
  const plain = await mqtt.connectAsync(gw.url, { reconnectPeriod: 0 })
  t.after(() => plain.endAsync())
  const fc = await connectClient(t, gw)
  const fromPlain = []
  await fc.subscribe('from/plain', (topic, payload) => fromPlain.push(payload.toString()))
  const fromFc = []
  plain.on('message', (topic, payload) => fromFc.push(payload.toString()))
  await plain.subscribeAsync('from/fc')
  await plain.publishAsync('from/plain', 'hello fnbus')
  await fc.publish('from/fc', 'hello mqtt')
  await waitFor(() => fromPlain.length === 1 && fromFc.length === 1, 2000, 'both messages')
  assert.deepEqual([fromPlain, fromFc], [['hello fnbus'], ['hello mqtt']])
})

test('mosquitto_pub and mosquitto_sub interoperate', async t => {
  const gw = await startGateway(t)
  const fc = await connectClient(t, gw)
  const received = []
  await fc.subscribe('cli/in', (topic, payload) => received.push(payload.toString()))
  const pub = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gw.port), '-t', 'cli/in', '-m', 'from mosquitto_pub'])
  await /** @type {Promise<void>} */ (new Promise((resolve, reject) => pub.on('exit', code => code === 0 ? resolve() : reject(new Error(`mosquitto_pub exited ${code}`)))))
  await waitFor(() => received.length === 1, 2000, 'the mosquitto_pub message')
  assert.deepEqual(received, ['from mosquitto_pub'])

  const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(gw.port), '-t', 'cli/out', '-C', '1'])
  t.after(() => sub.kill())
  let out = ''
  sub.stdout.on('data', chunk => { out += chunk })
  const exited = new Promise(resolve => sub.on('exit', resolve))
  await waitFor(async () => {
    await fc.publish('cli/out', 'to mosquitto_sub')
    return out.length > 0
  }, 3000, 'mosquitto_sub output')
  await exited
  assert.equal(out.trim(), 'to mosquitto_sub')
})

test("IoTData.publish, Link IoT Edge's event call, works with a callback", async t => {
  const gw = await startGateway(t)
  const fc = await connectClient(t, gw)
  const seen = []
  await fc.subscribe('link/topic', (topic, payload) => seen.push(payload.toString()))
  const iotData = new IoTData({ url: gw.url })
  t.after(() => iotData.close())
  await /** @type {Promise<void>} */ (new Promise((resolve, reject) => iotData.publish({ topic: 'link/topic', payload: 'from IoTData' }, err => err ? reject(err) : resolve())))
  await waitFor(() => seen.length === 1, 2000, 'the IoTData event')
  assert.deepEqual(seen, ['from IoTData'])
})

test('the gateway publishes and subscribes in process', async t => {
  const gw = await startGateway(t)
  const fc = await connectClient(t, gw)
  const atGateway = []
  const stop = await gw.subscribe('up/#', (topic, payload) => atGateway.push([topic, payload.toString()]))
  const atClient = []
  await fc.subscribe('down/+', (topic, payload) => atClient.push(payload.toString()))
  await fc.publish('up/a', 'to gw')
  await gw.publish('down/x', 'from gw')
  await waitFor(() => atGateway.length === 1 && atClient.length === 1, 2000, 'both directions')
  assert.deepEqual(atGateway, [['up/a', 'to gw']])
  assert.deepEqual(atClient, ['from gw'])
  await stop()
  await fc.publish('up/b', 'unheard')
  // the same client's next event reaches the gateway after up/b: up/b has been routed (or not) by then
  const after = []
  await gw.subscribe('after/#', topic => after.push(topic))
  await fc.publish('after/b', 'heard')
  await waitFor(() => after.length === 1, 2000, 'the event published after up/b')
  assert.equal(atGateway.length, 1)
})

test('events cannot use the $fn/ namespace', async t => {
  const gw = await startGateway(t)
  const fc = await connectClient(t, gw)
  await assert.rejects(fc.publish('$fn/up', 'x'), { code: 'FNBUS_INVALID_ARGUMENT' })
  await assert.rejects(fc.subscribe('$fn/#', () => {}), { code: 'FNBUS_INVALID_ARGUMENT' })
  await assert.rejects(gw.publish('$fn/in/x', 'x'), { code: 'FNBUS_INVALID_ARGUMENT' })
})
