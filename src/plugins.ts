// The plugin surface: what a plugin (built-in under plugins/, or a third party's) may use of a gateway.
// Keep it small: everything here is a promise to plugin authors.
import { EventEmitter } from 'node:events'
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http'
import type { ErrorCode } from './errors.js'
import type { Gateway } from './gateway.js'
import type { Logger } from './options.js'

/**
 * Built-in plugins live in the repository's `plugins/<name>/index.ts`, built after the core and importing nothing but
 * `fnbus` itself (importable as `fnbus/plugins/<name>`; the gateway loads them by name, on demand); each module's
 * default export is a factory `(): GatewayPlugin`, which the gateway calls when the config's `plugins` object (or
 * `createGateway({ plugins })`) names it. A third-party plugin is any object satisfying GatewayPlugin.
 */
export type PluginFactory = () => GatewayPlugin

/** The built-in plugins, by name: what the config's `plugins` object may name. */
export const BUILTIN_PLUGINS: readonly string[] = Object.freeze(['metrics', 'dashboard', 'routes', 'websocket'])

/** An optional extension of a gateway, switched on by `createGateway({ plugins })` or the config's `plugins` key. */
export interface GatewayPlugin {
  /** Unique per gateway; also the key of the plugin's block in the config (`plugins: { <name>: {…} }`). */
  readonly name: string
  /** Called by createGateway once the MQTT (and HTTP) listeners are up, in the order the plugins were given. */
  start (context: PluginContext): void | Promise<void>
  /** Called by `gateway.close()`, in reverse order, before the bus stops taking calls. */
  stop? (): void | Promise<void>
}

export interface PluginContext {
  /** The public handle: url, aedes, bus, serve, invoke, publish, subscribe, stats, status(). */
  readonly gateway: Gateway
  /** This plugin's block of the configuration, as given (`{}` when none): the plugin validates it. */
  readonly config: unknown
  /** The gateway's logger, with `{ plugin: name }` on every entry when the logger supports `child` (pino does). */
  readonly logger: Logger
  /** Observations of the gateway's work. Listening is what costs: with no listener an observation is not even built. */
  readonly events: GatewayEvents
  /** The gateway's HTTP server, when `http.port` is set; undefined otherwise. */
  readonly http: HttpRoutes | undefined
}

/** How an invocation ended, as metrics count it: the function's answer, its error kind, or the bus error's code. */
export type InvocationOutcome = 'ok' | 'handled' | 'unhandled' | ErrorCode

/** One settled invocation (Sync call, or one delivery attempt of a stored Async invocation). */
export interface InvocationObservation {
  /** `context.requestId` of the function; the invocationId for Async. */
  readonly requestId: string
  /** `Service/function`. */
  readonly function: string
  readonly service: string
  readonly type: 'Sync' | 'Async'
  readonly outcome: InvocationOutcome
  /** From the dispatcher taking the call to its outcome (queueing for a worker included). */
  readonly durationMs: number
  /** The caller's identity, when the connection has one (security) or the caller named one (routes). */
  readonly identity?: string
}

export interface AcceptedObservation {
  /** The stored invocation's id. */
  readonly requestId: string
  readonly function: string
  readonly identity?: string
}

export interface RetryObservation {
  readonly requestId: string
  readonly function: string
  /** Attempts made so far (1 after the first failure). */
  readonly attempt: number
  readonly delayMs: number
  readonly error: { readonly code: string, readonly message: string }
}

export interface DeadLetterObservation {
  readonly requestId: string
  readonly function: string
  readonly attempts: number
  readonly error: { readonly code: string, readonly message: string }
}

export interface ClientObservation {
  readonly clientId: string
  readonly identity?: string
}

export interface WorkerObservation {
  readonly function: string
  /** The worker's client id, or `in-process`. */
  readonly worker: string
  readonly concurrency: number
}

/** A connection refused before it was accepted (bad CONNECT, refused credentials, …). */
export interface RejectedObservation {
  /** A short stable word: `protocol_error`, `bad_credentials`, `not_authorized`, `identifier_rejected`, … */
  readonly reason: string
  readonly clientId?: string
}

/** A frame or bus message dropped: the frame guard cut a connection, or the bus refused an envelope. */
export interface FrameDroppedObservation {
  /** `frame_too_large`, `malformed_frame`, or the bus error code of a refused envelope (`FNBUS_BAD_MESSAGE`, …). */
  readonly reason: string
  readonly clientId?: string
}

