// MQTT over WebSocket, so that web pages (the dashboard, the browser SDK) and web clients reach the bus.
// Every connection goes through `bus.handle`, the same entry as TCP: frame guard, hooks, sessions, limits.
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { createWebSocketStream, WebSocketServer, type WebSocket } from 'ws'
import { configError, FnbusError, parseAllowedHosts, WWW_AUTHENTICATE } from 'fnbus'
import type { GatewayPlugin, HostAllowList, HttpRoutes, PluginContext } from 'fnbus'

export const WEBSOCKET_PLUGIN_NAME = 'websocket'
export const DEFAULT_WEBSOCKET_PATH = '/mqtt'

/** `plugins.websocket` of the config. */
export interface WebSocketPluginOptions {
  /**
   * A listener of its own on this port (`0` picks a free one). Without it the plugin takes `path` on the gateway's
   * HTTP server (`http.port`), which must then be set.
   */
  readonly port?: number
  /** Address of its own listener. Default `127.0.0.1` (loopback only), like the gateway's other listeners. */
  readonly host?: string
  /** The URL path WebSocket clients connect to. Default `/mqtt`, as MQTT.js and most MQTT-over-WebSocket clients use. */
  readonly path?: string
  /**
   * Web origins (`https://ops.example.com`) whose pages may connect, besides the gateway's own pages. A browser
   * sends its page's origin with every WebSocket handshake; without this check any web site the operator visits
   * could reach the bus through the operator's browser. Clients that are not browsers send no origin.
   */
  readonly allowedOrigins?: readonly string[]
  /**
   * Host names clients of its own listener may use in `Host`, besides the gateway's (`http.allowedHosts`, IP
   * addresses, localhost, the machine's name): what a page rebinding its own name to this address cannot match.
   */
  readonly allowedHosts?: readonly string[]
}

/** Where the listener ended up, for plugins and tests: `ws://host:port/path`. */
export interface WebSocketListener {
  readonly url: string
}

/** The options validated, with their defaults. */
interface WebSocketSettings {
  readonly port: number | undefined
  readonly host: string
  readonly path: string
  readonly allowedOrigins: readonly string[]
  readonly allowedHosts: readonly string[]
}

const OPTION_KEYS = new Set(['port', 'host', 'path', 'allowedOrigins', 'allowedHosts'])

/** Validates `plugins.websocket`; an invalid key or value is FNBUS_CONFIG_INVALID naming it. */
export function normalizeWebSocketOptions (given: unknown): WebSocketSettings {
  const where = `plugins.${WEBSOCKET_PLUGIN_NAME}`
  if (given === undefined || given === null) given = {}
  if (typeof given !== 'object' || Array.isArray(given)) throw configError(`${where} must be an object`)
  const options = given as Record<string, unknown>
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.has(key)) throw configError(`${where}: unknown key "${key}"`)
  }
  const { port, host, path, allowedOrigins, allowedHosts } = options
  if (port !== undefined && (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535)) {
    throw configError(`${where}.port must be an integer 0–65535, got ${JSON.stringify(port)}`)
  }
  if (host !== undefined && (typeof host !== 'string' || host.length === 0)) throw configError(`${where}.host must be a non-empty string`)
  if (host !== undefined && port === undefined) throw configError(`${where}.host needs ${where}.port: without a port the plugin uses the HTTP server's address`)
  if (path !== undefined && (typeof path !== 'string' || !/^\/[\w\-./~]*$/.test(path))) {
    throw configError(`${where}.path must be a URL path starting with "/", got ${JSON.stringify(path)}`)
  }
  if (allowedOrigins !== undefined && (!Array.isArray(allowedOrigins) || !allowedOrigins.every(isOrigin))) {
    throw configError(`${where}.allowedOrigins must be an array of origins such as "https://ops.example.com"`)
  }
  const hosts = parseAllowedHosts(allowedHosts, `${where}.allowedHosts`) ?? []
  if (hosts.length > 0 && port === undefined) throw configError(`${where}.allowedHosts needs ${where}.port: on the HTTP port, http.allowedHosts applies`)
  return Object.freeze({
    port: port as number | undefined,
    host: (host as string | undefined) ?? '127.0.0.1',
    path: (path as string | undefined) ?? DEFAULT_WEBSOCKET_PATH,
    allowedOrigins: Object.freeze([...(allowedOrigins as string[] | undefined) ?? []].map(origin => new URL(origin).origin)),
    allowedHosts: hosts,
  })
}

function isOrigin (value: unknown): boolean {
  if (typeof value !== 'string') return false
  try {
    const url = new URL(value)
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === value.replace(/\/$/, '')
  } catch {
    return false
  }
}

/**
 * The WebSocket listener plugin. `options` given here win over the config's `plugins.websocket` block; the built-in
 * loaded by name from the config gets that block through its context.
 */
