// The operator's web page at `/` of the gateway's HTTP port: what runs, what fails, what waits. It reads
// `gateway.status()` (what `fnbus status` and `/api/status` show) and the `invocation` observations the metrics
// plugin counts; its actions (retrying dead letters, cancelling) are HTTP POSTs the authorize seam decides on.
import { readFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { fileURLToPath } from 'node:url'
import { configError, FnbusError, GATEWAY_IDENTITY, isErrorCode, parseFunctionName, sendJson, WWW_AUTHENTICATE } from 'fnbus'
import type { DeadLetterObservation, GatewayPlugin, HttpRequestContext, HttpRoutes, InvocationObservation, PluginContext, RetryObservation } from 'fnbus'
import { InvocationSeries } from './series.js'

export const DASHBOARD_PLUGIN_NAME = 'dashboard'

/** `plugins.dashboard` of the config. */
export interface DashboardPluginOptions {
  /**
   * Where the page's live event view connects (MQTT over WebSocket). Default: `/mqtt` of the page's own host,
   * which is where the websocket plugin listens when it shares the HTTP port; set it when that plugin has a port
   * of its own (`ws://gateway:9001/mqtt`).
   */
  readonly websocketUrl?: string
  /** Topic filter of the live event view. Default `#` (every event; bus traffic is never shown). */
  readonly eventsFilter?: string
  /** Seconds of history in the chart. Default 300. */
  readonly historySeconds?: number
}

/**
 * The identity the page's live view connects as, with read-only credentials the gateway issues when the plugin
 * starts: it may subscribe to events (under a policy, what a rule for `$dashboard` grants) and send nothing but the
 * bus' `hello`. Whoever may read the dashboard may watch its events; they get no MQTT rights beyond that.
 */
export const DASHBOARD_IDENTITY = '$dashboard'

/** How many recent errors the page lists. */
const RECENT_ERRORS = 50
/** Largest request body an action accepts. */
const MAX_BODY_BYTES = 4096

interface RecentError {
  /** Epoch ms. */
  readonly at: number
  /** `invocation`: a call or delivery that did not end `ok`; `retry`: an Async attempt failed and waits; `deadLetter`. */
  readonly kind: 'invocation' | 'retry' | 'deadLetter'
  readonly function: string
  readonly requestId: string
  readonly code: string
  readonly message?: string
  readonly type?: 'Sync' | 'Async'
  readonly durationMs?: number
}

const OPTION_KEYS = new Set(['websocketUrl', 'eventsFilter', 'historySeconds'])

export function normalizeDashboardOptions (given: unknown): { readonly websocketUrl: string | undefined, readonly eventsFilter: string, readonly historySeconds: number } {
  const where = `plugins.${DASHBOARD_PLUGIN_NAME}`
  if (given === undefined || given === null) given = {}
  if (typeof given !== 'object' || Array.isArray(given)) throw configError(`${where} must be an object`)
  const options = given as Record<string, unknown>
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.has(key)) throw configError(`${where}: unknown key "${key}"`)
  }
  const { websocketUrl, eventsFilter, historySeconds } = options
  if (websocketUrl !== undefined && (typeof websocketUrl !== 'string' || !/^wss?:\/\/[^\s]+$/.test(websocketUrl))) {
    throw configError(`${where}.websocketUrl must be a ws:// or wss:// URL, got ${JSON.stringify(websocketUrl)}`)
  }
  if (eventsFilter !== undefined && (typeof eventsFilter !== 'string' || eventsFilter.length === 0 || eventsFilter.startsWith('$fn/'))) {
    throw configError(`${where}.eventsFilter must be an MQTT topic filter outside $fn/, got ${JSON.stringify(eventsFilter)}`)
  }
  if (historySeconds !== undefined && (typeof historySeconds !== 'number' || !Number.isInteger(historySeconds) || historySeconds < 10 || historySeconds > 3600)) {
    throw configError(`${where}.historySeconds must be an integer 10–3600, got ${JSON.stringify(historySeconds)}`)
  }
  return Object.freeze({
    websocketUrl: websocketUrl as string | undefined,
    eventsFilter: (eventsFilter as string | undefined) ?? '#',
    historySeconds: (historySeconds as number | undefined) ?? 300,
  })
}

