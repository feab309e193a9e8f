import { createServer, type Server } from 'node:net'
import type { AddressInfo } from 'node:net'
import { Aedes } from 'aedes'
import aedesPersistenceLevel from 'aedes-persistence-level'
import { FnbusError } from './errors.js'
import { attachFunctionBus, type EventHandler, type FunctionBus, type InvokeOptions, type PublishOptions, type ServedFunction, type ServeOptions } from './broker/function-bus.js'
import type { FunctionStats } from './dispatcher/index.js'
import { configError, type BusOptions } from './options.js'
import type { Handler } from './runtime/handler.js'
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
}

export interface Gateway {
  /** `mqtt://host:port` of the listener. */
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
  /** Graceful: no new connections or calls, calls in flight answered or failed with a code, store closed. */
  close (): Promise<void>
}

export type { FunctionStats }

/** Starts aedes with the function bus, its persistence and its TCP listener. */
export async function createGateway (options: GatewayOptions = {}): Promise<Gateway> {
  const port = options.port ?? 1883
  const host = options.host ?? '127.0.0.1'
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw configError(`port must be an integer 0–65535, got ${JSON.stringify(port)}`)

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
    server = createServer(bus.handle)
    await listen(server, port, host)
    const address = server.address() as AddressInfo
    return new RunningGateway(aedes, bus, server, options.store === undefined ? store : undefined, db, address.port, host)
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
  ) {
    this.url = `mqtt://${host.includes(':') ? `[${host}]` : host}:${port}`
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
    await serverClosed
    await this.ownStore?.close()
    await this.db?.close()
  }
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
