import { connect, createServer, isIP, type Server, type Socket } from 'node:net'
import { lstat, unlink } from 'node:fs/promises'
import { resolve as resolvePath } from 'node:path'
import type { AddressInfo } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import { Aedes } from 'aedes'
import aedesPersistenceLevel from 'aedes-persistence-level'
import { FnbusError } from './errors.js'
import { attachFunctionBus, type EventHandler, type FunctionBus, type InvokeOptions, type PublishOptions, type ServedFunction, type ServeOptions } from './broker/function-bus.js'
import type { FunctionStats } from './dispatcher/index.js'
import type { InvocationTallySnapshot } from './dispatcher/tally.js'
import { configError } from './errors.js'
import { DEFAULT_LIMITS } from './limits.js'
import { silentLogger, type Logger } from './logger.js'
import type { BusOptions } from './options.js'
import type { Handler } from './runtime/handler.js'
import type { IssuedCredentials } from './security/authenticate.js'
import { openDatabase, type Database } from './store/database.js'
import { DiskSpace } from './store/disk-space.js'
import { LevelInvocationStore } from './store/level-store.js'
import { LevelClientIdStore } from './store/client-id-store.js'
import { MemoryInvocationStore } from './store/memory-store.js'
import type { DeadInvocation, InvocationStore } from './store/types.js'
import { GatewayHttpServer, sendJson } from './http/server.js'
import { HostAllowList, parseAllowedHosts } from './http/hosts.js'
import { boundClientState, type BrokerStorage } from './broker/client-bounds.js'
import { HTTP_AUTH_MODES, identityAuthorizer, type HttpAuthMode } from './http/identity-auth.js'
import {
  type Gateway, type StatusOptions, BUILTIN_PLUGINS, type DeadLetterStatus, type FunctionStatus, type GatewayPlugin, type GatewayStatus, type HealthStatus, type HttpAuthorizer, type HttpRoutes, type InstanceSource, type InstanceStatus, type PluginContext, type PluginFactory } from './plugins.js'
import type { GatewayEvents } from './observations.js'
import { VERSION } from './version.js'

/** `http` of the options and the config: the operator's HTTP port (health, status, plugins' routes). */
export interface HttpOptions {
  /** 0 picks a free port. */
  readonly port: number
  /** Default 127.0.0.1: this machine only. */
  readonly host?: string
  /**
   * Who may use the port beyond the default (requests from loopback, read-only routes): an authorizer of the
   * host's. Or see `auth`.
   */
  readonly authorize?: HttpAuthorizer
  /**
   * `'basic'`: operators sign in with HTTP Basic as one of the gateway's identities (`identities`); reads from
   * other machines and every action need it, actions under a policy a `manage` grant too. Not with `authorize`.
   */
  readonly auth?: HttpAuthMode
  /**
   * Names (`gateway.example.com`, or `.example.com` for a domain and every name under it) that requests may carry
   * in `Host` besides those always allowed (IP addresses, localhost, the machine's host name, the listen
   * addresses): a request naming another host gets no trust from its address (DNS rebinding).
   */
  readonly allowedHosts?: readonly string[]
}

export { BUILTIN_PLUGINS }

export interface GatewayOptions extends BusOptions {
  /** Default 1883; 0 picks a free port. */
  readonly port?: number
  /** Default 127.0.0.1 (loopback only). */
  readonly host?: string
  /** Where the LevelDB store lives. Default `./data`. */
  readonly dataDir?: string
  /** Keep everything in memory: nothing survives a restart. */
  readonly memory?: boolean
  /**
   * fsync every store write, so that accepted Async invocations survive a power loss. Default true; false accepts
   * faster (about a fifth more, measured) and survives a crash or kill of the gateway process, not a power cut.
   */
  readonly fsync?: boolean
  /** The HTTP port for operators (`/healthz`, `/api/status`, plugins' routes); none when undefined. */
  readonly http?: HttpOptions
  /**
   * Plugins to start, in order: objects satisfying GatewayPlugin, or names of built-ins (`'metrics'`, …). An
   * object `{ metrics: {…}, routes: {…} }` (the config's shape) starts those built-ins with those blocks.
   */
  readonly plugins?: readonly (GatewayPlugin | string)[] | Readonly<Record<string, unknown>>
  /** Each plugin's configuration block, by plugin name, when `plugins` is an array. */
  readonly pluginConfig?: Readonly<Record<string, unknown>>
  /** Listen with TLS (`mqtts://`): the certificate (its chain after it) and private key, PEM contents, not paths. */
  readonly tls?: TlsOptions
  /**
   * Also listen on this Unix domain socket (a file path), for clients on this machine: `mqtt+unix://PATH`. A hop
   * through it costs about two thirds of one through TCP on loopback, and only users the file's mode lets write to
   * it can connect (with the usual umask 022, its owner). Plain MQTT, whatever `tls` says; identities and policy
   * apply as on the port. A file left by a gateway that died is replaced; one a live process listens on is an error.
   */
  readonly socket?: string
}

