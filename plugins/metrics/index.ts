// Prometheus metrics of a gateway at `GET /metrics` of its HTTP port. Built only on the plugin surface: counters
// and histograms follow the gateway's observation events; gauges read `gateway.stats()`, the async queues and
// `gateway.health()` when Prometheus scrapes, so nothing is kept up to date between scrapes.
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import { FnbusError, sendJson } from 'fnbus'
import type { GatewayPlugin, InvocationObservation, PluginContext } from 'fnbus'
import { CounterFamily, HistogramFamily, type CounterCell, type HistogramCell } from './series.js'

export const METRICS_PLUGIN_NAME = 'metrics'

/** `plugins.metrics` of the config. */
export interface MetricsPluginOptions {
  /** Where the text exposition is served. Default `/metrics`. */
  readonly path?: string
  /** Also export the Node.js process metrics (CPU, memory, event loop lag, GC) as `fnbus_process_…`/`fnbus_nodejs_…`. Default true. */
  readonly processMetrics?: boolean
  /** Upper bounds (seconds) of the invoke latency histogram's buckets. */
  readonly latencyBuckets?: readonly number[]
  /**
   * Distinct function names that get label values of their own; calls to names beyond it count under
   * `function="_other"`. It bounds the series a caller can create by invoking made-up names. Default 1000.
   */
  readonly maxFunctions?: number
}

/** From 100 µs (an in-process call) to 60 s (a slow function near its deadline). */
export const DEFAULT_LATENCY_BUCKETS: readonly number[] = Object.freeze([
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
])
export const OTHER_FUNCTIONS = '_other'
const KEYS = new Set(['path', 'processMetrics', 'latencyBuckets', 'maxFunctions'])

interface Resolved {
  readonly path: string
  readonly processMetrics: boolean
  readonly latencyBuckets: readonly number[]
  readonly maxFunctions: number
}

/** The metrics plugin; `registry` and `metrics()` give the same figures to code in the gateway's process. */
export class MetricsPlugin implements GatewayPlugin {
  readonly name = METRICS_PLUGIN_NAME
  readonly registry = new Registry()
  #stop: (() => void) | undefined

  /** The Prometheus text exposition, as `GET /metrics` serves it. */
  async metrics (): Promise<string> {
    return await this.registry.metrics()
  }

