// Prometheus metrics of a gateway at `GET /metrics` of its HTTP port. Built only on the plugin surface. Invocations
// and their latencies are read from `gateway.invocations()` (the dispatcher's own tallies) when Prometheus scrapes,
// and the gauges from `gateway.stats()`, the async queues and `gateway.health()`: the plugin adds nothing to an
// invocation's path. The rarer events (Async accepted, retries, dead letters, refused connections, dropped frames,
// event messages, dropped messages, cut connections) are counted from the gateway's observation events.
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import { FnbusError, sendJson, VERSION } from 'fnbus'
import type { BridgeStatus, ClusterStatus, GatewayPlugin, PluginContext } from 'fnbus'
import { CollectedMetric, CounterFamily, histogramValues, type MetricValue } from './series.js'

export const METRICS_PLUGIN_NAME = 'metrics'

/** `plugins.metrics` of the config. */
export interface MetricsPluginOptions {
  /** Where the text exposition is served. Default `/metrics`. */
  readonly path?: string
  /** Also export the Node.js process metrics (CPU, memory, event loop lag, GC). Default true. */
  readonly processMetrics?: boolean
  /**
   * Prefix of the process metrics' names. Default none: `process_…` and `nodejs_…`, the names stock Node.js
   * dashboards and alerts expect (the registry is the gateway's own: nothing else in the process exports them).
   */
  readonly processMetricsPrefix?: string
  /**
   * Distinct function names that get label values of their own; calls to names beyond it count under
   * `function="_other"`. It bounds the series a caller can create by invoking made-up names. Default 1000.
   */
  readonly maxFunctions?: number
}

export const OTHER_FUNCTIONS = '_other'
const KEYS = new Set(['path', 'processMetrics', 'processMetricsPrefix', 'maxFunctions'])

interface Resolved {
  readonly path: string
  readonly processMetrics: boolean
  readonly processMetricsPrefix: string
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
    if (options.processMetrics) collectDefaultMetrics({ register: registry, prefix: options.processMetricsPrefix, eventLoopMonitoringPrecision: 100 })
    new Gauge({
      name: 'fnbus_build_info',
      help: 'Always 1: the version of fnbus and of Node.js this gateway runs, as labels.',
      labelNames: ['version', 'nodejs'] as const,
      registers: [registry],
    }).set({ version: VERSION, nodejs: process.versions.node }, 1)

    // Label values of function names, bounded (see maxFunctions).
    const known = new Set<string>()
    const functionLabel = (name: string): string => {
      if (known.has(name)) return name
      if (known.size >= options.maxFunctions) return OTHER_FUNCTIONS
      known.add(name)
      return name
    }