export interface TlsOptions {
  readonly cert: string | Buffer
  readonly key: string | Buffer
}

export type { Gateway, StatusOptions }
export type { FunctionStats, BrokerStorage }

/** Starts aedes with the function bus, its persistence and its TCP listener. */
export async function createGateway (options: GatewayOptions = {}): Promise<Gateway> {
  const port = options.port ?? 1883
  const host = options.host ?? '127.0.0.1'
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw configError(`port must be an integer 0–65535, got ${JSON.stringify(port)}`)
  if (options.tls !== undefined && (options.tls.cert === undefined || options.tls.key === undefined)) throw configError('tls needs both cert and key')

  const plugins = await resolvePlugins(options)
  const allowedHosts = new HostAllowList([
    ...parseAllowedHosts(options.http?.allowedHosts, 'http.allowedHosts') ?? [],
    host, ...options.http?.host === undefined ? [] : [options.http.host],
  ])
  const db: Database | undefined = options.memory === true ? undefined : await openDatabase(options.dataDir ?? './data', { logger: options.logger })
  let aedes: Aedes | undefined
  let diskSpace: DiskSpace | undefined
  let server: Server | undefined
  let socketServer: Server | undefined
  let store: InvocationStore | undefined
  let http: GatewayHttpServer | undefined
  let gateway: RunningGateway | undefined
  try {
    store = options.store ?? (db === undefined ? new MemoryInvocationStore() : new LevelInvocationStore(db, { sync: options.fsync !== false }))
    if (options.store === undefined) await store.open()
    const aedesRecords = db?.sublevel<string, Buffer>('aedes', { valueEncoding: 'buffer' })
    // after a failed write the database closes and reopens, its sublevels with it
    if (aedesRecords !== undefined) db?.onReopen(() => aedesRecords.open())
    aedes = await Aedes.createBroker({
      // keep aedes' random broker id: a fixed one makes restarts overwrite queued messages (docs/design.md, pitfall 2)
      persistence: aedesRecords === undefined ? undefined : aedesPersistenceLevel(aedesRecords),
      maxClientsIdLength: 128,
      // No bound on the messages aedes' router (mqemitter) has in flight: past its bound it queues them, and when the
      // subscribers of queued messages are gone, each completes inside the completion of the one before; a subscriber
      // leaving during a burst of 50,000 PUBLISHes overflowed the stack and killed the gateway. What it bounded, the
      // messages waiting for slow subscribers, is bounded per subscriber (limits.maxEventBufferBytes).
      concurrency: 0,
    })
    // the bus validates the limit; a data directory on disk is watched for room, one in memory is not
    diskSpace = db === undefined ? undefined : new DiskSpace(db.location, options.limits?.minFreeDiskBytes ?? DEFAULT_LIMITS.minFreeDiskBytes, options.logger ?? silentLogger)
    const bus = attachFunctionBus(aedes, { ...options, store, diskSpace, clientIdStore: options.clientIdStore ?? (db === undefined ? undefined : new LevelClientIdStore(db)) })
    await diskSpace?.start()
    const brokerStorage = await boundClientState(aedes, aedesRecords, bus.options, bus.events)
    await bus.authenticator.ready()
    checkExposure(host, options, bus, options.logger)
    if (options.http !== undefined) {
      refuseAnonymousExposure(options.http.host ?? '127.0.0.1', 'http.host', 'reach the HTTP port, and MQTT over WebSocket on it, without an identity', options, bus)
    }
    server = options.tls === undefined ? createServer(bus.handle) : createTlsListener(options.tls, bus, options.logger)
    await listen(server, port, host)
    const address = server.address() as AddressInfo
    const socketPath = options.socket === undefined ? undefined : resolvePath(options.socket)
    if (socketPath !== undefined) {
      socketServer = createServer(bus.handle)
      await listenOnSocket(socketServer, socketPath)
    }
    if (options.http !== undefined) http = await GatewayHttpServer.listen({ ...httpOptions(options.http, bus), allowedHosts }, bus.options.logger)
    gateway = new RunningGateway(aedes, bus, server, options.store === undefined ? store : undefined, db, address.port, host, options.tls !== undefined, http,
      socketServer === undefined ? undefined : { server: socketServer, path: socketPath as string },
      { allowedHosts, brokerStorage, diskSpace, checkExposure: (listenHost, key) => refuseAnonymousExposure(listenHost, key, 'connect to the bus anonymously and invoke every function', options, bus) })
    await gateway.startPlugins(plugins.map(({ plugin, config }) => ({ plugin, config })))
    return gateway
  } catch (err) {
    if (gateway !== undefined) {
      await gateway.close()
      throw err
    }
    diskSpace?.stop()
    await http?.close()
    server?.close()
    socketServer?.close()
    if (aedes !== undefined) await new Promise<void>(resolve => aedes?.close(() => resolve()))
    if (options.store === undefined) await store?.close()
    await db?.close()
    throw err
  }
}

