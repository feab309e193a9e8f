import { connect as netConnect, isIP, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { invalidArgument } from '../errors.js'

/** Where the socket transport connects, from the gateway's url. */
export type StreamTarget =
  | { readonly kind: 'tcp', readonly host: string, readonly port: number, readonly tls: false }
  | { readonly kind: 'tcp', readonly host: string, readonly port: number, readonly tls: true, readonly ca?: string | Buffer }
  | { readonly kind: 'unix', readonly path: string }

/** What the stream factory is asked for: the target, and the url it came from (for messages). */
export interface StreamOptions {
  readonly url: string
  readonly target: StreamTarget
}

export type StreamFactory = (options: StreamOptions) => Duplex

/** A way to the gateway that is not a socket: each connection is a stream it opens (a function thread's link). */
export interface StreamLink {
  /** The gateway's address, for messages. */
  readonly url: string
  readonly connect: () => Duplex
}

/** Schemes the socket transport speaks; any other (`ws:`, `wss:`) goes to MQTT.js. */
const TCP_SCHEMES: ReadonlySet<string> = new Set(['mqtt:', 'tcp:'])
const TLS_SCHEMES: ReadonlySet<string> = new Set(['mqtts:', 'tls:', 'ssl:'])
const UNIX_PREFIX = 'mqtt+unix://'

/** Whether the socket transport can reach `url` (else MQTT.js does). */
export function isSocketUrl (url: string): boolean {
  if (url.startsWith(UNIX_PREFIX)) return true
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0].toLowerCase()
  return scheme !== undefined && (TCP_SCHEMES.has(scheme) || TLS_SCHEMES.has(scheme))
}

/**
 * The target of a socket url: `mqtt://host:port` (and `tcp:`; port 1883 by default), `mqtts://host:port` (`tls:`,
 * `ssl:`; 8883), `mqtt+unix://PATH` (the path as written, as the gateway's `socketUrl` writes it).
 */
export function streamTarget (url: string, ca: string | Buffer | undefined): StreamTarget {
  if (url.startsWith(UNIX_PREFIX)) {
    const path = url.slice(UNIX_PREFIX.length)
    if (path === '') throw invalidArgument(`${url}: no socket path`)
    return { kind: 'unix', path }
  }
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw invalidArgument(`not a gateway url: ${JSON.stringify(url)}`)
  }
  const tls = TLS_SCHEMES.has(parsed.protocol)
  if (!tls && !TCP_SCHEMES.has(parsed.protocol)) throw invalidArgument(`${url}: the socket transport speaks mqtt:, mqtts: and mqtt+unix:`)
  // [::1] → ::1
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1')
  if (host === '') throw invalidArgument(`${url}: no host`)
  const port = parsed.port === '' ? (tls ? 8883 : 1883) : Number(parsed.port)
  return tls ? { kind: 'tcp', host, port, tls, ...(ca === undefined ? {} : { ca }) } : { kind: 'tcp', host, port, tls }
}

/** Opens a socket to the target: TCP, TLS (verified against `ca`, else the system's roots) or a Unix socket. */
export function openSocket ({ target }: StreamOptions): Duplex {
  if (target.kind === 'unix') return netConnect({ path: target.path })
  if (!target.tls) return netConnect({ host: target.host, port: target.port })
  // node:tls (and OpenSSL's setup with it) is loaded by the processes that use it, not by every function's
  return process.getBuiltinModule('node:tls').connect({
    host: target.host,
    port: target.port,
    // SNI is for names, not addresses [RFC 6066, 3]
    ...(isIP(target.host) === 0 ? { servername: target.host } : {}),
    ...(target.ca === undefined ? {} : { ca: target.ca }),
  })
}

/**
 * How the socket transport gets its stream when it has no link. Internal, not part of the package's surface: tests
 * set it (`setStreamFactory`) to hand each client one end of an in-memory duplex whose other end the gateway reads.
 * It is module state, so a function's bundled copy of the SDK would not see it: function threads use their
 * thread's link instead (thread-link.ts). Read on every connection, reconnections included; `undefined` restores
 * the sockets.
 */
let streamFactory: StreamFactory = openSocket

export function setStreamFactory (factory: StreamFactory | undefined): void {
  streamFactory = factory ?? openSocket
}

export function openStream (options: StreamOptions): Duplex {
  return streamFactory(options)
}

/** Nagle's algorithm off where there is one: small calls and answers must not wait for it. */
export function noDelay (stream: Duplex): void {
  const socket = stream as Partial<Pick<Socket, 'setNoDelay'>>
  if (typeof socket.setNoDelay === 'function') socket.setNoDelay(true)
}
