// Moleculer 0.15 as its users run it: a service broker per process, the NATS transporter, the default (JSON)
// serializer. Moleculer actions take an object of params, so the payload travels as a string field of `size`
// ASCII bytes, its natural shape.
import { ServiceBroker } from 'moleculer'
import { closedLoop } from '../lib/measure.js'

const echoService = { name: 'bench', actions: { echo: ctx => ctx.params } }

function newBroker (role, natsUrl, namespace, requestTimeout = 0) {
  return new ServiceBroker({
    nodeID: `${role}-${process.pid}`,
    // its own namespace per run, so other Moleculer nodes on the shared NATS server are not part of it
    namespace: namespace ?? '',
    transporter: natsUrl ?? null,
    logger: false,
    // Moleculer's default: 0, no deadline
    requestTimeout,
  })
}

export async function worker ({ natsUrl, namespace }) {
  const broker = newBroker('worker', natsUrl, namespace)
  broker.createService(echoService)
  await broker.start()
  return { close: () => broker.stop() }
}

export async function caller ({ natsUrl, namespace }) {
  const broker = newBroker('caller', natsUrl, namespace)
  await broker.start()
  await broker.waitForServices('bench', 30_000)
  return {
    run ({ size, concurrency, warmupMs, durationMs }) {
      const params = { payload: 'x'.repeat(size) }
      return closedLoop({ call: () => broker.call('bench.echo', params), concurrency, warmupMs, durationMs })
    },
    close: () => broker.stop(),
  }
}

/**
 * Moleculer's local call: `broker.call` to a service of the same broker, no transporter. `requestTimeout` (ms) gives
 * every call a deadline, as every fnbus call has one; Moleculer's default is none.
 */
export async function local ({ requestTimeout = 0 } = {}) {
  const broker = newBroker('local', undefined, undefined, requestTimeout)
  broker.createService(echoService)
  await broker.start()
  return {
    run ({ size, concurrency, warmupMs, durationMs }) {
      const params = { payload: 'x'.repeat(size) }
      return closedLoop({ call: () => broker.call('bench.echo', params), concurrency, warmupMs, durationMs })
    },
    close: () => broker.stop(),
  }
}
