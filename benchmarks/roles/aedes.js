// The hand-rolled peer: a bare aedes broker, and request/reply over it (or over any MQTT broker: Mosquitto) with
// MQTT.js as anyone would first write it — requests on one topic, a reply topic per caller, a correlation id, msgpack for the envelope.
import { createServer } from 'node:net'
import { Aedes } from 'aedes'
import mqtt from 'mqtt'
import { pack, unpack } from 'msgpackr'
import { closedLoop } from '../lib/measure.js'

const REQUEST_TOPIC = 'rpc/echo'

/** aedes 1.x with its default in-memory persistence, on a free port. */
export async function broker () {
  const aedes = await Aedes.createBroker()
  const server = createServer(aedes.handle)
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
  return {
    info: { url: `mqtt://127.0.0.1:${server.address().port}` },
    async close () {
      await new Promise(resolve => aedes.close(resolve))
      await new Promise(resolve => server.close(resolve))
    },
  }
}

/** Answers each request on the caller's reply topic, echoing the payload. */
export async function rpcWorker ({ url, topic = REQUEST_TOPIC }) {
  const client = await mqtt.connectAsync(url, { protocolVersion: 4 })
  client.on('message', (topic, message) => {
    const { id, replyTo, payload } = unpack(message)
    client.publish(replyTo, pack({ id, payload }), { qos: 0 })
  })
  await client.subscribeAsync(topic, { qos: 0 })
  return { close: () => client.endAsync() }
}

export async function rpcCaller ({ url, topic = REQUEST_TOPIC }) {
  const client = await mqtt.connectAsync(url, { protocolVersion: 4 })
  const replyTo = `rpc/reply/${client.options.clientId}`
  const pending = new Map()
  let nextId = 0
  client.on('message', (topic, message) => {
    const { id, payload } = unpack(message)
    const resolve = pending.get(id)
    pending.delete(id)
    resolve?.(payload)
  })
  await client.subscribeAsync(replyTo, { qos: 0 })
  // no timeout per call, as a first version would have it; the load loop bounds a run that loses a reply
  const call = payload => new Promise(resolve => {
    const id = ++nextId
    pending.set(id, resolve)
    client.publish(topic, pack({ id, replyTo, payload }), { qos: 0 })
  })
  return {
    run ({ size, concurrency, warmupMs, durationMs }) {
      const payload = Buffer.alloc(size, 'x')
      return closedLoop({ call: () => call(payload), concurrency, warmupMs, durationMs })
    },
    close: () => client.endAsync(),
  }
}
