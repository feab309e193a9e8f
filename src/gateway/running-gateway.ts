import type { Server, Socket } from 'node:net'
import type { Aedes } from 'aedes'
import type { BrokerStorage } from '../broker/client-bounds.js'
import type { Bridges } from '../bridge/bridges.js'
import type { BridgeStatus } from '../bridge/status.js'
import type { Cluster } from '../cluster/cluster.js'
import type { ClusterStatus } from '../cluster/status.js'
import type { EventHandler, FunctionBus, InvokeOptions, PublishOptions, ServedFunction, ServeOptions } from '../broker/function-bus.js'
import type { InvocationTallySnapshot } from '../dispatcher/tally.js'
import { FnbusError } from '../errors.js'
import type { HostAllowList } from '../http/hosts.js'
import type { GatewayHttpServer } from '../http/server.js'
import { sendJson } from '../http/send-json.js'
import type { Logger } from '../logger.js'
import type { GatewayEvents } from '../observations.js'
import type {
  DeadLetterStatus, FunctionStatus, Gateway, GatewayPlugin, GatewayStatus, HealthStatus, HttpRoutes, InstanceSource, InstanceStatus,
  PluginContext, StatusOptions,
} from '../plugins.js'
import type { Handler } from '../runtime/handler.js'
import type { IssuedCredentials } from '../security/authenticate.js'
import type { Database } from '../store/database.js'
import type { DiskSpace } from '../store/disk-space.js'
import type { DeadInvocation, InvocationStore } from '../store/types.js'
import { VERSION } from '../version.js'

export interface UnixSocketListener {
  readonly server: Server
  /** The socket file, resolved. */
  readonly path: string
}

/** What createGateway has opened and started, handed to the gateway that runs it and closes it. */
export interface RunningGatewayOptions {
  readonly aedes: Aedes
  readonly bus: FunctionBus
  /** The MQTT listener: TCP, or TLS when `tls`. */
  readonly server: Server
  readonly tls: boolean
  /** Where `server` listens (the port it got when 0 was asked for). */
  readonly port: number
  readonly host: string
  /** The store the gateway opened itself (and so closes); undefined for one the host gave. */
  readonly ownStore: InvocationStore | undefined
  readonly db: Database | undefined
  readonly httpServer: GatewayHttpServer | undefined
  /** The Unix socket listener, when there is one. */
  readonly unixSocket: UnixSocketListener | undefined
  /** The names HTTP requests may use in `Host`. */
  readonly allowedHosts: HostAllowList
  /** What the broker keeps for clients now. */
  readonly brokerStorage: () => BrokerStorage
  /** Watches the data directory's free space; stopped on close. */
  readonly diskSpace: DiskSpace | undefined
  /** The exposure rule, for listeners the plugins open (see exposure.ts). */
  readonly checkExposure: (host: string, key: string) => void
  /** The bridges to remote brokers, when there are any. */
  readonly bridges?: Bridges | undefined
  /** The gateway's membership of a cluster, when it has one. */
  readonly cluster?: Cluster | undefined
}

/** A started gateway: what createGateway returns. */
export class RunningGateway implements Gateway {
  readonly url: string
  readonly socketUrl: string | undefined
  readonly startedAt = Date.now()
  /** For the uptime: monotonic, whatever the wall clock does after the start. */
  readonly #startedMonotonic = performance.now()
  /** Open client sockets, raw TCP under TLS too. */
  readonly sockets = new Set<Socket>()
  #closing: Promise<void> | undefined
  readonly #instanceSources: InstanceSource[] = []
  /** Started plugins, in start order (stopped in reverse). */
  readonly #started: GatewayPlugin[] = []
  readonly aedes: Aedes
  readonly bus: FunctionBus
  readonly server: Server
  /** The store the gateway opened itself (and so closes). */
  readonly ownStore: InvocationStore | undefined
  readonly db: Database | undefined
  readonly port: number
  readonly host: string
  readonly httpServer: GatewayHttpServer | undefined
  /** The Unix socket listener, when there is one. */
  readonly unixSocket: UnixSocketListener | undefined
  readonly allowedHosts: HostAllowList
  readonly brokerStorage: () => BrokerStorage
  readonly checkExposure: (host: string, key: string) => void
  readonly #diskSpace: DiskSpace | undefined
  readonly #bridges: Bridges | undefined
  readonly #cluster: Cluster | undefined