    // The dispatcher's tallies, merged where function names are past maxFunctions (they share `_other`).
    interface Merged { readonly function: string, readonly type: string, readonly outcomes: Map<string, number>, readonly counts: number[], readonly bounds: readonly number[], sumSeconds: number, count: number }
    const tallies = (): Merged[] => {
      const merged = new Map<string, Merged>()
      for (const tally of gateway.invocations()) {
        const fn = tally.function === OTHER_FUNCTIONS ? OTHER_FUNCTIONS : functionLabel(tally.function)
        const key = `${tally.type} ${fn}`
        let into = merged.get(key)
        if (into === undefined) {
          into = { function: fn, type: tally.type, outcomes: new Map(), counts: tally.latency.counts.map(() => 0), bounds: tally.latency.bounds, sumSeconds: 0, count: 0 }
          merged.set(key, into)
        }
        for (const [outcome, n] of Object.entries(tally.outcomes)) into.outcomes.set(outcome, (into.outcomes.get(outcome) ?? 0) + (n ?? 0))
        for (let i = 0; i < into.counts.length; i++) into.counts[i] = (into.counts[i] as number) + (tally.latency.counts[i] ?? 0)
        into.sumSeconds += tally.latency.sumSeconds
        into.count += tally.latency.count
      }
      return [...merged.values()]
    }
    new CollectedMetric(registry, 'fnbus_invocations_total',
      'Invocations settled, by function, type (Sync, or one delivery attempt of an Async invocation) and outcome (ok, handled, unhandled, or an FNBUS_* error code).',
      'counter', () => {
        const values: MetricValue[] = []
        for (const tally of tallies()) {
          for (const [outcome, value] of tally.outcomes) values.push({ labels: { function: tally.function, type: tally.type, outcome }, value })
        }
        return values
      })
    new CollectedMetric(registry, 'fnbus_invocation_duration_seconds',
      'Time from the gateway taking an invocation to its outcome (waiting for a free worker included), by function and type. A sample above 8,000 calls a second per function and type: the first 8 of each millisecond are timed (fnbus_invocations_total counts every call).',
      'histogram', () => {
        return tallies().flatMap(tally => histogramValues('fnbus_invocation_duration_seconds', { function: tally.function, type: tally.type }, tally))
      })
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
    const limitsReached = new CounterFamily(registry, 'fnbus_limit_reached_total',
      'Connections cut or requests refused at a bound of limits, by its key (maxBufferedBytesPerClient, maxRegistrationsPerClient, …); calls refused are also counted in fnbus_invocations_total by their code.', ['limit'])
    const droppedMessages = new CounterFamily(registry, 'fnbus_dropped_messages_total',
      'Event messages not delivered to a subscriber or not kept, by reason (subscriber_buffer_full, session_queue_full, session_queues_full, retained_full).', ['reason'])
    const cutConnections = new CounterFamily(registry, 'fnbus_cut_connections_total',
      'Accepted connections the gateway cut for what they did since, by reason (slow_subscriber).', ['reason'])
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
        // every function served or supervised has its three samples, zero when its queue is empty: a sum or an alert
        // over them has something to read before the first Async invocation
        for (const name of [...gateway.stats().functions.map(fn => fn.name), ...gateway.instances().map(i => i.label.replace(/#\d+$/, ''))]) {
          const fn = functionLabel(name)
          for (const state of ['pending', 'in_flight', 'dead']) this.inc({ function: fn, state }, 0)
        }
        for (const queue of gateway.bus.queueStats()) {
          const fn = functionLabel(queue.fn)
          // pending counts the invocations being delivered too (they stay stored until settled)
          this.inc({ function: fn, state: 'pending' }, queue.pending - queue.inFlight)
          this.inc({ function: fn, state: 'in_flight' }, queue.inFlight)
          this.inc({ function: fn, state: 'dead' }, queue.dead)
        }
      },
    })
    // the supervised instances: each a process of its own or a thread of the gateway's, restarted on a crash
    const instanceLabels = (label: string): { function: string, instance: string } => ({ function: functionLabel(label.replace(/#\d+$/, '')), instance: label })
    new Gauge({
      name: 'fnbus_instance_up',
      help: 'Supervised function instances: 1 while its process is up and serving, 0 while it starts or waits to restart.',
      labelNames: ['function', 'instance'] as const,
      registers: [registry],
      collect () {
        this.reset()
        for (const instance of gateway.instances()) this.set(instanceLabels(instance.label), instance.ready ? 1 : 0)
      },
    })
    new CollectedMetric(registry, 'fnbus_instance_restarts_total', 'Restarts of a supervised function instance (crashes, hangs, memory over its limit) since the gateway started.',
      'counter', () => gateway.instances().map(instance => ({ labels: instanceLabels(instance.label), value: instance.restarts })))
    new Gauge({
      name: 'fnbus_instance_resident_memory_bytes',
      help: "Resident memory of a supervised function instance's process at its last heartbeat (every second).",
      labelNames: ['function', 'instance'] as const,
      registers: [registry],
      collect () {
        this.reset()
        for (const instance of gateway.instances()) if (instance.rssBytes !== undefined) this.set(instanceLabels(instance.label), instance.rssBytes)
      },
    })
    new Gauge({
      name: 'fnbus_instance_info',
      help: 'Supervised function instances, 1 each: how they are isolated (isolation="process" or "thread") and the process that hosts them (pid; a thread\'s is the gateway\'s, or its runtimeHost\'s, named by host).',
      labelNames: ['function', 'instance', 'isolation', 'pid', 'host'] as const,
      registers: [registry],
      collect () {
        this.reset()
        for (const instance of gateway.instances()) {
          this.set({ ...instanceLabels(instance.label), isolation: instance.isolation ?? 'process', pid: instance.pid === undefined ? '' : String(instance.pid), host: instance.host ?? '' }, 1)
        }
      },
    })
    for (const [name, help, field] of [
      ['fnbus_instance_heap_used_bytes', "V8 heap used by a supervised function instance (a thread's own isolate) at its last heartbeat.", 'heapUsedBytes'],
      ['fnbus_instance_heap_limit_bytes', "The most a supervised function instance's V8 heap may grow to (a thread's memoryLimitMb).", 'heapLimitBytes'],
    ] as const) {
      new Gauge({
        name,
        help,
        labelNames: ['function', 'instance'] as const,
        registers: [registry],
        collect () {
          this.reset()
          for (const instance of gateway.instances()) {
            const value = instance[field]
            if (value !== undefined) this.set(instanceLabels(instance.label), value)
          }
        },
      })
    }
    // the direct path between function threads: its calls count in fnbus_invocations_total as any other
    new Gauge({
      name: 'fnbus_direct_leases',
      help: "Direct-path leases held now: a function thread's connection calling a worker thread without the broker in between.",
      registers: [registry],
      collect () {
        this.set(gateway.bus.dispatcher.direct.leases)
      },
    })
    new CollectedMetric(registry, 'fnbus_direct_calls_total', 'Sync calls that settled on the direct path between function threads since the gateway started.',
      'counter', () => [{ labels: {}, value: gateway.bus.dispatcher.direct.calls }])
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
      name: 'fnbus_session_queue_messages',
      help: 'QoS 1/2 messages queued for persistent sessions (clean = 0), offline or awaiting acknowledgement (bounded by limits.maxSessionQueueMessages per session).',
      registers: [registry],
      collect () {
        this.set(gateway.brokerStorage().queuedMessages)
      },
    })
    new Gauge({
      name: 'fnbus_session_queue_bytes',
      help: 'Bytes queued for all persistent sessions: payload, topic and 128 bytes of record per message (bounded by limits.maxSessionQueueBytesTotal).',
      registers: [registry],
      collect () {
        this.set(gateway.brokerStorage().queuedBytes)
      },
    })
    new Gauge({
      name: 'fnbus_retained_messages',
      help: 'Retained messages stored (bounded by limits.maxRetainedMessages).',
      registers: [registry],
      collect () {
        this.set(gateway.brokerStorage().retainedMessages)
      },
    })
    new Gauge({
      name: 'fnbus_retained_bytes',
      help: 'Bytes of the retained messages: payload, topic and 128 bytes of record each (bounded by limits.maxRetainedBytes).',
      registers: [registry],
      collect () {
        this.set(gateway.brokerStorage().retainedBytes)
      },
    })
    // the bridges (docs/bridge.md#operations), read from their status at each scrape
    const bridges = (): ReturnType<NonNullable<typeof gateway.bridges>> => gateway.bridges?.() ?? []
    const perBridge = (name: string, help: string, type: 'counter' | 'gauge', value: (bridge: BridgeStatus) => number): void => {
      new CollectedMetric(registry, name, help, type, () => bridges().map(bridge => ({ labels: { bridge: bridge.name }, value: value(bridge) })))
    }
    perBridge('fnbus_bridge_connected', '1 while the bridge is connected to its remote broker.', 'gauge', bridge => bridge.connected ? 1 : 0)
    perBridge('fnbus_bridge_queued_messages', 'Outbound QoS 1 messages waiting for the remote broker\'s acknowledgement (on disk with a data directory).', 'gauge', bridge => bridge.queuedMessages)
    perBridge('fnbus_bridge_queued_bytes', 'Bytes of the outbound queue, as stored (bounded by the bridge\'s queue.maxBytes).', 'gauge', bridge => bridge.queuedBytes)
    perBridge('fnbus_bridge_sent_total', 'Outbound messages the remote broker took (QoS 1: acknowledged).', 'counter', bridge => bridge.sent)
    perBridge('fnbus_bridge_received_total', 'Inbound messages published locally.', 'counter', bridge => bridge.received)
    perBridge('fnbus_bridge_connection_failures_total', 'Connection attempts refused or failed, and connections lost.', 'counter', bridge => bridge.failures)
    new CollectedMetric(registry, 'fnbus_bridge_dropped_total',
      'Outbound messages dropped: by a queue bound (maxMessages, maxBytes, maxAgeMs, oldest first) or QoS 0 while disconnected (offline).',
      'counter', () => bridges().flatMap(bridge => Object.entries(bridge.dropped).map(([reason, value]) => ({ labels: { bridge: bridge.name, reason }, value }))))
    new CollectedMetric(registry, 'fnbus_bridge_received_dropped_total',
      'Inbound messages not published locally: refused by the policy, over a limit, or matching no rule.',
      'counter', () => bridges().flatMap(bridge => Object.entries(bridge.receivedDropped).map(([reason, value]) => ({ labels: { bridge: bridge.name, reason }, value }))))
    new CollectedMetric(registry, 'fnbus_bridge_refused',
      '1 while the remote broker refuses the bridge\'s connection (bad credentials, not authorized, client id refused) or keeps dropping it.',
      'gauge', () => bridges().map(bridge => ({ labels: { bridge: bridge.name }, value: !bridge.connected && /^(refused|keeps_dropping)/.test(bridge.lastFailure ?? '') ? 1 : 0 })))
    // the cluster (docs/cluster.md#operations), read from its status at each scrape
    const cluster = (): ClusterStatus | undefined => gateway.cluster?.()
    const members = (): ClusterStatus['members'] => cluster()?.members ?? []
    new CollectedMetric(registry, 'fnbus_cluster_connected', '1 while the gateway is connected to its cluster\'s NATS servers (absent outside a cluster).',
      'gauge', () => { const c = cluster(); return c === undefined ? [] : [{ labels: {}, value: c.state === 'connected' ? 1 : 0 }] })
    new CollectedMetric(registry, 'fnbus_cluster_members', 'Other gateways of the cluster this gateway hears from.',
      'gauge', () => { const c = cluster(); return c === undefined ? [] : [{ labels: {}, value: c.members.length }] })
    new CollectedMetric(registry, 'fnbus_cluster_dropped_total', 'Messages from other gateways dropped: malformed, from no known gateway, or over a bound.',
      'counter', () => { const c = cluster(); return c === undefined ? [] : [{ labels: {}, value: c.dropped }] })
    const perPeer = (name: string, help: string, value: (member: ClusterStatus['members'][number]) => number): void => {
      new CollectedMetric(registry, name, help, 'counter', () => members().map(m => ({ labels: { peer: m.name }, value: value(m) })))
    }
    const clusterEvents = (): NonNullable<ClusterStatus['events']> | undefined => cluster()?.events ?? undefined
    new CollectedMetric(registry, 'fnbus_cluster_events_exported_total', 'Ordinary messages this gateway sent to the other gateways of its cluster.',
      'counter', () => { const e = clusterEvents(); return e === undefined ? [] : [{ labels: {}, value: e.exported }] })
    new CollectedMetric(registry, 'fnbus_cluster_events_imported_total', 'Messages from the other gateways of the cluster routed here.',
      'counter', () => { const e = clusterEvents(); return e === undefined ? [] : [{ labels: {}, value: e.imported }] })
    new CollectedMetric(registry, 'fnbus_cluster_events_dropped_total', 'Messages not carried between gateways, by reason (docs/cluster.md#events).',
      'counter', () => { const e = clusterEvents(); return e === undefined ? [] : Object.entries(e.drops).map(([reason, value]) => ({ labels: { reason }, value })) })
    perPeer('fnbus_cluster_calls_sent_total', 'Calls this gateway handed to another gateway\'s workers.', m => m.calls.sent)
    perPeer('fnbus_cluster_calls_answered_total', 'Calls another gateway answered (its function\'s outcome or an error).', m => m.calls.answered)
    perPeer('fnbus_cluster_calls_served_total', 'Calls another gateway handed to this gateway\'s workers.', m => m.calls.served)
    new CollectedMetric(registry, 'fnbus_cluster_call_duration_seconds',
      'Round trip of the calls handed to another gateway, from the hand-over to its answer, by gateway.',
      'histogram', () => members().flatMap(m => histogramValues('fnbus_cluster_call_duration_seconds', { peer: m.name }, m.latency)))
    new Gauge({
      name: 'fnbus_store_healthy',
      help: '1 while the Async store accepts writes; 0 from a failed write (disk full, I/O error) until the database has reopened and written again, Async invocations being refused with FNBUS_STORE_FAILURE meanwhile.',
      registers: [registry],
      collect () {
        this.set(gateway.health().store ? 1 : 0)
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

    const onAccepted = (o: { readonly function: string }): void => { accepted.cell(functionLabel(o.function)).value++ }
    const onRetry = (o: { readonly function: string }): void => { retries.cell(functionLabel(o.function)).value++ }
    const onDeadLetter = (o: { readonly function: string }): void => { deadLetters.cell(functionLabel(o.function)).value++ }
    const onRejected = (o: { readonly reason: string }): void => { rejected.cell(o.reason).value++ }
    const onDropped = (o: { readonly reason: string }): void => { dropped.cell(o.reason).value++ }
    const onLimit = (o: { readonly limit: string }): void => { limitsReached.cell(o.limit).value++ }
    const onMessageDropped = (o: { readonly reason: string }): void => { droppedMessages.cell(o.reason).value++ }
    const onConnectionCut = (o: { readonly reason: string }): void => { cutConnections.cell(o.reason).value++ }
    const onEventMessage = (o: { readonly direction: 'in' | 'out' }): void => {
      if (o.direction === 'in') eventsIn.value++
      else eventsOut.value++
    }
    const listeners = [
      ['accepted', onAccepted],
      ['retry', onRetry],
      ['deadLetter', onDeadLetter],
      ['rejected', onRejected],
      ['frameDropped', onDropped],
      ['eventMessage', onEventMessage],
      ['limitReached', onLimit],
      ['messageDropped', onMessageDropped],
      ['connectionCut', onConnectionCut],
    ] as const
    for (const [name, listener] of listeners) events.on(name, listener as never)
    this.#stop = () => {
      for (const [name, listener] of listeners) events.off(name, listener as never)
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
  const processMetricsPrefix = block.processMetricsPrefix ?? ''
  if (typeof processMetricsPrefix !== 'string' || !/^([a-zA-Z_:][a-zA-Z0-9_:]*)?$/.test(processMetricsPrefix)) throw fail(`processMetricsPrefix must be a metric name prefix such as "fnbus_", got ${JSON.stringify(processMetricsPrefix)}`)
  const maxFunctions = block.maxFunctions ?? 1000
  if (typeof maxFunctions !== 'number' || !Number.isSafeInteger(maxFunctions) || maxFunctions < 1) throw fail(`maxFunctions must be an integer ≥ 1, got ${JSON.stringify(maxFunctions)}`)
  return { path, processMetrics, processMetricsPrefix, maxFunctions }
}