class RunningGateway implements Gateway {
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
  readonly allowedHosts: HostAllowList
  readonly brokerStorage: () => BrokerStorage
  readonly checkExposure: (host: string, key: string) => void
  readonly #diskSpace: DiskSpace | undefined

  constructor (
    readonly aedes: Aedes,
    readonly bus: FunctionBus,
    readonly server: Server,
    /** The store the gateway opened itself (and so closes). */
    readonly ownStore: InvocationStore | undefined,
    readonly db: Database | undefined,
    readonly port: number,
    readonly host: string,
    tls: boolean,
    readonly httpServer: GatewayHttpServer | undefined,
    /** The Unix socket listener, when there is one. */
    readonly unixSocket: { readonly server: Server, readonly path: string } | undefined,
    /** What guards the gateway's edges: the names HTTP requests may use, the exposure rule, the broker's bounded storage. */
    edges: { readonly allowedHosts: HostAllowList, readonly brokerStorage: () => BrokerStorage, readonly diskSpace: DiskSpace | undefined, readonly checkExposure: (host: string, key: string) => void },
  ) {
    this.allowedHosts = edges.allowedHosts
    this.brokerStorage = edges.brokerStorage
    this.checkExposure = edges.checkExposure
    this.#diskSpace = edges.diskSpace
    this.url = `${tls ? 'mqtts' : 'mqtt'}://${host.includes(':') ? `[${host}]` : host}:${port}`
    this.socketUrl = unixSocket === undefined ? undefined : `mqtt+unix://${unixSocket.path}`
    for (const listener of unixSocket === undefined ? [server] : [server, unixSocket.server]) {
      listener.on('connection', (socket: Socket) => {
        this.sockets.add(socket)
        socket.once('close', () => this.sockets.delete(socket))
      })
    }
    bus.provideStatus(visible => this.status({ visible }))
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

  #instances (): InstanceStatus[] {
    return this.#instanceSources.flatMap(source => [...source.instances()])
  }

  health (): HealthStatus {
    const broker = this.server.listening && !this.aedes.closed
    // false from a failed write (disk full) until the database has reopened and written again
    const store = this.db === undefined ? true : this.db.healthy
    const functions = this.#instances().every(instance => instance.ready)
    return { ready: broker && store && functions, broker, store, functions }
  }