  start (context: PluginContext): void {
    const options = resolveOptions(context.config)
    const { gateway, events } = context
    const registry = this.registry
    // the event-loop delay is sampled every 100 ms rather than prom-client's 10: a tenth of the wake-ups, the same picture
    if (options.processMetrics) collectDefaultMetrics({ register: registry, prefix: 'fnbus_', eventLoopMonitoringPrecision: 100 })

    // Label values of function names, bounded (see maxFunctions).
    const known = new Set<string>()
    const functionLabel = (name: string): string => {
      if (known.has(name)) return name
      if (known.size >= options.maxFunctions) return OTHER_FUNCTIONS
      known.add(name)
      return name
    }

    const invocations = new CounterFamily(registry, 'fnbus_invocations_total',
      'Invocations settled, by function, type (Sync, or one delivery attempt of an Async invocation) and outcome (ok, handled, unhandled, or an FNBUS_* error code).',
      ['function', 'type', 'outcome'])
    const latency = new HistogramFamily(registry, 'fnbus_invocation_duration_seconds',
      'Time from the gateway taking an invocation to its outcome (waiting for a free worker included), by function and type.',
      ['function', 'type'], options.latencyBuckets)
    const accepted = new CounterFamily(registry, 'fnbus_async_accepted_total',
      'Async invocations stored durably (idempotent repeats not counted), by function.', ['function'])
    const retries = new CounterFamily(registry, 'fnbus_async_retries_total',
      'Async deliveries that failed and were scheduled again, by function.', ['function'])
    const deadLetters = new CounterFamily(registry, 'fnbus_async_dead_letters_total',
      'Async invocations dead-lettered (retries or maximum age exhausted), by function.', ['function'])
    const rejected = new CounterFamily(registry, 'fnbus_rejected_connections_total',
      'MQTT connections refused before being accepted, by reason (bad_credentials, not_authorized, protocol_error, connect_timeout, …).', ['reason'])
    const dropped = new CounterFamily(registry, 'fnbus_dropped_frames_total',
      'Frames and bus messages dropped, by reason (frame_too_large, malformed_frame, wrong_bus_topic, or the FNBUS_* code of a refused envelope).', ['reason'])
    const eventMessages = new CounterFamily(registry, 'fnbus_event_messages_total',
      'Event messages (ordinary MQTT topics, not the $fn/ bus) published into the broker (in) and delivered to subscribers (out).', ['direction'])
    const eventsIn = eventMessages.cell('in')
    const eventsOut = eventMessages.cell('out')

    new Gauge({
      name: 'fnbus_in_flight',
      help: 'Invocations running now, by function.',
      labelNames: ['function'] as const,
      registers: [registry],
      collect () {
        this.reset()
        for (const fn of gateway.stats().functions) this.set({ function: functionLabel(fn.name) }, fn.workers.reduce((sum, w) => sum + w.inFlight, 0))
      },
    })
    new Gauge({
      name: 'fnbus_waiting_calls',
      help: 'Sync calls waiting for a free worker, by function.',
      labelNames: ['function'] as const,
      registers: [registry],
      collect () {
        this.reset()
        for (const fn of gateway.stats().functions) this.set({ function: functionLabel(fn.name) }, fn.queued)
      },
    })
    new Gauge({
      name: 'fnbus_workers',
      help: 'Workers registered, by function.',
      labelNames: ['function'] as const,
      registers: [registry],
      collect () {
        this.reset()
        for (const fn of gateway.stats().functions) this.set({ function: functionLabel(fn.name) }, fn.workers.length)
      },
    })
    new Gauge({
      name: 'fnbus_async_invocations',
      help: 'Stored Async invocations, by function and state (pending: waiting or in backoff; in_flight: being delivered; dead: dead-lettered).',
      labelNames: ['function', 'state'] as const,
      registers: [registry],
      collect () {
        this.reset()
        for (const queue of gateway.bus.queueStats()) {
          const fn = functionLabel(queue.fn)
          // pending counts the invocations being delivered too (they stay stored until settled)
          this.inc({ function: fn, state: 'pending' }, queue.pending - queue.inFlight)
          this.inc({ function: fn, state: 'in_flight' }, queue.inFlight)
          this.inc({ function: fn, state: 'dead' }, queue.dead)
        }
      },
    })
    new Gauge({
      name: 'fnbus_connected_clients',
      help: 'MQTT connections: all of them (kind="mqtt") and those that speak the bus protocol (kind="bus").',
      labelNames: ['kind'] as const,
      registers: [registry],
      collect () {
        const stats = gateway.stats()
        this.set({ kind: 'mqtt' }, gateway.aedes.connectedClients)
        this.set({ kind: 'bus' }, stats.sessions)
      },
    })
    new Gauge({
      name: 'fnbus_ready',
      help: '1 when the broker listens, the store is open and every supervised instance is up (what /healthz answers); else 0.',
      registers: [registry],
      collect () {
        this.set(gateway.health().ready ? 1 : 0)
      },
    })

    // The cells of each function label and type: found with a few Map lookups per invocation, no allocation.
    interface TypeCells { readonly latency: HistogramCell, readonly outcomes: Map<string, CounterCell> }
    const cellsByLabel = new Map<string, { Sync?: TypeCells, Async?: TypeCells }>()
    const cellsOf = (label: string, type: 'Sync' | 'Async'): TypeCells => {
      let byType = cellsByLabel.get(label)
      if (byType === undefined) {
        byType = {}
        cellsByLabel.set(label, byType)
      }
      return (byType[type] ??= { latency: latency.cell(label, type), outcomes: new Map() })
    }
    const onInvocation = (o: InvocationObservation): void => {
      const label = functionLabel(o.function)
      const cells = cellsOf(label, o.type)
      let outcome = cells.outcomes.get(o.outcome)
      if (outcome === undefined) {
        outcome = invocations.cell(label, o.type, o.outcome)
        cells.outcomes.set(o.outcome, outcome)
      }
      outcome.value++
      latency.observe(cells.latency, o.durationMs / 1000)
    }
    const onAccepted = (o: { readonly function: string }): void => { accepted.cell(functionLabel(o.function)).value++ }
    const onRetry = (o: { readonly function: string }): void => { retries.cell(functionLabel(o.function)).value++ }
    const onDeadLetter = (o: { readonly function: string }): void => { deadLetters.cell(functionLabel(o.function)).value++ }
    const onRejected = (o: { readonly reason: string }): void => { rejected.cell(o.reason).value++ }
    const onDropped = (o: { readonly reason: string }): void => { dropped.cell(o.reason).value++ }
    const onEventMessage = (o: { readonly direction: 'in' | 'out' }): void => {
      if (o.direction === 'in') eventsIn.value++
      else eventsOut.value++
    }
    events.on('invocation', onInvocation)
    events.on('accepted', onAccepted)
    events.on('retry', onRetry)
    events.on('deadLetter', onDeadLetter)
    events.on('rejected', onRejected)
    events.on('frameDropped', onDropped)
    events.on('eventMessage', onEventMessage)
    this.#stop = () => {
      events.off('invocation', onInvocation)
      events.off('accepted', onAccepted)
      events.off('retry', onRetry)
      events.off('deadLetter', onDeadLetter)
      events.off('rejected', onRejected)
      events.off('frameDropped', onDropped)
      events.off('eventMessage', onEventMessage)
    }

