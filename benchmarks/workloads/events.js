// Workload 4: one-way events, QoS 0, 64 B, one publisher process and one subscriber process, through
//   - the fnbus gateway, with plain MQTT.js clients: what the bus costs ordinary topics (the bar);
//   - the fnbus gateway, with the SDK's fc.publish / fc.subscribe: what a function sees;
//   - bare aedes, with MQTT.js;
//   - Mosquitto (the one already running on the machine), with MQTT.js.
// The figure is the rate at which the subscriber receives events while the publisher sends flat out.
import { alternate, group } from '../lib/alternate.js'
import { pidOf, withCpuPerCall } from '../lib/cpu.js'
import { ProcessGroup } from '../lib/processes.js'

export const SYSTEMS = {
  fnbus: 'fnbus gateway, MQTT.js clients',
  'fnbus-sdk': 'fnbus gateway, FCClient publish/subscribe',
  aedes: 'bare aedes, MQTT.js clients',
  mosquitto: 'Mosquitto, MQTT.js clients',
}

const SIZE = 64

export async function run ({ options, log, tempDir }) {
  const procs = new ProcessGroup()
  try {
    const gateway = await procs.start('fnbus', 'gateway', { dataDir: await tempDir('events') })
    const broker = await procs.start('aedes', 'broker')
    // topics of their own: the Mosquitto server is shared with whatever else runs on the machine
    const base = `fnbus-bench/${process.pid}`
    const setups = {
      fnbus: { url: gateway.info.url, topic: `${base}/mqtt`, module: 'mqtt', pub: 'publisher', sub: 'subscriber' },
      'fnbus-sdk': { url: gateway.info.url, topic: `${base}/sdk`, module: 'fnbus', pub: 'sdkPublisher', sub: 'sdkSubscriber' },
      aedes: { url: broker.info.url, topic: `${base}/aedes`, module: 'mqtt', pub: 'publisher', sub: 'subscriber' },
      mosquitto: { url: options.mosquitto, topic: `${base}/mosquitto`, module: 'mqtt', pub: 'publisher', sub: 'subscriber' },
    }
    const brokers = { fnbus: gateway.pid, 'fnbus-sdk': gateway.pid, aedes: broker.pid, mosquitto: pidOf('mosquitto') }
    const pairs = {}
    for (const [system, { url, topic, module, pub, sub }] of Object.entries(setups)) {
      const subscriber = await procs.start(module, sub, { url, topic })
      const publisher = await procs.start(module, pub, { url })
      pairs[system] = { topic, subscriber, publisher, pids: { broker: brokers[system], publisher: publisher.pid, subscriber: subscriber.pid } }
    }

    const durationMs = options.durationMs
    // CPU time per event delivered, over the whole run
    const measure = system => withCpuPerCall(pairs[system].pids, async () => {
      const { topic, subscriber, publisher } = pairs[system]
      const timeoutMs = options.warmupMs + durationMs + 60_000
      const { received: before } = await subscriber.call('quiet', { idleMs: 0 })
      const received = subscriber.call('measure', { warmupMs: options.warmupMs, durationMs }, { timeoutMs })
      // the publisher outlasts the subscriber's window, so the whole window is under load
      const sent = publisher.call('run', { topic, size: SIZE, durationMs: options.warmupMs + durationMs + 1000 }, { timeoutMs })
      const [result, { sent: published }] = await Promise.all([received, sent])
      // what the broker still buffered is delivered before the next system runs, so it does not steal its CPU
      const { received: after } = await subscriber.call('quiet', { idleMs: 300 }, { timeoutMs: 60_000 })
      return { ...result, published, totalCalls: after - before }
    })
    const runs = await alternate({ systems: Object.keys(setups), pairs: options.pairs, label: 'events', log, measure })
    return { systems: SYSTEMS, groups: [group('events', `${SIZE} B, QoS 0, publisher flat out`, { size: SIZE }, runs)] }
  } finally {
    await procs.close()
  }
}