  async status (options: StatusOptions = {}): Promise<GatewayStatus> {
    const visible = options.visible ?? (() => true)
    const stats = this.bus.stats()
    const queues = this.bus.queueStats().filter(q => visible(q.fn))
    const instances = this.#instances().filter(instance => visible(instance.label.replace(/#\d+$/, '')))
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
      return {
        name,
        workers: workers.map(w => ({ label: w.label, concurrency: w.concurrency, inFlight: w.inFlight })),
        queued: fn?.queued ?? 0,
        inFlight: workers.reduce((sum, w) => sum + w.inFlight, 0),
        async: { pending: queue?.pending ?? 0, inFlight: queue?.inFlight ?? 0, dead: queue?.dead ?? 0 },
        instances: instancesOf.get(name) ?? [],
      }
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
      functions,
      deadLetters,
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
    await this.bus.close()
    await new Promise<void>(resolve => this.aedes.close(() => resolve()))
    // aedes closed the clients it had registered; one that took over a session in that very moment registers
    // after the close (aedes answers its CONNACK first) and would hold server.close() open for ever
    for (const socket of this.sockets) socket.destroy()
    await serverClosed
    await socketClosed
    await httpClosed
    await this.ownStore?.close()
    await this.db?.close()
  }
}

/** The plugins `options` name, built-ins loaded, with each one's configuration block. */
async function resolvePlugins (options: GatewayOptions): Promise<{ plugin: GatewayPlugin, config: unknown }[]> {
  const given = options.plugins
  if (given === undefined) return []
  let entries: [GatewayPlugin | string, unknown][]
  if (Array.isArray(given)) {
    const blocks = options.pluginConfig ?? {}
    entries = (given as readonly (GatewayPlugin | string)[]).map(entry => {
      const name = typeof entry === 'string' ? entry : entry?.name
      return [entry, typeof name === 'string' && Object.hasOwn(blocks, name) ? blocks[name] : undefined]
    })
  } else if (typeof given === 'object' && given !== null) {
    entries = Object.entries(given)
  } else {
    throw configError('plugins must be an array of plugins (or built-in names) or an object of built-in names to their configuration')
  }
  const out: { plugin: GatewayPlugin, config: unknown }[] = []
  const names = new Set<string>()
  for (const [entry, config] of entries) {
    const plugin = typeof entry === 'string' ? await loadBuiltin(entry) : entry
    if (plugin === null || typeof plugin !== 'object' || typeof plugin.name !== 'string' || plugin.name === '' || typeof plugin.start !== 'function') {
      throw configError('a plugin is an object with a name and a start(context) method')
    }
    if (names.has(plugin.name)) throw configError(`plugin ${plugin.name} is given twice`)
    names.add(plugin.name)
    out.push({ plugin, config })
  }
  return out
}

async function loadBuiltin (name: string): Promise<GatewayPlugin> {
  if (!BUILTIN_PLUGINS.includes(name)) {
    throw configError(`plugins: no built-in plugin "${name}" (built-ins: ${BUILTIN_PLUGINS.join(', ')})`)
  }
  const module = await import(`./plugins/${name}/index.js`) as { default?: PluginFactory }
  if (typeof module.default !== 'function') throw configError(`built-in plugin ${name} has no default factory`)
  return module.default()
}

/** pino's child loggers carry the plugin's name on every line; a plain Logger is used as it is. */
function childLogger (logger: Logger, plugin: string): Logger {
  const withChild = logger as Logger & { child?: (bindings: object) => Logger }
  return typeof withChild.child === 'function' ? withChild.child({ plugin }) : logger
}

