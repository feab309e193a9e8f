import { createServer, isIP, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import { Aedes } from 'aedes'
import aedesPersistenceLevel from 'aedes-persistence-level'
import { FnbusError } from './errors.js'
import { attachFunctionBus, type EventHandler, type FunctionBus, type InvokeOptions, type PublishOptions, type ServedFunction, type ServeOptions } from './broker/function-bus.js'
import type { FunctionStats } from './dispatcher/index.js'
import { configError, type BusOptions } from './options.js'
import type { Handler } from './runtime/handler.js'
import type { IssuedCredentials } from './security/authenticate.js'
import { openDatabase, type Database } from './store/database.js'
import { LevelInvocationStore } from './store/level-store.js'
import { MemoryInvocationStore } from './store/memory-store.js'
import type { InvocationStore } from './store/types.js'

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
   * fsync every store write: accepted Async invocations then survive a power loss, at a cost in throughput.
   * Default false: they survive a crash or kill of the gateway process.
   */
  readonly fsync?: boolean
  /** Listen with TLS (`mqtts://`): the certificate (its chain after it) and private key, PEM contents, not paths. */
  readonly tls?: TlsOptions
}

export interface TlsOptions {
  readonly cert: string | Buffer
  readonly key: string | Buffer
}

export interface Gateway {
  /** `mqtt://host:port` of the listener (`mqtts://` with TLS). */
  readonly url: string
  readonly port: number
  readonly host: string
  readonly aedes: Aedes
  readonly bus: FunctionBus
  serve (name: string, handler: Handler, options?: ServeOptions): Promise<ServedFunction>
  invoke (name: string, payload?: unknown, options?: InvokeOptions): Promise<unknown>
  publish (topic: string, payload: unknown, options?: PublishOptions): Promise<void>
  subscribe (filter: string, handler: EventHandler): Promise<() => Promise<void>>
  stats (): ReturnType<FunctionBus['stats']>
  /**
   * Fresh credentials for `identity`, valid until revoked or until the gateway stops; the supervisor gives each
   * instance it starts its own.
   */
  issueCredentials (identity: string): IssuedCredentials
  /** Graceful: no new connections or calls, calls in flight answered or failed with a code, store closed. */
  close (): Promise<void>
}

export type { FunctionStats }

/** Starts aedes with the function bus, its persistence and its TCP listener. */
export async function createGateway (options: GatewayOptions = {}): Promise<Gateway> {
  const port = options.port ?? 1883
  const host = options.host ?? '127.0.0.1'
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw configError(`port must be an integer 0–65535, got ${JSON.stringify(port)}`)
  if (options.tls !== undefined && (options.tls.cert === undefined || options.tls.key === undefined)) throw configError('tls needs both cert and key')

  const db: Database | undefined = options.memory === true ? undefined : await openDatabase(options.dataDir ?? './data')
  let aedes: Aedes | undefined
  let server: Server | undefined
  let store: InvocationStore | undefined
  try {
    store = options.store ?? (db === undefined ? new MemoryInvocationStore() : new LevelInvocationStore(db, { sync: options.fsync === true }))
    if (options.store === undefined) await store.open()
    aedes = await Aedes.createBroker({
      // keep aedes' random broker id: a fixed one makes restarts overwrite queued messages (DESIGN.md, pitfall 2)
      persistence: db === undefined ? undefined : aedesPersistenceLevel(db.sublevel('aedes', { valueEncoding: 'buffer' })),
      maxClientsIdLength: 128,
    })
    const bus = attachFunctionBus(aedes, { ...options, store })
    await bus.authenticator.ready()
    checkExposure(host, options, bus, options.logger)
    server = options.tls === undefined ? createServer(bus.handle) : createTlsListener(options.tls, bus, options.logger)
    await listen(server, port, host)
    const address = server.address() as AddressInfo
    return new RunningGateway(aedes, bus, server, options.store === undefined ? store : undefined, db, address.port, host, options.tls !== undefined)
  } catch (err) {
    server?.close()
    if (aedes !== undefined) await new Promise<void>(resolve => aedes?.close(() => resolve()))
    if (options.store === undefined) await store?.close()
    await db?.close()
    throw err
  }
}

class RunningGateway implements Gateway {
  readonly url: string
  /** Open client sockets, raw TCP under TLS too. */
  readonly sockets = new Set<Socket>()
  #closing: Promise<void> | undefined

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
  ) {
    this.url = `${tls ? 'mqtts' : 'mqtt'}://${host.includes(':') ? `[${host}]` : host}:${port}`
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket)
      socket.once('close', () => this.sockets.delete(socket))
    })
  }

  issueCredentials (identity: string): IssuedCredentials {
    return this.bus.authenticator.issue(identity)
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

  close (): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close (): Promise<void> {
    const serverClosed = new Promise<void>(resolve => this.server.close(() => resolve()))
    await this.bus.close()
    await new Promise<void>(resolve => this.aedes.close(() => resolve()))
    // aedes closed the clients it had registered; one that took over a session in that very moment registers
    // after the close (aedes answers its CONNACK first) and would hold server.close() open for ever
    for (const socket of this.sockets) socket.destroy()
    await serverClosed
    await this.ownStore?.close()
    await this.db?.close()
  }
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
  if (options.allowAnonymous === undefined && bus.authenticator.anonymousAllowed) {
    throw configError(`host ${host} is reachable beyond this machine, and no identity is configured: anyone who can reach it could invoke every function. ` +
      'Create one with "fnbus identity add NAME" (or give identities), or set allowAnonymous: true (fnbus start --allow-anonymous) to accept anonymous clients on purpose')
  }
  if (options.tls === undefined) logger?.warn({ host }, 'listening beyond loopback without TLS: passwords and payloads cross the network in clear')
}

function createTlsListener (tls: TlsOptions, bus: FunctionBus, logger: GatewayOptions['logger']): Server {
  const server = createTlsServer({ cert: tls.cert, key: tls.key }, socket => bus.handle(socket))
  // a failed handshake (a client that does not trust the certificate, plain MQTT on the TLS port) concerns that client only
  server.on('tlsClientError', (err: Error) => logger?.debug({ err }, 'TLS handshake failed'))
  return server
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