/** The page's files, served as they are. `fnbus.js` is the SDK's browser bundle (dist/browser/), usable by any page. */
const ASSETS: Readonly<Record<string, { readonly file: URL, readonly type: string }>> = {
  '/': { file: new URL('./page/index.html', import.meta.url), type: 'text/html; charset=utf-8' },
  '/dashboard.js': { file: new URL('./page/dashboard.js', import.meta.url), type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { file: new URL('./page/dashboard.css', import.meta.url), type: 'text/css; charset=utf-8' },
  '/fnbus.js': { file: new URL('../../browser/fnbus.js', import.meta.url), type: 'text/javascript; charset=utf-8' },
  '/fnbus.js.map': { file: new URL('../../browser/fnbus.js.map', import.meta.url), type: 'application/json; charset=utf-8' },
}

/**
 * The page loads only its own files and talks only to its gateway (HTTP, and MQTT over WebSocket wherever
 * `websocketUrl` points); no other site may frame it, so its buttons cannot be clicked through a disguise.
 */
const PAGE_HEADERS = {
  // a page a signed-in operator loaded is kept nowhere (shared machines, proxies)
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const

export function dashboardPlugin (options?: DashboardPluginOptions): GatewayPlugin {
  let stop: (() => void) | undefined
  return {
    name: DASHBOARD_PLUGIN_NAME,
    async start (context: PluginContext) {
      const settings = normalizeDashboardOptions(options ?? context.config)
      const http = context.http
      if (http === undefined) throw configError(`plugins.${DASHBOARD_PLUGIN_NAME} needs the gateway's HTTP server: set http.port (--http-port)`)
      stop = await serveDashboard(context, http, settings)
    },
    stop () {
      stop?.()
      stop = undefined
    },
  }
}

export default dashboardPlugin

async function serveDashboard (context: PluginContext, http: HttpRoutes, settings: ReturnType<typeof normalizeDashboardOptions>): Promise<() => void> {
  const { gateway, events, logger } = context
  // read once: a missing file is a broken install, better said at start than on the first page view
  const assets = new Map<string, { readonly body: Buffer, readonly type: string }>()
  for (const [path, { file, type }] of Object.entries(ASSETS)) {
    try {
      assets.set(path, { body: await readFile(file), type })
    } catch (err) {
      throw new FnbusError('FNBUS_CONFIG_INVALID', `the dashboard's file ${fileURLToPath(file)} is missing (run npm run build)`, { cause: err })
    }
  }
  for (const [path, asset] of assets) {
    http.route('GET', path, (_req, res) => {
      res.writeHead(200, { ...PAGE_HEADERS, 'content-type': asset.type, 'content-length': asset.body.length })
      res.end(asset.body)
    })
  }

  const series = new InvocationSeries(settings.historySeconds)
  const recentErrors: RecentError[] = []
  const remember = (error: RecentError): void => {
    recentErrors.push(error)
    if (recentErrors.length > RECENT_ERRORS) recentErrors.shift()
  }
  const onInvocation = (o: InvocationObservation): void => {
    series.record(o)
    if (o.outcome !== 'ok') {
      remember({ at: Date.now(), kind: 'invocation', function: o.function, requestId: o.requestId, code: outcomeCode(o.outcome), type: o.type, durationMs: o.durationMs })
    }
  }
  const onRetry = (o: RetryObservation): void => {
    remember({ at: Date.now(), kind: 'retry', function: o.function, requestId: o.requestId, code: o.error.code, message: o.error.message })
  }
  const onDeadLetter = (o: DeadLetterObservation): void => {
    remember({ at: Date.now(), kind: 'deadLetter', function: o.function, requestId: o.requestId, code: o.error.code, message: o.error.message })
  }
  events.on('invocation', onInvocation)
  events.on('retry', onRetry)
  events.on('deadLetter', onDeadLetter)
  // once identities exist, the page's live view needs credentials of its own: the same for every viewer, valid
  // until the plugin stops (the gateway keeps issued secrets in memory only: a restart issues new ones)
  const live = gateway.bus.authenticator.issue(DASHBOARD_IDENTITY, { readOnly: true })

  // Signing in: the browser asks for a user name and password on this path's 401, then sends them with every
  // request to this origin (Basic credentials cover the path's directory, here all of it) and the page shows the
  // buttons they allow. Offered where an action without credentials would be answered 401 (`http.auth`).
  http.route('GET', '/login', async (req, res, { identity }) => {
    const noStore = { 'cache-control': 'no-store' }
    if (identity !== undefined) {
      res.writeHead(303, { ...noStore, location: '/', 'content-length': 0 })
      res.end()
      return
    }
    const decision = await http.authorize(req, { action: true })
    if (decision.allowed) {
      // an authorizer that admits actions without naming anyone: there is no one to sign in as
      res.writeHead(303, { ...noStore, location: '/', 'content-length': 0 })
      res.end()
      return
    }
    if (decision.status !== 401) {
      sendJson(res, 404, { error: 'not_found', message: 'signing in needs operator identities: set http.auth to "basic"' })
      return
    }
    res.setHeader('www-authenticate', WWW_AUTHENTICATE)
    sendJson(res, 401, { error: 'FNBUS_NOT_AUTHORIZED', message: 'sign in with an operator identity (HTTP Basic)' })
  })

  http.route('GET', '/api/dashboard', async (req, res, { identity }) => {
    const decision = await http.authorize(req, { action: true })
    sendJson(res, 200, {
      // who the browser signed in as (undefined: no one), and whether `/login` would ask for credentials
      operator: {
        identity: identity ?? null,
        canAct: decision.allowed,
        signIn: identity === undefined && !decision.allowed && decision.status === 401,
      },
      status: await gateway.status({ visible: gateway.bus.manageableBy(identity) }),
      series: series.snapshot(),
      recentErrors: [...recentErrors].reverse(),
      // the page shows its buttons only when they would be allowed; the POSTs are decided again, each on its own
      canAct: decision.allowed,
      live: {
        // null: `/mqtt` of the page's own host, where the websocket plugin listens when it shares the HTTP port
        url: settings.websocketUrl ?? null,
        // without a URL of its own, the live view has something to connect to only if this server takes upgrades
        available: settings.websocketUrl !== undefined || http.server.listenerCount('upgrade') > 0,
        filter: settings.eventsFilter,
      },
    })
  })

  const action = (path: string, run: (body: Record<string, unknown>, context: HttpRequestContext) => Promise<unknown>): void => {
    http.route('POST', path, async (req, res, requestContext) => {
      let result: unknown
      try {
        checkSameOrigin(req)
        const body = await readJson(req)
        result = await run(body, requestContext)
      } catch (err) {
        sendError(res, err)
        return
      }
      logger.info({ action: path, identity: requestContext.identity, result }, 'dashboard action')
      sendJson(res, 200, result)
    }, { action: true })
  }
  // As `fnbus queue` over the bus: under a policy the operator acts on the functions its identity may manage.
  // An authorizer that admits an action without naming an identity speaks for the gateway itself.
  const operator = (context: HttpRequestContext): string => context.identity ?? GATEWAY_IDENTITY
  action('/api/dashboard/retry', async (body, context) => {
    if (typeof body.invocationId === 'string') return await gateway.bus.queueAs(operator(context), { op: 'retry', iid: body.invocationId })
    return await gateway.bus.queueAs(operator(context), { op: 'retry', fn: optionalFunction(body) })
  })
  action('/api/dashboard/purge', async (body, context) => await gateway.bus.queueAs(operator(context), { op: 'purge', fn: optionalFunction(body) }))
  action('/api/dashboard/cancel', async (body, context) => {
    if (typeof body.invocationId !== 'string' || body.invocationId.length === 0) throw new FnbusError('FNBUS_INVALID_ARGUMENT', 'invocationId must be a non-empty string')
    await gateway.bus.authorizeManage(operator(context), { invocationId: body.invocationId })
    await gateway.bus.cancel(body.invocationId)
    return { cancelled: body.invocationId }
  })

  // what the live view connects with; a read like the rest of the page, so whoever may read the page gets it
  http.route('GET', '/api/dashboard/live', (_req, res) => {
    sendJson(res, 200, {
      url: settings.websocketUrl ?? null,
      available: settings.websocketUrl !== undefined || http.server.listenerCount('upgrade') > 0,
      filter: settings.eventsFilter,
      username: live.username,
      password: live.password,
    })
  })

  logger.info({ url: `${http.url}/` }, 'dashboard')
  return () => {
    live.revoke()
    events.off('invocation', onInvocation)
    events.off('retry', onRetry)
    events.off('deadLetter', onDeadLetter)
  }
}

function outcomeCode (outcome: string): string {
  if (outcome === 'handled') return 'Handled'
  if (outcome === 'unhandled') return 'Unhandled'
  return outcome
}

function optionalFunction (body: Record<string, unknown>): string | undefined {
  const fn = body.function
  if (fn === undefined || fn === null) return undefined
  return parseFunctionName(fn, 'function').name
}

/**
 * A page of another site can make the operator's browser POST here (a form needs no CORS preflight); the
 * authorizer would see the operator's credentials. Browsers name the page's origin: it must be this server.
 */
function checkSameOrigin (req: IncomingMessage): void {
  const origin = req.headers.origin
  const type = req.headers['content-type'] ?? ''
  // a cross-site form cannot send application/json without a preflight this server never grants
  if (!type.startsWith('application/json')) throw new FnbusError('FNBUS_INVALID_ARGUMENT', 'actions take a JSON body (content-type: application/json)')
  if (origin === undefined) return
  let host: string
  try {
    host = new URL(origin).host
  } catch {
    throw new FnbusError('FNBUS_NOT_AUTHORIZED', 'malformed Origin header')
  }
  if (host !== req.headers.host) throw new FnbusError('FNBUS_NOT_AUTHORIZED', `actions are taken from the gateway's own page, not from ${origin}`)
}

async function readJson (req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_BODY_BYTES) throw new FnbusError('FNBUS_PAYLOAD_TOO_LARGE', `an action's body is at most ${MAX_BODY_BYTES} bytes`)
    chunks.push(chunk as Buffer)
  }
  let body: unknown
  try {
    body = size === 0 ? {} : JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new FnbusError('FNBUS_INVALID_ARGUMENT', 'the body is not JSON')
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new FnbusError('FNBUS_INVALID_ARGUMENT', 'the body must be a JSON object')
  return body as Record<string, unknown>
}

const STATUS_OF: Partial<Record<string, number>> = {
  FNBUS_INVALID_ARGUMENT: 400,
  FNBUS_PAYLOAD_TOO_LARGE: 413,
  FNBUS_NOT_AUTHORIZED: 403,
  FNBUS_INVOCATION_NOT_FOUND: 404,
  FNBUS_SHUTTING_DOWN: 503,
  FNBUS_STORE_FAILURE: 503,
}

function sendError (res: ServerResponse, err: unknown): void {
  const code = err instanceof FnbusError && isErrorCode(err.code) ? err.code : undefined
  if (code === undefined) throw err // the HTTP server logs it and answers 500
  sendJson(res, STATUS_OF[code] ?? 500, { error: code, message: (err as Error).message })
}
