import { connect, createServer, type Server } from 'node:net'
import { lstat, unlink } from 'node:fs/promises'
import { createServer as createTlsServer } from 'node:tls'
import type { FunctionBus } from '../broker/function-bus.js'
import { FnbusError } from '../errors.js'
import type { Logger } from '../logger.js'

/** `tls` of the options: the certificate (its chain after it) and private key, PEM contents, not paths. */
export interface TlsOptions {
  readonly cert: string | Buffer
  readonly key: string | Buffer
}

/** The MQTT listener: plain TCP, or TLS (`mqtts://`) when `tls` is given. Not yet listening. */
export function createMqttListener (tls: TlsOptions | undefined, bus: FunctionBus, logger: Logger | undefined): Server {
  return tls === undefined ? createServer(bus.handle) : createTlsListener(tls, bus, logger)
}

function createTlsListener (tls: TlsOptions, bus: FunctionBus, logger: Logger | undefined): Server {
  const server = createTlsServer({ cert: tls.cert, key: tls.key }, socket => bus.handle(socket))
  // a failed handshake (a client that does not trust the certificate, plain MQTT on the TLS port) concerns that client only
  server.on('tlsClientError', (err: Error) => logger?.debug({ err }, 'TLS handshake failed'))
  return server
}

/** Listens on `host`:`port`; a port in use is FNBUS_ADDRESS_IN_USE. */
export function listen (server: Server, port: number, host: string): Promise<void> {
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

/**
 * Listens on the Unix socket `path`. A file already there is either a live listener's (an error: another gateway
 * uses it) or one that a process which died left behind (replaced): a connection attempt tells which.
 */
export async function listenOnSocket (server: Server, path: string): Promise<void> {
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