/** A bound of `limits` was reached: the connection or request it names was cut or refused. */
export interface LimitObservation {
  /** The `limits` key, e.g. `maxBufferedBytesPerClient`. */
  readonly limit: string
  readonly clientId?: string
}

/** An event message (ordinary MQTT topic, never the `$fn/` bus) entering the broker or leaving it to one subscriber. */
export interface EventMessageObservation {
  readonly direction: 'in' | 'out'
  readonly topic: string
}

/**
 * An event message the broker did not deliver to one subscriber, or did not keep: a subscriber's buffer over
 * `limits.maxEventBufferBytes` (QoS 0), a persistent session's queue at its bound, a retained message past the
 * retained bounds.
 */
export interface MessageDroppedObservation {
  /** `subscriber_buffer_full`, `session_queue_full`, `session_queues_full` (all sessions together), `retained_full`. */
  readonly reason: string
  readonly topic: string
  /** The subscriber or session that lost it; none for a retained message. */
  readonly clientId?: string
}

/** A connection the gateway cut after it was accepted, for what it did (or failed to do) since. */
export interface ConnectionCutObservation {
  /** `slow_subscriber`: over `limits.maxEventBufferBytes` for `limits.eventBufferTimeoutMs`, or for a QoS 1/2 message. */
  readonly reason: string
  readonly clientId: string
}

/** Every observation a gateway makes, by event name. */
export interface GatewayEventMap {
  invocation: [InvocationObservation]
  accepted: [AcceptedObservation]
  retry: [RetryObservation]
  deadLetter: [DeadLetterObservation]
  client: [ClientObservation]
  clientDisconnect: [ClientObservation]
  workerRegistered: [WorkerObservation]
  workerGone: [WorkerObservation]
  rejected: [RejectedObservation]
  frameDropped: [FrameDroppedObservation]
  eventMessage: [EventMessageObservation]
  limitReached: [LimitObservation]
  messageDropped: [MessageDroppedObservation]
  connectionCut: [ConnectionCutObservation]
}

export type GatewayEventName = keyof GatewayEventMap

/**
 * The gateway's observations. Emitters check `observed(name)` before building an observation, so the hot path
 * pays one property lookup when nobody listens. A listener that throws is logged, never breaks the gateway.
 */
export class GatewayEvents extends EventEmitter<GatewayEventMap> {
  readonly #onListenerError: (err: unknown, name: GatewayEventName) => void
  /** Listeners per event, kept as listeners come and go: `observed()` is asked on every invocation. */
  readonly #listening: Record<string, number> = Object.create(null) as Record<string, number>

  /** `onListenerError` hears of a listener that threw (the gateway logs it); default: ignored. */
  constructor (onListenerError: (err: unknown, name: GatewayEventName) => void = () => {}) {
    super()
    this.#onListenerError = onListenerError
    this.#track()
  }