    if (context.http === undefined) {
      context.logger.warn({}, 'metrics: no HTTP port (http.port) to serve /metrics on; the figures are kept for code in this process only')
      return
    }
    context.http.route('GET', options.path, async (_req, res) => {
      try {
        const text = await registry.metrics()
        res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' })
        res.end(text)
      } catch (err) {
        context.logger.error({ err }, 'collecting metrics failed')
        sendJson(res, 500, { error: 'internal', message: 'collecting metrics failed' })
      }
    })
  }

  stop (): void {
    this.#stop?.()
    this.#stop = undefined
    this.registry.clear()
  }
}

/** The built-in's factory: what `plugins: { "metrics": {…} }` in the config starts. */
export default function metricsPlugin (): MetricsPlugin {
  return new MetricsPlugin()
}

function resolveOptions (config: unknown): Resolved {
  const fail = (message: string): FnbusError => new FnbusError('FNBUS_CONFIG_INVALID', `plugins.metrics: ${message}`)
  const given = config ?? {}
  if (typeof given !== 'object' || Array.isArray(given)) throw fail('must be an object')
  const block = given as Record<string, unknown>
  for (const key of Object.keys(block)) {
    if (!KEYS.has(key)) throw fail(`unknown key "${key}" (known: ${[...KEYS].join(', ')})`)
  }
  const path = block.path ?? '/metrics'
  if (typeof path !== 'string' || !path.startsWith('/') || path.endsWith('/*')) throw fail(`path must be a path such as "/metrics", got ${JSON.stringify(path)}`)
  const processMetrics = block.processMetrics ?? true
  if (typeof processMetrics !== 'boolean') throw fail(`processMetrics must be true or false, got ${JSON.stringify(processMetrics)}`)
  const buckets = block.latencyBuckets ?? DEFAULT_LATENCY_BUCKETS
  if (!Array.isArray(buckets) || buckets.length === 0 || !buckets.every((b, i) => typeof b === 'number' && b > 0 && Number.isFinite(b) && (i === 0 || b > (buckets[i - 1] as number)))) {
    throw fail('latencyBuckets must be a non-empty list of increasing positive numbers (seconds)')
  }
  const maxFunctions = block.maxFunctions ?? 1000
  if (typeof maxFunctions !== 'number' || !Number.isSafeInteger(maxFunctions) || maxFunctions < 1) throw fail(`maxFunctions must be an integer ≥ 1, got ${JSON.stringify(maxFunctions)}`)
  return { path, processMetrics, latencyBuckets: buckets as number[], maxFunctions }
}