/** True for addresses only this machine reaches: 127.0.0.0/8, ::1, localhost. */
export function isLoopback (host: string): boolean {
  if (host === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  const v6 = host.toLowerCase()
  return v6 === '::1' || v6 === '0:0:0:0:0:0:0:1' || v6.startsWith('::ffff:127.')
}

/**
 * The gateway refuses to listen beyond loopback while anyone may connect anonymously by default (no identity
 * configured): a function bus open to the network lets every host on it invoke every function. Saying
 * `allowAnonymous: true` is the operator's explicit choice to do that anyway.
 */
function checkExposure (host: string, options: GatewayOptions, bus: FunctionBus, logger: GatewayOptions['logger']): void {
  if (isLoopback(host)) return
  refuseAnonymousExposure(host, 'host', 'invoke every function', options, bus)
  if (options.tls === undefined) logger?.warn({ host }, 'listening beyond loopback without TLS: passwords and payloads cross the network in clear')
}

/**
 * The rule of every listener (MQTT, the HTTP port, a plugin's WebSocket port): none listens beyond loopback while
 * anonymous clients are accepted by default. `key` names the setting, `consequence` what anyone could then do.
 */
function refuseAnonymousExposure (host: string, key: string, consequence: string, options: GatewayOptions, bus: FunctionBus): void {
  if (isLoopback(host)) return
  if (options.allowAnonymous === undefined && bus.authenticator.anonymousAllowed) {
    throw configError(`${key} ${host} is reachable beyond this machine, and no identity is configured: anyone who can reach it could ${consequence}. ` +
      'Create one with "fnbus identity add NAME" (or give identities), or set allowAnonymous: true (fnbus start --allow-anonymous) to accept anonymous clients on purpose')
  }
}

function createTlsListener (tls: TlsOptions, bus: FunctionBus, logger: GatewayOptions['logger']): Server {
  const server = createTlsServer({ cert: tls.cert, key: tls.key }, socket => bus.handle(socket))
  // a failed handshake (a client that does not trust the certificate, plain MQTT on the TLS port) concerns that client only
  server.on('tlsClientError', (err: Error) => logger?.debug({ err }, 'TLS handshake failed'))
  return server
}

/** The HTTP port's options, its authorizer made from the gateway's identities when `auth` asks for it. */
function httpOptions (options: HttpOptions, bus: FunctionBus): HttpOptions {
  if (options.auth === undefined) return options
  if (!HTTP_AUTH_MODES.includes(options.auth)) throw configError(`http.auth must be one of ${HTTP_AUTH_MODES.join(', ')}, got ${JSON.stringify(options.auth)}`)
  if (options.authorize !== undefined) throw configError('give http.auth or http.authorize, not both')
  return { ...options, authorize: identityAuthorizer(bus.authenticator, bus.options.policy) }
}

/**
 * Listens on the Unix socket `path`. A file already there is either a live listener's (an error: another gateway
 * uses it) or one that a process which died left behind (replaced): a connection attempt tells which.
 */
async function listenOnSocket (server: Server, path: string): Promise<void> {
  const attempt = (): Promise<NodeJS.ErrnoException | undefined> => new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening)
      if (err.code === 'EADDRINUSE') resolve(err)
      else reject(new FnbusError('FNBUS_CONFIG_INVALID', `cannot listen on the Unix socket ${path}: ${err.message}`, { cause: err }))
    }
    const onListening = (): void => {
      server.off('error', onError)
      resolve(undefined)
    }
    server.once('error', onError)
    server.once('listening', onListening)
    server.listen(path)
  })
  const inUse = await attempt()
  if (inUse === undefined) return
  const found = await lstat(path).catch(() => undefined)
  if (found !== undefined && !found.isSocket()) {
    throw new FnbusError('FNBUS_CONFIG_INVALID', `${path} exists and is not a socket: choose another path for the gateway's Unix socket`, { cause: inUse })
  }
  if (await somethingListensOn(path)) {
    throw new FnbusError('FNBUS_ADDRESS_IN_USE', `the Unix socket ${path} is in use (another gateway?); choose another socket`, { cause: inUse })
  }
  await unlink(path).catch(() => {})
  const again = await attempt()
  if (again !== undefined) throw new FnbusError('FNBUS_ADDRESS_IN_USE', `the Unix socket ${path} is in use`, { cause: again })
}

function somethingListensOn (path: string): Promise<boolean> {
  return new Promise(resolve => {
    const probe = connect(path)
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    // ECONNREFUSED: a file nobody listens on; ENOTSOCK and others: not a socket we could use either way
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT'))
  })
}

function listen (server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      if (err.code === 'EADDRINUSE') reject(new FnbusError('FNBUS_ADDRESS_IN_USE', `${host}:${port} is already in use (another broker or gateway?); choose another --port`, { cause: err }))
      else reject(err)
    }
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve()
    })
  })
}