  #track (): void {
    const emitter = this as EventEmitter
    emitter.on('newListener', (name: string | symbol) => { if (typeof name === 'string') this.#listening[name] = (this.#listening[name] ?? 0) + 1 })
    emitter.on('removeListener', (name: string | symbol) => { if (typeof name === 'string') this.#listening[name] = (this.#listening[name] ?? 1) - 1 })
  }

  /** Without a name this would also remove the bookkeeping of `observed()`: it is counted afresh. */
  override removeAllListeners (name?: GatewayEventName): this {
    super.removeAllListeners(name as GatewayEventName)
    if (name === undefined) {
      for (const key of Object.keys(this.#listening)) this.#listening[key] = 0
      this.#track()
    }
    return this
  }

  /** Whether anyone listens for `name`: emitters skip building the observation otherwise. */
  observed (name: GatewayEventName): boolean {
    return (this.#listening[name] ?? 0) > 0
  }

  /** Observations are emitted from the middle of the gateway's work: a listener that throws must not break it. */
  // Every observation is one object: no rest parameter, so emitting allocates nothing more.
  override emit<K extends GatewayEventName> (name: K, observation: GatewayEventMap[K][0]): boolean {
    try {
      return super.emit(name as GatewayEventName, observation as never)
    } catch (err) {
      this.#onListenerError(err, name)
      return true
    }
  }
}

// ---- HTTP ----

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

/** What the authorize seam sees of a request. */
export interface HttpRequestInfo {
  readonly method: string
  /** The path, without the query. */
  readonly path: string
  readonly remoteAddress: string
  /** The request came from this machine (127.0.0.0/8, ::1). */
  readonly loopback: boolean
  /** The route changes state (dead-letter retry, cancel, …) rather than reading it. */
  readonly action: boolean
  readonly headers: IncomingHttpHeaders
}

export type AuthorizeDecision =
  | { readonly allowed: true, readonly identity?: string }
  | { readonly allowed: false, readonly status: 401 | 403, readonly reason: string }

/**
 * Decides whether an HTTP request may proceed, and as which identity. The gateway's default (no `http.authorize`
 * configured): loopback only, read-only. The security work plugs its identities in here.
 */
export type HttpAuthorizer = (request: HttpRequestInfo, req: IncomingMessage) => AuthorizeDecision | Promise<AuthorizeDecision>

export interface HttpRequestContext {
  /** The request's URL, parsed (query in `url.searchParams`). */
  readonly url: URL
  /** The identity the authorizer granted; undefined for the default loopback access. */
  readonly identity: string | undefined
}

export type HttpHandler = (req: IncomingMessage, res: ServerResponse, context: HttpRequestContext) => void | Promise<void>

export interface HttpRouteOptions {
  /** The route changes state. Default: true for every method but GET and HEAD. Actions need an authorizer's yes. */
  readonly action?: boolean
}

/** The gateway's HTTP server as plugins see it. */
export interface HttpRoutes {
  /** `http://host:port`. */
  readonly url: string
  /** The node:http server itself, for protocols that take over a connection (WebSocket `upgrade`). */
  readonly server: Server
  /**
   * Adds a route. `path` is exact (`/metrics`), or a prefix ending in `/*` (`/assets/*`), or `/*` for everything
   * no other route takes. Exact paths win over prefixes, longer prefixes over shorter. A route taken twice throws.
   */
  route (method: HttpMethod, path: string, handler: HttpHandler, options?: HttpRouteOptions): void
  /** The decision the server applies to its own routes, for connections a plugin takes over (`upgrade`). */
  authorize (req: IncomingMessage, options?: { readonly action?: boolean }): Promise<AuthorizeDecision>
}

// ---- status: what `fnbus status`, `GET /api/status` and the dashboard show ----

export interface WorkerStatus {
  /** The worker's client id, or `in-process`. */
  readonly label: string
  readonly concurrency: number
  readonly inFlight: number
}

/** One instance of a function the gateway's supervisor runs (`functions[].module`). */
export interface InstanceStatus {
  /** `Service/function#n`. */
  readonly label: string
  readonly pid: number | undefined
  /** Started and connected; false while starting or waiting to restart. */
  readonly ready: boolean
  readonly restarts: number
}

export interface FunctionStatus {
  /** `Service/function`. */
  readonly name: string
  readonly workers: readonly WorkerStatus[]
  /** Sync calls waiting for a free worker. */
  readonly queued: number
  /** Calls running now, over all its workers. */
  readonly inFlight: number
  /** Stored Async invocations. */
  readonly async: { readonly pending: number, readonly inFlight: number, readonly dead: number }
  /** Instances the supervisor runs; empty when the function's workers run elsewhere. */
  readonly instances: readonly InstanceStatus[]
}

export interface DeadLetterStatus {
  readonly invocationId: string
  readonly function: string
  readonly attempts: number
  /** Epoch ms. */
  readonly createdAt: number
  readonly diedAt: number
  readonly error: { readonly code: string, readonly message: string } | undefined
  readonly payloadBytes: number
}

export interface HealthStatus {
  /** broker, store and every supervised instance are up. */
  readonly ready: boolean
  readonly broker: boolean
  readonly store: boolean
  /** Every supervised instance is ready (true when none is supervised). */
  readonly functions: boolean
}

export interface GatewayStatus {
  /** fnbus version of the gateway. */
  readonly version: string
  /** Epoch ms. */
  readonly startedAt: number
  readonly uptimeMs: number
  readonly url: string
  readonly httpUrl: string | undefined
  readonly health: HealthStatus
  readonly connections: {
    /** MQTT connections (functions, callers, plain MQTT clients). */
    readonly clients: number
    /** Connections that spoke the bus protocol. */
    readonly busClients: number
    /** Workers over all functions (a process serving two functions counts twice). */
    readonly workers: number
  }
  /** Sorted by name. */
  readonly functions: readonly FunctionStatus[]
  /** Dead letters, oldest first as `fnbus queue dead` lists them (at most `deadLetterLimit`, default 20). */
  readonly deadLetters: readonly DeadLetterStatus[]
}

/** Where a gateway learns the state of the instances it supervises; `fnbus start` attaches its Supervisor. */
export interface InstanceSource {
  instances (): readonly InstanceStatus[]
}
