// The MQTT bridge (docs/bridge.md, issue #17) against real Mosquitto brokers the tests start on free ports: topics
// out and in, retain, QoS, the policy on inbound messages, no loops, status and metrics.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { defined, tempDir } from '../helpers.js'
import { freePort } from './cli.js'
import { bridgeStatus, client, gatewayWith, mosquitto } from './mosquitto.js'

test('out, in, retain, QoS, policy, no loops, status and metrics', async t => {
  const dir = await tempDir(t)
  const remote = await mosquitto(t, await tempDir(t))
  // retained on the remote before the bridge subscribes: it comes in with its retain flag
  const cloud = await client(t, remote.url, { clientId: 'cloud-app' })
  await cloud.mqtt.publishAsync('sites/7/commands/config', 'v1', { qos: 1, retain: true })
  await cloud.mqtt.subscribeAsync({ 'sites/#': { qos: 1 }, 'loop/#': { qos: 1 } })

  const httpPort = await freePort()
  const gateway = await gatewayWith(t, dir, {
    memory: true,
    http: { port: httpPort },
    plugins: { metrics: {} },
    policy: [
      { identity: '$anonymous', allow: { publish: ['telemetry/#', 'status/#', 'echo/#'], subscribe: ['#'] } },
      { identity: '$bridge/cloud', allow: { publish: ['commands/#', 'echo/#'] } },
    ],
    bridges: [{
      name: 'cloud',
      url: remote.url,
      out: [{ from: 'telemetry/#', to: 'sites/7/telemetry/#', qos: 1 }, { from: 'status/+/now', to: 'sites/7/status/+', qos: 0 }, { from: 'echo/#', to: 'loop/#' }],
      in: [{ from: 'sites/7/commands/#', to: 'commands/#' }, { from: 'sites/7/forbidden/#', to: 'forbidden/#' }, { from: 'loop/#', to: 'echo/#' }],
    }],
  })
  const local = await client(t, gateway.url)
  await local.mqtt.subscribeAsync({ 'commands/#': { qos: 1 }, 'forbidden/#': { qos: 1 }, 'echo/#': { qos: 1 } })

  await t.test('in: a retained remote message arrives retained, as $bridge/cloud', async () => {
    const retained = await local.next(m => m.topic === 'commands/config')
    assert.equal(retained.payload.toString(), 'v1')
    // the gateway keeps it retained: a later subscriber gets it with its retain flag (a live delivery has none)
    const late = await client(t, gateway.url)
    await late.mqtt.subscribeAsync('commands/config', { qos: 1 })
    const kept = await late.next(m => m.topic === 'commands/config')
    assert.equal(kept.retain, true)
    assert.equal(kept.payload.toString(), 'v1')
  })

  await t.test('out: rewritten topic, byte-exact payload, the rule\'s QoS, retain kept', async () => {
    const payload = randomBytes(4096)
    await local.mqtt.publishAsync('telemetry/line-1/temp', payload, { qos: 1 })
    const got = await cloud.next(m => m.topic === 'sites/7/telemetry/line-1/temp')
    assert.ok(got.payload.equals(payload))
    assert.equal(got.qos, 1)
    // a QoS 1 local publish on a QoS 0 rule reaches the remote broker at QoS 0, the `+` level kept
    await local.mqtt.publishAsync('status/press-4/now', 'ok', { qos: 1 })
    assert.equal((await cloud.next(m => m.topic === 'sites/7/status/press-4')).qos, 0)
    await local.mqtt.publishAsync('telemetry/line-1/setpoint', '21.5', { qos: 1, retain: true })
    await cloud.next(m => m.topic === 'sites/7/telemetry/line-1/setpoint')
    const later = await client(t, remote.url)
    await later.mqtt.subscribeAsync('sites/7/telemetry/line-1/setpoint', { qos: 1 })
    const kept = await later.next(m => m.topic === 'sites/7/telemetry/line-1/setpoint')
    assert.equal(kept.retain, true)
    assert.equal(kept.payload.toString(), '21.5')
  })

  await t.test('in: remote messages are published locally; the policy decides what $bridge/cloud may publish', async () => {
    const payload = randomBytes(1000)
    await cloud.mqtt.publishAsync('sites/7/forbidden/x', 'no', { qos: 1 })
    await cloud.mqtt.publishAsync('sites/7/commands/start', payload, { qos: 1 })
    const got = await local.next(m => m.topic === 'commands/start')
    assert.ok(got.payload.equals(payload))
    // the remote broker delivers in order: the forbidden one was handled before
    assert.equal(local.messages.filter(m => m.topic.startsWith('forbidden/')).length, 0)
    const [bridge] = await bridgeStatus(httpPort)
    assert.equal(bridge?.receivedDropped.policy, 1)
    assert.match(gateway.stderr, /\$bridge\/cloud may not publish on forbidden\/x/)
  })

  await t.test('no loops: a message that came in through the bridge does not go back out through it', async () => {
    await local.mqtt.publishAsync('echo/1', 'ping', { qos: 1 })
    // once as published here, once back from the remote broker (loop/1 → echo/1)
    await local.next(m => m.topic === 'echo/1' && local.messages.filter(n => n.topic === 'echo/1').length === 2)
    // a barrier: anything the bridge sent after the echo came in would be ahead of this one in its queue
    await local.mqtt.publishAsync('telemetry/barrier', 'b', { qos: 1 })
    await cloud.next(m => m.topic === 'sites/7/telemetry/barrier')
    assert.equal(cloud.messages.filter(m => m.topic === 'loop/1').length, 1)
  })

  await t.test('status and metrics show the bridge', async () => {
    const bridge = defined((await bridgeStatus(httpPort))[0], 'the bridge\'s status')
    assert.equal(bridge.name, 'cloud')
    assert.equal(bridge.connected, true)
    assert.equal(bridge.url, remote.url)
    assert.equal(bridge.queuedMessages, 0)
    assert.ok(bridge.sent >= 5, `sent ${bridge.sent}`)
    assert.ok(bridge.received >= 3, `received ${bridge.received}`)
    const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
    assert.match(metrics, /^fnbus_bridge_connected\{bridge="cloud"\} 1$/m)
    assert.match(metrics, /^fnbus_bridge_queued_messages\{bridge="cloud"\} 0$/m)
    assert.match(metrics, /^fnbus_bridge_sent_total\{bridge="cloud"\} [1-9]\d*$/m)
    assert.match(metrics, /^fnbus_bridge_received_total\{bridge="cloud"\} [1-9]\d*$/m)
    assert.match(metrics, /^fnbus_bridge_dropped_total\{bridge="cloud",reason="maxMessages"\} 0$/m)
  })
})
