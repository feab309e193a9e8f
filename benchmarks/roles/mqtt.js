// Plain MQTT.js clients against any broker (bare aedes, Mosquitto, the fnbus gateway): event publishers and
// subscribers, and idle connections for the memory workload.
import mqtt from 'mqtt'
import { EventCounter, publishFlatOut } from '../lib/events.js'

export async function publisher ({ url }) {
  const client = await mqtt.connectAsync(url, { protocolVersion: 4 })
  return {
    run: ({ topic, size, durationMs }) => publishFlatOut({
      durationMs,
      payload: Buffer.alloc(size, 'x'),
      publish: (payload, written) => client.publish(topic, payload, { qos: 0 }, written),
    }),
    close: () => client.endAsync(),
  }
}

export async function subscriber ({ url, topic }) {
  const client = await mqtt.connectAsync(url, { protocolVersion: 4 })
  const counter = new EventCounter()
  client.on('message', () => counter.onMessage())
  await client.subscribeAsync(topic, { qos: 0 })
  return { measure: args => counter.measure(args), quiet: args => counter.quiet(args), close: () => client.endAsync() }
}

/** `count` idle connections, each subscribed to a topic of its own. */
export async function idleConnections ({ url, count, first, parallel = 25 }) {
  const clients = []
  let next = 0
  const open = async () => {
    while (next < count) {
      const i = first + next++
      const client = await mqtt.connectAsync(url, { protocolVersion: 4 })
      clients.push(client)
      await client.subscribeAsync(`idle/${i}`, { qos: 0 })
    }
  }
  await Promise.all(Array.from({ length: parallel }, open))
  return {
    info: { connected: clients.length },
    close: () => Promise.all(clients.map(client => client.endAsync())),
  }
}
