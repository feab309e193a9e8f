import { createServer } from 'node:net'
import { resolve as resolvePath } from 'node:path'
import type { AddressInfo, Server } from 'node:net'
import { Aedes } from 'aedes'
import aedesPersistenceLevel from 'aedes-persistence-level'
import { attachFunctionBus, type FunctionBus } from './broker/function-bus.js'
import type { FunctionStats } from './dispatcher/index.js'
import { configError } from './errors.js'
import { checkExposure, refuseAnonymousExposure } from './gateway/exposure.js'
import { createMqttListener, listen, listenOnSocket, type TlsOptions } from './gateway/listeners.js'
import { RunningGateway } from './gateway/running-gateway.js'
import { DEFAULT_LIMITS } from './limits.js'
import { silentLogger } from './logger.js'
import type { BusOptions } from './options.js'
import { openDatabase, type Database } from './store/database.js'
import { DiskSpace } from './store/disk-space.js'
import { LevelInvocationStore } from './store/level-store.js'
import { LevelClientIdStore } from './store/client-id-store.js'
import { MemoryInvocationStore } from './store/memory-store.js'
import type { InvocationStore } from './store/types.js'
import { GatewayHttpServer } from './http/server.js'
import { HostAllowList, parseAllowedHosts } from './http/hosts.js'
import { boundClientState, type BrokerStorage } from './broker/client-bounds.js'
import { identityAuthorizer, type HttpAuthMode } from './http/identity-auth.js'
import { checkGatewayOptions } from './config/check.js'
import type { BridgeConfig } from './bridge/bridge-config.js'
import type { Bridges } from './bridge/bridges.js'
import type { ClusterConfig } from './cluster/cluster-config.js'
import type { Cluster } from './cluster/cluster.js'
import { type Gateway, type StatusOptions, BUILTIN_PLUGINS, type GatewayPlugin, type HttpAuthorizer, type PluginFactory } from './plugins.js'

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
  /**
   * Bridges to remote MQTT brokers, with store-and-forward (docs/bridge.md). TLS files are PEM contents or paths
   * (relative to the working directory); secrets the entries leave out come from `FNBUS_BRIDGE_<NAME>_PASSWORD` and
   * the like.
   */
  readonly bridges?: readonly BridgeConfig[]
  /**
   * Join a cluster of gateways on NATS (docs/cluster.md): calls reach workers on any gateway, events every
   * subscriber. Secrets the block leaves out come from `FNBUS_CLUSTER_PASSWORD` and the like.
   */
  readonly cluster?: ClusterConfig
}

export type { Gateway, StatusOptions, TlsOptions, BridgeConfig, ClusterConfig }
export type { FunctionStats, BrokerStorage }

/** Starts aedes with the function bus, its persistence and its TCP listener. */
export async function createGateway (options: GatewayOptions = {}): Promise<Gateway> {
  // the options the configuration file shares are checked against its schema, with the same bounds and messages
  checkGatewayOptions(options)
  const port = options.port ?? 1883
  const host = options.host ?? '127.0.0.1'

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
  let bridges: Bridges | undefined
  let cluster: Cluster | undefined
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
    // Loaded only for a gateway with bridges, and MQTT.js with them. Before the listener: a message published as soon
    // as the port is open must find the bridges' tap in place (the benchmark caught one that crossed no bridge).
    if (options.bridges !== undefined && options.bridges.length > 0) {
      const { Bridges } = await import('./bridge/bridges.js')
      bridges = await Bridges.start(options.bridges, { aedes, bus, db, sync: options.fsync !== false })
    }
    // Loaded only for a gateway in a cluster, and the NATS client with it. It joins in the background: a gateway
    // whose NATS servers are not up yet serves its own clients meanwhile (docs/cluster.md#failures).
    if (options.cluster !== undefined) {
      const [{ Cluster }, { resolveCluster }] = await Promise.all([import('./cluster/cluster.js'), import('./cluster/cluster-config.js')])
      cluster = Cluster.start(resolveCluster(options.cluster), { aedes, bus, logger: bus.options.logger })
    }
    server = createMqttListener(options.tls, bus, options.logger)
    await listen(server, port, host)
    const address = server.address() as AddressInfo
    const socketPath = options.socket === undefined ? undefined : resolvePath(options.socket)
    if (socketPath !== undefined) {
      socketServer = createServer(bus.handle)
      await listenOnSocket(socketServer, socketPath)
    }
    if (options.http !== undefined) http = await GatewayHttpServer.listen({ ...httpOptions(options.http, bus), allowedHosts }, bus.options.logger)
    gateway = new RunningGateway({
      aedes,
      bus,
      server,
      tls: options.tls !== undefined,
      port: address.port,
      host,
      ownStore: options.store === undefined ? store : undefined,
      db,
      httpServer: http,
      unixSocket: socketServer === undefined ? undefined : { server: socketServer, path: socketPath as string },
      allowedHosts,
      brokerStorage,
      diskSpace,
      bridges,
      cluster,
      checkExposure: (listenHost, key) => refuseAnonymousExposure(listenHost, key, 'connect to the bus anonymously and invoke every function', options, bus),
    })
    await gateway.startPlugins(plugins.map(({ plugin, config }) => ({ plugin, config })))
    return gateway
  } catch (err) {
    if (gateway !== undefined) {
      await gateway.close()
      throw err
    }
    diskSpace?.stop()
    await cluster?.close()
    await bridges?.close()
    await http?.close()
    server?.close()
    socketServer?.close()
    if (aedes !== undefined) await new Promise<void>(resolve => aedes?.close(() => resolve()))
    if (options.store === undefined) await store?.close()
    await db?.close()
    throw err
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

/** The HTTP port's options, its authorizer made from the gateway's identities when `auth` asks for it. */
function httpOptions (options: HttpOptions, bus: FunctionBus): HttpOptions {
  if (options.auth === undefined) return options
  if (options.authorize !== undefined) throw configError('give http.auth or http.authorize, not both')
  return { ...options, authorize: identityAuthorizer(bus.authenticator, bus.options.policy) }
}