export function websocketPlugin (options?: WebSocketPluginOptions): GatewayPlugin & { readonly listener: WebSocketListener | undefined } {
  let running: RunningListener | undefined
  return {
    name: WEBSOCKET_PLUGIN_NAME,
    get listener () { return running },
    async start (context: PluginContext) {
      running = await RunningListener.start(context, normalizeWebSocketOptions(options ?? context.config))
    },
    async stop () {
      await running?.stop()
    },
  }
}

export default websocketPlugin

class RunningListener implements WebSocketListener {
  readonly url: string
  readonly #wss: WebSocketServer
  readonly #context: PluginContext
  readonly #options: WebSocketSettings
  /** Our own HTTP server when `port` is set; undefined on the gateway's. */
  readonly #ownServer: Server | undefined
  readonly #onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void
  readonly #server: Server
  /** On a listener of its own, the names `Host` may carry; on the HTTP port its own decision checks them. */
  readonly #hosts: HostAllowList | undefined

  private constructor (context: PluginContext, options: WebSocketSettings, server: Server, ownServer: boolean, url: string) {
    this.#context = context
    this.#options = options
    this.#server = server
    this.#ownServer = ownServer ? server : undefined
    this.#hosts = ownServer ? context.gateway.allowedHosts.with([...options.allowedHosts, options.host]) : undefined
    this.url = url
    const { limits } = context.gateway.bus.options
    this.#wss = new WebSocketServer({
      noServer: true,
      // ws buffers a whole message before the frame guard sees a byte of it: a message may hold one MQTT frame
      // (at most maxFrameBytes plus its 5-byte fixed header), and a larger one is refused (close code 1009)
      maxPayload: limits.maxFrameBytes + 5,
      // MQTT over WebSocket names its subprotocol `mqtt` ([MQTT-6.0.0-3]); MQTT 3.1 clients still send `mqttv3.1`
      handleProtocols: protocols => protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false,
      perMessageDeflate: false,
    })
    this.#onUpgrade = (req, socket, head) => { void this.#upgrade(req, socket, head) }
    server.on('upgrade', this.#onUpgrade)
  }

  static async start (context: PluginContext, options: WebSocketSettings): Promise<RunningListener> {
    if (options.port !== undefined) {
      // the same rule as the gateway's own listeners: not beyond loopback while anyone may connect anonymously
      context.gateway.checkExposure(options.host, `plugins.${WEBSOCKET_PLUGIN_NAME}.host`)
      const server = createServer((_req, res) => {
        res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' }).end('MQTT over WebSocket: connect with a WebSocket client\n')
      })
      await listen(server, options.port, options.host)
      const { port } = server.address() as AddressInfo
      const url = `ws://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}${options.path}`
      const listener = new RunningListener(context, options, server, true, url)
      context.logger.info({ url }, 'MQTT over WebSocket listening')
      return listener
    }
    const http: HttpRoutes | undefined = context.http
    if (http === undefined) {
      throw configError(`plugins.${WEBSOCKET_PLUGIN_NAME} needs either its own port (plugins.${WEBSOCKET_PLUGIN_NAME}.port) or the gateway's HTTP server (http.port)`)
    }
    const url = `${http.url.replace(/^http/, 'ws')}${options.path}`
    const listener = new RunningListener(context, options, http.server, false, url)
    context.logger.info({ url }, 'MQTT over WebSocket listening')
    return listener
  }

  async #upgrade (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname
    if (path !== this.#options.path) {
      // on the gateway's server another plugin may take this path; on our own nobody else will
      if (this.#ownServer !== undefined || this.#server.listenerCount('upgrade') === 1) refuse(socket, 404, 'Not Found')
      return
    }
    socket.on('error', () => socket.destroy())
    if (this.#hosts !== undefined && !this.#hosts.allows(req.headers.host)) {
      // every connection here has an anonymous handshake: a page that rebound its own name to this address must not
      // pass for one of this machine's own pages (its Origin and Host agree)
      this.#context.logger.warn({ host: req.headers.host, origin: req.headers.origin, remoteAddress: req.socket.remoteAddress }, 'WebSocket handshake refused: Host is not a name of this gateway')
      refuse(socket, 403, 'Forbidden', undefined, `Host ${JSON.stringify(req.headers.host)} is not a name of this gateway: add it to plugins.${WEBSOCKET_PLUGIN_NAME}.allowedHosts (or http.allowedHosts) if clients reach the gateway by it`)
      return
    }
    if (!this.#originAllowed(req)) {
      this.#context.logger.warn({ origin: req.headers.origin, remoteAddress: req.socket.remoteAddress }, 'WebSocket handshake refused: origin not allowed')
      refuse(socket, 403, 'Forbidden')
      return
    }
    if (this.#ownServer === undefined && this.#context.http !== undefined) {
      // On the gateway's HTTP server the same rule as its routes: loopback unless an authorizer admits the request.
      // Connecting is not an action; what the client may do on the bus is MQTT's business (CONNECT credentials).
      let decision
      try {
        decision = await this.#context.http.authorize(req, { action: false })
      } catch (err) {
        this.#context.logger.error({ err }, 'the HTTP authorizer failed on a WebSocket handshake')
        refuse(socket, 500, 'Internal Server Error')
        return
      }
      if (!decision.allowed) {
        refuse(socket, decision.status, decision.status === 401 ? 'Unauthorized' : 'Forbidden', decision.status === 401 ? WWW_AUTHENTICATE : undefined, decision.reason)
        return
      }
    }
    if (socket.destroyed) return
    if (this.#full()) {
      // refused as an HTTP answer a client can read, before the handshake costs anything
      refuse(socket, 503, 'Service Unavailable')
      return
    }
    this.#wss.handleUpgrade(req, socket, head, ws => this.#connect(ws, req))
  }

  /**
   * Browsers send their page's origin with every handshake; a page of another site must not reach the bus through
   * the operator's browser (cross-site WebSocket hijacking). Admitted: no origin (not a browser), an origin listed in
   * `allowedOrigins`, a page of this very server, and on a listener of its own the gateway's HTTP pages.
   */
  #originAllowed (req: IncomingMessage): boolean {
    const origin = req.headers.origin
    if (origin === undefined) return true
    let page: URL
    try {
      page = new URL(origin)
    } catch {
      return false
    }
    if (this.#options.allowedOrigins.includes(page.origin)) return true
    const host = req.headers.host
    if (host === undefined) return false
    if (page.host === host) return true
    const http = this.#context.http
    if (this.#ownServer === undefined || http === undefined) return false
    // the dashboard on the HTTP port, reached by the same host name the page used for this listener
    return page.port === new URL(http.url).port && page.hostname === new URL(`http://${host}`).hostname
  }

  #connect (ws: WebSocket, req: IncomingMessage): void {
    const stream = createWebSocketStream(ws)
    // the peer's address as a TCP connection shows it (`client.conn.remoteAddress`), for code that decides by it
    // (loopback rules, logs); aedes also keeps the upgrade request itself as `client.req`
    const { remoteAddress, remotePort, remoteFamily } = req.socket
    Object.assign(stream, { remoteAddress, remotePort, remoteFamily })
    // ws' own errors (a message over maxPayload, a protocol error) close the socket; the stream reports them too
    stream.on('error', err => this.#context.logger.debug({ err, remoteAddress: req.socket.remoteAddress }, 'WebSocket connection error'))
    try {
      // undefined: the bus took no more connections (limits.maxConnections) since the handshake began, and
      // destroyed the stream; the WebSocket goes with it
      if (this.#context.gateway.bus.handle(stream, req) === undefined) ws.terminate()
    } catch (err) {
      this.#context.logger.error({ err }, 'the bus refused a WebSocket connection')
      ws.terminate()
    }
  }

  /** The bus is at limits.maxConnections (TCP and WebSocket connections together). */
  #full (): boolean {
    const bus = this.#context.gateway.bus
    if (bus.connections < bus.options.limits.maxConnections) return false
    this.#context.logger.warn({ limit: bus.options.limits.maxConnections }, 'WebSocket handshake refused: limits.maxConnections reached')
    if (this.#context.events.observed('rejected')) this.#context.events.emit('rejected', { reason: 'max_connections' })
    return true
  }

  async stop (): Promise<void> {
    this.#server.off('upgrade', this.#onUpgrade)
    // Connections already open stay with aedes, which closes them when the gateway closes; only new ones stop here.
    this.#ownServer?.close()
    this.#ownServer?.closeIdleConnections()
    this.#wss.close()
  }
}

/**
 * Answers a handshake with an HTTP error and closes the connection once the answer is out (as ws itself does). With
 * a `reason`, the body is the JSON error the HTTP port answers with.
 */
function refuse (socket: Duplex, status: number, text: string, wwwAuthenticate?: string, reason?: string): void {
  if (!socket.writable) {
    socket.destroy()
    return
  }
  socket.once('finish', () => socket.destroy())
  const challenge = wwwAuthenticate === undefined ? '' : `WWW-Authenticate: ${wwwAuthenticate}\r\n`
  const body = reason === undefined ? '' : JSON.stringify({ error: 'FNBUS_NOT_AUTHORIZED', message: reason })
  const type = reason === undefined ? '' : 'Content-Type: application/json; charset=utf-8\r\n'
  socket.end(`HTTP/1.1 ${status} ${text}\r\n${challenge}${type}Connection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
}

function listen (server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      if (err.code === 'EADDRINUSE') reject(new FnbusError('FNBUS_ADDRESS_IN_USE', `${host}:${port} is already in use; choose another plugins.${WEBSOCKET_PLUGIN_NAME}.port`, { cause: err }))
      else reject(err)
    }
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve()
    })
  })
}