  constructor (options: RunningGatewayOptions) {
    this.aedes = options.aedes
    this.bus = options.bus
    this.server = options.server
    this.ownStore = options.ownStore
    this.db = options.db
    this.port = options.port
    this.host = options.host
    this.httpServer = options.httpServer
    this.unixSocket = options.unixSocket
    this.allowedHosts = options.allowedHosts
    this.brokerStorage = options.brokerStorage
    this.checkExposure = options.checkExposure
    this.#diskSpace = options.diskSpace
    this.#bridges = options.bridges
    this.#cluster = options.cluster
    const { bus, server, host, port, tls, httpServer, unixSocket } = options
    this.url = `${tls ? 'mqtts' : 'mqtt'}://${host.includes(':') ? `[${host}]` : host}:${port}`
    this.socketUrl = unixSocket === undefined ? undefined : `mqtt+unix://${unixSocket.path}`
    for (const listener of unixSocket === undefined ? [server] : [server, unixSocket.server]) {
      listener.on('connection', (socket: Socket) => {
        this.sockets.add(socket)
        socket.once('close', () => this.sockets.delete(socket))
      })
    }
    bus.provideStatus(visible => this.status({ visible }))
    // a caller of a function whose supervised instances keep failing to start learns why, not only that none serves it
    bus.dispatcher.explainMissing(name => {
      const failing = this.instances().find(instance => instance.label.startsWith(name + '#') && !instance.ready && instance.lastFailure !== undefined)
      return failing === undefined ? undefined : `its supervised instance ${failing.label} keeps failing to start (${failing.lastFailure as string})`
    })
    if (httpServer !== undefined) this.#routeCore(httpServer)
  }

  issueCredentials (identity: string): IssuedCredentials {
    return this.bus.authenticator.issue(identity)
  }

  get events (): GatewayEvents {
    return this.bus.events
  }

  get http (): HttpRoutes | undefined {
    return this.httpServer
  }

  get httpUrl (): string | undefined {
    return this.httpServer?.url
  }

