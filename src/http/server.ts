import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WWW_AUTHENTICATE } from './identity-auth.js'
import { HostAllowList } from './hosts.js'
import { sendJson } from './send-json.js'
import { FnbusError } from '../errors.js'
import type { Logger } from '../logger.js'
import { isLoopback } from '../util/loopback.js'
import type { AuthorizeDecision, HttpAuthorizer, HttpHandler, HttpMethod, HttpRequestInfo, HttpRouteOptions, HttpRoutes } from '../plugins.js'

export interface HttpServerOptions {
  /** 0 picks a free port. */
  readonly port: number
  /** Default 127.0.0.1: the operator's HTTP port answers this machine only unless told otherwise. */
  readonly host?: string
  /**
   * Decides who may use the HTTP port beyond the default (loopback, read-only): the seam where identities
   * (the security work) plug in.
   */
  readonly authorize?: HttpAuthorizer
  /**
   * The names `Host` may carry on a request that gets the trust of its address (loopback) or no identity: see
   * HostAllowList. Default: IP addresses, localhost and the machine's host name.
   */
  readonly allowedHosts?: HostAllowList
}

const METHODS: ReadonlySet<string> = new Set<HttpMethod>(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'])

interface Route {
  readonly handler: HttpHandler
  readonly action: boolean
}

/** Routes of one path (exact) or one prefix (`/assets/*`), by method. */
type RouteTable = Map<string, Map<string, Route>>

/**
 * Without an authorizer the HTTP port serves reads to this machine only: metrics and status say what runs where,
 * and actions (retrying dead letters…) change it, so anything more needs an operator identity.
 */
export const defaultAuthorize: HttpAuthorizer = request => {
  if (!request.loopback) {
    return { allowed: false, status: 403, reason: 'this HTTP port answers requests from this machine only; configure an authorizer (operator identities) to open it' }
  }
  if (request.action) {
    return { allowed: false, status: 403, reason: 'actions on the gateway need an authorized operator; configure an authorizer (operator identities)' }
  }
  return { allowed: true }
}

/** The gateway's HTTP port: a small router over node:http with one authorization decision per request. */
export class GatewayHttpServer implements HttpRoutes {
  readonly server: Server
  readonly #exact: RouteTable = new Map()
  readonly #prefixes: RouteTable = new Map()
  readonly #authorize: HttpAuthorizer
  readonly #hosts: HostAllowList
  readonly #logger: Logger
  #url = ''

  private constructor (options: HttpServerOptions, logger: Logger) {
    this.#authorize = options.authorize ?? defaultAuthorize
    this.#hosts = options.allowedHosts ?? new HostAllowList()
    this.#logger = logger
    this.server = createServer((req, res) => { void this.#handle(req, res) })
    // a dashboard's long-poll or a slow scraper must not keep close() waiting
    this.server.keepAliveTimeout = 5000
  }

  static async listen (options: HttpServerOptions, logger: Logger): Promise<GatewayHttpServer> {
    const host = options.host ?? '127.0.0.1'
    const http = new GatewayHttpServer(options, logger)
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        if (err.code === 'EADDRINUSE') reject(new FnbusError('FNBUS_ADDRESS_IN_USE', `HTTP ${host}:${options.port} is already in use; choose another http.port (--http-port)`, { cause: err }))
        else reject(err)
      }
      http.server.once('error', onError)
      http.server.listen(options.port, host, () => {
        http.server.off('error', onError)
        resolve()
      })
    })
    const address = http.server.address() as AddressInfo
    if (options.authorize === undefined && !isLoopback(address.address)) {
      logger.warn({ host }, 'the HTTP port listens beyond loopback without an authorizer: it answers requests from this machine only')
    }
    http.#url = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`
    return http
  }

  get url (): string {
    return this.#url
  }

  get port (): number {
    return (this.server.address() as AddressInfo).port
  }

  route (method: HttpMethod, path: string, handler: HttpHandler, options: HttpRouteOptions = {}): void {
    if (!METHODS.has(method)) throw new FnbusError('FNBUS_INVALID_ARGUMENT', `unsupported HTTP method ${JSON.stringify(method)}`)
    if (typeof path !== 'string' || !path.startsWith('/')) throw new FnbusError('FNBUS_INVALID_ARGUMENT', `an HTTP route's path starts with /, got ${JSON.stringify(path)}`)
    if (typeof handler !== 'function') throw new FnbusError('FNBUS_INVALID_ARGUMENT', 'an HTTP route needs a handler function')
    const prefix = path.endsWith('/*')
    const table = prefix ? this.#prefixes : this.#exact
    const key = prefix ? path.slice(0, -1) : path // '/assets/*' matches paths starting '/assets/'
    let byMethod = table.get(key)
    if (byMethod === undefined) {
      byMethod = new Map()
      table.set(key, byMethod)
    }
    if (byMethod.has(method)) throw new FnbusError('FNBUS_INVALID_ARGUMENT', `HTTP route ${method} ${path} is taken already`)
    byMethod.set(method, { handler, action: options.action ?? !(method === 'GET' || method === 'HEAD') })
  }

  async authorize (req: IncomingMessage, options: { readonly action?: boolean } = {}): Promise<AuthorizeDecision> {
    return await this.#decide(req, pathOf(req), options.action ?? false)
  }

  /**
   * One decision per request. A request whose `Host` is not one of the gateway's names (DNS rebinding: a web page
   * that made its own name resolve to this address) loses the trust of its address, and is refused unless the
   * authorizer admits it as an identity, on credentials such a page cannot have.
   */
  async #decide (req: IncomingMessage, path: string, action: boolean): Promise<AuthorizeDecision> {
    const remoteAddress = req.socket.remoteAddress ?? ''
    const hostAllowed = this.#hosts.allows(req.headers.host)
    const request: HttpRequestInfo = {
      method: req.method ?? 'GET',
      path,
      remoteAddress,
      loopback: hostAllowed && isLoopback(remoteAddress),
      action,
      headers: req.headers,
    }
    let decision: AuthorizeDecision
    try {
      decision = await this.#authorize(request, req)
    } catch (err) {
      this.#logger.error({ err, path }, 'the HTTP authorizer failed; request refused')
      return { allowed: false, status: 403, reason: 'authorization failed' }
    }
    if (hostAllowed || (decision.allowed && decision.identity !== undefined)) return decision
    this.#logger.warn({ host: req.headers.host, origin: req.headers.origin, remoteAddress, path }, 'HTTP request refused: its Host is not a name of this gateway (http.allowedHosts)')
    return {
      allowed: false,
      status: 403,
      reason: `Host ${JSON.stringify(req.headers.host)} is not a name of this gateway: add it to http.allowedHosts if clients reach the gateway by it`,
    }
  }

  async #handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://gateway')
    } catch {
      sendJson(res, 400, { error: 'FNBUS_INVALID_ARGUMENT', message: 'malformed request URL' })
      return
    }
    const byMethod = this.#match(url.pathname)
    if (byMethod === undefined) {
      const plugin = BUILTIN_ROUTES[url.pathname]
      const hint = plugin === undefined ? '' : `: ${url.pathname} is the ${plugin} plugin's, which is not enabled (add "plugins": { "${plugin}": {} } to the configuration, or start with --plugin ${plugin})`
      sendJson(res, 404, { error: 'not_found', message: `no route for ${url.pathname}${hint}` })
      return
    }
    const method = req.method ?? 'GET'
    const route = byMethod.get(method) ?? (method === 'HEAD' ? byMethod.get('GET') : undefined)
    if (route === undefined) {
      res.setHeader('allow', [...byMethod.keys()].join(', '))
      sendJson(res, 405, { error: 'method_not_allowed', message: `${method} is not allowed on ${url.pathname}` })
      return
    }
    const decision = await this.#decide(req, url.pathname, route.action)
    if (!decision.allowed) {
      // a browser asks for a user name and password on a 401 that names the scheme [RFC 9110, 11.6.1]
      if (decision.status === 401) res.setHeader('www-authenticate', WWW_AUTHENTICATE)
      sendJson(res, decision.status, { error: 'FNBUS_NOT_AUTHORIZED', message: decision.reason })
      return
    }
    try {
      await route.handler(req, res, { url, identity: decision.identity })
    } catch (err) {
      this.#logger.error({ err, path: url.pathname }, 'an HTTP handler failed')
      if (!res.headersSent) sendJson(res, 500, { error: 'internal', message: 'the handler failed; see the gateway log' })
      else res.destroy()
    }
  }

  #match (path: string): Map<string, Route> | undefined {
    const exact = this.#exact.get(path)
    if (exact !== undefined) return exact
    let best: Map<string, Route> | undefined
    let bestLength = -1
    for (const [prefix, byMethod] of this.#prefixes) {
      if (prefix.length > bestLength && (path.startsWith(prefix) || path === prefix.slice(0, -1))) {
        best = byMethod
        bestLength = prefix.length
      }
    }
    return best
  }

  /** Stops listening; idle keep-alive connections close now, requests under way get a second to finish. */
  close (): Promise<void> {
    return new Promise(resolve => {
      const force = setTimeout(() => this.server.closeAllConnections(), 1000)
      force.unref()
      this.server.close(() => {
        clearTimeout(force)
        resolve()
      })
      this.server.closeIdleConnections()
    })
  }
}

/** Writes `value` as a JSON response. */
/** The paths the built-in plugins serve by default: a request for one while its plugin is off says how to turn it on. */
const BUILTIN_ROUTES: Readonly<Record<string, string>> = Object.freeze({
  '/metrics': 'metrics',
  '/': 'dashboard',
  '/api/dashboard': 'dashboard',
  '/mqtt': 'websocket',
  '/fnbus.js': 'dashboard',
})

function pathOf (req: IncomingMessage): string {
  try {
    return new URL(req.url ?? '/', 'http://gateway').pathname
  } catch {
    return '/'
  }
}
