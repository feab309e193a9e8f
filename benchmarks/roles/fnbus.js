// fnbus itself, as users run it: a gateway process (`createGateway`), worker processes (`fc.serve`) and caller
// processes (`fc.invoke`, `fc.invokeAsync`, `fc.publish`/`fc.subscribe`), plus the in-process path
// (`gw.serve` + `gw.invoke` in one process). Imported from the repository's build: `npm run build` first.
import { createGateway, FCClient } from '../../dist/index.js'
import { closedLoop, countLoop, monotonicMicros } from '../lib/measure.js'
import { EventCounter, publishFlatOut } from '../lib/events.js'

const ECHO = 'Bench/echo'
// a failed event publish can only mean a lost connection, which the next awaited publish reports
const failed = () => {}
const ASYNC = 'Bench/async'

/**
 * A gateway on a free port with its LevelDB in `dataDir` (the parent makes and removes it), and on the Unix
 * socket `socket` too when given. `functions` sets per-function options, e.g. a `maxStored` above the default
 * 100,000 for a big backlog. `fsync`: the gateway's default is true; a workload compared with peers that do not
 * fsync says false.
 */
export async function gateway ({ dataDir, functions = {}, metrics = false, socket, fsync }) {
  const gw = await createGateway({ port: 0, dataDir, socket, fsync, ...withMetrics(metrics) })
  for (const [name, options] of Object.entries(functions)) gw.bus.setFunctionOptions(name, options)
  const stopScraping = metrics ? scrapeEverySecond(gw) : () => {}
  return {
    info: { url: gw.url, socketUrl: gw.socketUrl },
    close: () => { stopScraping(); return gw.close() },
  }
}

/** The metrics plugin on an HTTP port of its own (the metrics workload's "on" side). */
function withMetrics (metrics) {
  return metrics ? { http: { port: 0 }, plugins: { metrics: {} } } : {}
}

/**
 * Prometheus' scrape, from inside the gateway process so that its cost lands where it would: once a second,
 * fifteen times more often than Prometheus' default interval.
 */
function scrapeEverySecond (gw) {
  const timer = setInterval(() => {
    fetch(`${gw.httpUrl}/metrics`).then(response => response.text()).catch(() => {})
  }, 1000)
  return () => clearInterval(timer)
}

/** A worker that echoes its payload back, with room for `concurrency` calls at once. */
export async function worker ({ url, concurrency }) {
  const fc = new FCClient({ url })
  await fc.serve(ECHO, async event => event, { concurrency })
  return { close: () => fc.close() }
}

/** Calls `fn` (default the echo `worker` serves) with a payload of `size` bytes. */
export async function caller ({ url, fn = ECHO }) {
  const fc = new FCClient({ url })
  await fc.ready()
  return {
    run ({ size, concurrency, warmupMs, durationMs }) {
      const payload = Buffer.alloc(size, 'x')
      return closedLoop({ call: () => fc.invoke(fn, payload), concurrency, warmupMs, durationMs })
    },
    close: () => fc.close(),
  }
}

/** `gw.invoke` → `gw.serve` in one process: no socket, no MQTT. */
export async function inProcess ({ dataDir, metrics = false }) {
  const gw = await createGateway({ port: 0, dataDir, ...withMetrics(metrics) })
  const stopScraping = metrics ? scrapeEverySecond(gw) : () => {}
  await gw.serve(ECHO, async event => event, { concurrency: 1024 })
  return {
    run ({ size, concurrency, warmupMs, durationMs }) {
      const payload = Buffer.alloc(size, 'x')
      return closedLoop({ call: () => gw.invoke(ECHO, payload), concurrency, warmupMs, durationMs })
    },
    close: () => { stopScraping(); return gw.close() },
  }
}

/** Stores Async invocations while no worker serves the function: the accepted-and-durable rate. */
export async function asyncCaller ({ url }) {
  const fc = new FCClient({ url })
  await fc.ready()
  return {
    run ({ size, concurrency, count, warmup }) {
      const payload = Buffer.alloc(size, 'x')
      return countLoop({ call: () => fc.invokeAsync(ASYNC, payload), concurrency, count, warmup })
    },
    /** Once the gateway accepts (a clustered one refuses with FNBUS_STORE_FAILURE until its JetStream streams answer). */
    async ready ({ timeoutMs }) {
      const until = Date.now() + timeoutMs
      for (;;) {
        try {
          return await fc.invokeAsync(ASYNC, null)
        } catch (err) {
          if (err.code !== 'FNBUS_STORE_FAILURE' || Date.now() > until) throw err
          await new Promise(resolve => setTimeout(resolve, 200))
        }
      }
    },
    close: () => fc.close(),
  }
}

/** Comes online and drains the stored backlog: resolves with the rate once `total` invocations ran. */
export async function drainer ({ url }) {
  const fc = new FCClient({ url })
  await fc.ready()
  return {
    async drain ({ total, concurrency }) {
      let handled = 0
      let done
      const finished = new Promise(resolve => { done = resolve })
      const start = monotonicMicros()
      await fc.serve(ASYNC, async () => {
        if (++handled === total) done(monotonicMicros())
        return null
      }, { concurrency })
      const end = await finished
      const seconds = (end - start) / 1e6
      return { calls: total, seconds, rate: total / seconds, totalCalls: total }
    },
    close: () => fc.close(),
  }
}

/** Events through the SDK (`fc.publish`), as a function sends them. */
export async function sdkPublisher ({ url }) {
  const fc = new FCClient({ url })
  await fc.ready()
  return {
    run: ({ topic, size, durationMs }) => publishFlatOut({
      durationMs,
      payload: Buffer.alloc(size, 'x'),
      // fc.publish resolves once MQTT.js has written the packet: the publisher is paced by TCP backpressure
      publish: (payload, written) => {
        const sent = fc.publish(topic, payload)
        if (written !== undefined) sent.then(() => written(), written)
        else sent.catch(failed)
      },
    }),
    close: () => fc.close(),
  }
}

/** Events through the SDK (`fc.subscribe`). */
export async function sdkSubscriber ({ url, topic }) {
  const fc = new FCClient({ url })
  const counter = new EventCounter()
  await fc.subscribe(topic, () => counter.onMessage())
  return { measure: args => counter.measure(args), quiet: args => counter.quiet(args), close: () => fc.close() }
}

/** `count` idle workers, each its own connection (FCClient) serving its own function. */
export async function idleWorkers ({ url, count, first, parallel = 25 }) {
  const clients = []
  let next = 0
  const open = async () => {
    while (next < count) {
      const i = first + next++
      const fc = new FCClient({ url })
      clients.push(fc)
      await fc.serve(`Idle/w${i}`, async () => null)
    }
  }
  await Promise.all(Array.from({ length: parallel }, open))
  return {
    info: { connected: clients.length },
    close: () => Promise.all(clients.map(fc => fc.close())),
  }
}