  /** The oldest dead letters: of every function, or of those in `queues` only when the status is filtered. */
  async #deadLetters (queues: readonly { readonly fn: string, readonly dead: number }[], limit: number, filtered: boolean): Promise<DeadInvocation[]> {
    if (!filtered) return await this.bus.listDead(undefined, limit)
    const lists = await Promise.all(queues.filter(q => q.dead > 0).map(q => this.bus.listDead(q.fn, limit)))
    return lists.flat().sort((a, b) => a.diedAt - b.diedAt).slice(0, limit)
  }

  /** `/healthz` and `/api/status`: the gateway's own routes, there whatever plugins run. */
  #routeCore (http: GatewayHttpServer): void {
    http.route('GET', '/healthz', (_req, res) => {
      const health = this.health()
      sendJson(res, health.ready ? 200 : 503, health)
    })
    http.route('GET', '/api/status', async (_req, res, { url, identity }) => {
      const limit = Number(url.searchParams.get('deadLetters') ?? 20)
      sendJson(res, 200, await this.status({
        deadLetterLimit: Number.isSafeInteger(limit) && limit >= 0 ? Math.min(limit, 1000) : 20,
        visible: this.bus.manageableBy(identity),
      }))
    })
  }

  /** Starts each plugin in order; if one fails, those started are stopped and the error names the plugin. */
  async startPlugins (plugins: readonly { readonly plugin: GatewayPlugin, readonly config: unknown }[]): Promise<void> {
    const logger = this.bus.options.logger
    for (const { plugin, config } of plugins) {
      const context: PluginContext = {
        gateway: this,
        config: config ?? {},
        logger: childLogger(logger, plugin.name),
        events: this.bus.events,
        http: this.httpServer,
      }
      try {
        await plugin.start(context)
      } catch (err) {
        if (err instanceof FnbusError) throw new FnbusError(err.code, `plugin ${plugin.name}: ${err.message}`, { cause: err })
        throw new FnbusError('FNBUS_CONFIG_INVALID', `plugin ${plugin.name} failed to start: ${(err as Error).message}`, { cause: err })
      }
      this.#started.push(plugin)
    }
  }

  attachInstances (source: InstanceSource): void {
    this.#instanceSources.push(source)
  }

  bridges (): BridgeStatus[] {
    return this.#bridges?.status() ?? []
  }

  /** The gateway's cluster (docs/cluster.md#operations); undefined when it is not in one. */
  cluster (): ClusterStatus | undefined {
    return this.#cluster?.status()
  }

  instances (): InstanceStatus[] {
    return this.#instanceSources.flatMap(source => [...source.instances()])
  }

  health (): HealthStatus {
    const broker = this.server.listening && !this.aedes.closed
    // false from a failed write (disk full) until the database has reopened and written again
    const store = this.db === undefined ? true : this.db.healthy
    const functions = this.instances().every(instance => instance.ready)
    if (this.#cluster === undefined) return { ready: broker && store && functions, broker, store, functions }
    // a gateway that lost NATS still serves its own clients: unhealthy for the cluster, not down
    const cluster = this.#cluster.connected
    return { ready: broker && store && functions && cluster, broker, store, functions, cluster }
  }

  async status (options: StatusOptions = {}): Promise<GatewayStatus> {
    const visible = options.visible ?? (() => true)
    const stats = this.bus.stats()
    const queues = this.bus.queueStats().filter(q => visible(q.fn))
    const instances = this.instances().filter(instance => visible(instance.label.replace(/#\d+$/, '')))
    const names = new Set<string>([...stats.functions.map(f => f.name).filter(visible), ...queues.map(q => q.fn)])
    const instancesOf = new Map<string, InstanceStatus[]>()
    for (const instance of instances) {
      const name = instance.label.replace(/#\d+$/, '')
      names.add(name)
      instancesOf.set(name, [...instancesOf.get(name) ?? [], instance])
    }
    const functions: FunctionStatus[] = [...names].sort().map(name => {
      const fn = stats.functions.find(f => f.name === name)
      const queue = queues.find(q => q.fn === name)
      const workers = fn?.workers ?? []
      const status: FunctionStatus = {
        name,
        workers: workers.map(w => ({ label: w.label, concurrency: w.concurrency, inFlight: w.inFlight })),
        queued: fn?.queued ?? 0,
        inFlight: workers.reduce((sum, w) => sum + w.inFlight, 0),
        async: { pending: queue?.pending ?? 0, inFlight: queue?.inFlight ?? 0, dead: queue?.dead ?? 0 },
        instances: instancesOf.get(name) ?? [],
      }
      return queue?.unknown === true && !instancesOf.has(name) ? { ...status, unknown: true } : status
    })
    const limit = options.deadLetterLimit ?? 20
    // oldest first, as `fnbus queue dead` lists them: the store reads them in order and stops at `limit`
    const dead = limit > 0 && queues.some(q => q.dead > 0) ? await this.#deadLetters(queues, limit, options.visible !== undefined) : []
    const deadLetters: DeadLetterStatus[] = dead.map(d => ({
      invocationId: d.id,
      function: d.fn,
      attempts: d.attempts,
      createdAt: d.createdAt,
      diedAt: d.diedAt,
      error: d.lastError,
      payloadBytes: d.payload.length,
    }))
    return {
      version: VERSION,
      startedAt: this.startedAt,
      uptimeMs: Math.round(performance.now() - this.#startedMonotonic),
      url: this.url,
      httpUrl: this.httpUrl,
      health: this.health(),
      connections: {
        clients: this.aedes.connectedClients,
        busClients: stats.sessions,
        workers: functions.reduce((sum, f) => sum + f.workers.length, 0),
      },
      direct: this.bus.dispatcher.direct,
      functions,
      deadLetters,
      bridges: this.bridges(),
      ...this.#cluster === undefined ? {} : { cluster: this.#cluster.status() },
    }
  }

  serve (name: string, handler: Handler, options?: ServeOptions): Promise<ServedFunction> {
    return this.bus.serve(name, handler, options)
  }

  invoke (name: string, payload?: unknown, options?: InvokeOptions): Promise<unknown> {
    return this.bus.invoke(name, payload, options)
  }

  publish (topic: string, payload: unknown, options?: PublishOptions): Promise<void> {
    return this.bus.publish(topic, payload, options)
  }

  subscribe (filter: string, handler: EventHandler): Promise<() => Promise<void>> {
    return this.bus.subscribe(filter, handler)
  }

  stats (): ReturnType<FunctionBus['stats']> {
    return this.bus.stats()
  }

  invocations (): InvocationTallySnapshot[] {
    return this.bus.dispatcher.tallies()
  }

  close (): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close (): Promise<void> {
    for (const plugin of [...this.#started].reverse()) {
      try {
        await plugin.stop?.()
      } catch (err) {
        this.bus.options.logger.error({ err, plugin: plugin.name }, 'a plugin failed to stop')
      }
    }
    // Stop accepting at once, but wait for the end only after aedes has closed its clients: MQTT-over-WebSocket
    // connections on the HTTP port (the websocket plugin) hold it open until then.
    const httpClosed = this.httpServer?.close()
    const serverClosed = new Promise<void>(resolve => this.server.close(() => resolve()))
    // net.Server removes its socket file as it closes
    const socketClosed = this.unixSocket === undefined ? undefined : new Promise<void>(resolve => this.unixSocket?.server.close(() => resolve()))
    this.#diskSpace?.stop()
    // the other gateways stop handing calls to this one while its own calls drain
    this.#cluster?.leave()
    await this.bus.close()
    await new Promise<void>(resolve => this.aedes.close(() => resolve()))
    // aedes closed the clients it had registered; one that took over a session in that very moment registers
    // after the close (aedes answers its CONNACK first) and would hold server.close() open for ever
    for (const socket of this.sockets) socket.destroy()
    await serverClosed
    await socketClosed
    await httpClosed
    // once aedes routes nothing more to them, and before the database closes: what they queued is on disk
    await this.#bridges?.close()
    await this.#cluster?.close()
    await this.ownStore?.close()
    await this.db?.close()
  }
}

/** pino's child loggers carry the plugin's name on every line; a plain Logger is used as it is. */
function childLogger (logger: Logger, plugin: string): Logger {
  const withChild = logger as Logger & { child?: (bindings: object) => Logger }
  return typeof withChild.child === 'function' ? withChild.child({ plugin }) : logger
}
