// The plugin surface: what a plugin (built-in under plugins/, or a third party's) may use of a gateway.
// Keep it small: everything here is a promise to plugin authors.
import type { Aedes } from 'aedes'
import type { BridgeStatus } from './bridge/status.js'
import type { ClusterStatus } from './cluster/status.js'
import type { EventHandler, FunctionBus, InvokeOptions, PublishOptions, ServedFunction, ServeOptions } from './broker/function-bus.js'
import type { BrokerStorage } from './broker/client-bounds.js'
import type { InvocationTallySnapshot } from './dispatcher/tally.js'
import type { HostAllowList } from './http/hosts.js'
import type { Handler } from './runtime/handler.js'
import type { IssuedCredentials } from './security/authenticate.js'
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Logger } from './options.js'
import type { GatewayEvents } from './observations.js'

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

export type {
  InvocationOutcome, InvocationObservation, AcceptedObservation, RetryObservation, DeadLetterObservation, ClientObservation,
  WorkerObservation, RejectedObservation, FrameDroppedObservation, LimitObservation, EventMessageObservation,
  MessageDroppedObservation, ConnectionCutObservation, GatewayEventMap, GatewayEventName,
} from './observations.js'
export { GatewayEvents } from './observations.js'
export type { BridgeStatus, BridgeDropReason, BridgeInboundDropReason } from './bridge/status.js'
export type { ClusterStatus, ClusterMemberStatus } from './cluster/status.js'

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
  /** `process`: a process of its own; `thread`: a Worker thread of its host process (the gateway's). */
  readonly isolation?: 'process' | 'thread'
  /** The process that hosts it: its own, or for a thread its host's. */
  readonly pid: number | undefined
  /** A thread's host process when it is not the gateway's: its `runtimeHost`. */
  readonly host?: string
  /** A thread's id within its host process. */
  readonly threadId?: number
  /** Started and connected; false while starting or waiting to restart. */
  readonly ready: boolean
  readonly restarts: number
  /** Why its last process failed to start or ended, while it is not ready (a module that does not load, a crash). */
  readonly lastFailure?: string
  /** Resident memory of its process at its last heartbeat, bytes (processes only: a thread shares its host's). */
  readonly rssBytes?: number
  /** Its V8 heap at its last heartbeat: bytes used, and the most it may grow to (a thread's `memoryLimitMb`). */
  readonly heapUsedBytes?: number
  readonly heapLimitBytes?: number
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
  /** Stored invocations wait for it, but no configuration names it and no worker has served it since the start. */
  readonly unknown?: true
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
  /** In a cluster: connected to NATS, so calls and events cross gateways (absent outside a cluster). */
  readonly cluster?: boolean
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
  /**
   * The direct path between function threads (docs/isolation.md): leases held now (their slots count in their
   * workers' `inFlight`), and Sync calls settled on one since the start (they count in the tallies as any other).
   */
  readonly direct: { readonly leases: number, readonly calls: number }
  /** Sorted by name. */
  readonly functions: readonly FunctionStatus[]
  /** Dead letters, oldest first as `fnbus queue dead` lists them (at most `deadLetterLimit`, default 20). */
  readonly deadLetters: readonly DeadLetterStatus[]
  /** The bridges to remote brokers, in configuration order (docs/bridge.md#operations); absent from older gateways. */
  readonly bridges?: readonly BridgeStatus[]
  /** The cluster this gateway is in (docs/cluster.md#operations); absent outside a cluster. */
  readonly cluster?: ClusterStatus
}

/** Where a gateway learns the state of the instances it supervises; `fnbus start` attaches its Supervisor. */
export interface InstanceSource {
  instances (): readonly InstanceStatus[]
}

export interface StatusOptions {
  /** Dead letters to list, oldest first. Default 20. */
  readonly deadLetterLimit?: number
  /** Which functions to show (the others are left out, their dead letters too); default: all. */
  readonly visible?: (fn: string) => boolean
}

export interface Gateway {
  /** `mqtt://host:port` of the listener (`mqtts://` with TLS). */
  readonly url: string
  /** `mqtt+unix:///path` of the Unix socket, when `socket` was given. */
  readonly socketUrl: string | undefined
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
   * Every function's settled invocations since the start, by type and outcome, with a sample of their latencies:
   * counted by the dispatcher as calls settle (a few additions each), read when asked — what `/metrics` exports.
   */
  invocations (): InvocationTallySnapshot[]
  /** Observations of the gateway's work (invocations, workers, connections…): what plugins listen to. */
  readonly events: GatewayEvents
  /** The HTTP port, when `http` was given. */
  readonly http: HttpRoutes | undefined
  /** `http://host:port` of the HTTP port, when there is one. */
  readonly httpUrl: string | undefined
  /** What runs, what fails and what waits: what `fnbus status`, `/api/status` and the dashboard show. */
  status (options?: StatusOptions): Promise<GatewayStatus>
  /** Ready when the broker listens, the store is open and writable (see Database) and every supervised instance is up. */
  health (): HealthStatus
  /** The supervised instances of every source `attachInstances` gave it, now. */
  instances (): InstanceStatus[]
  /** The bridges to remote brokers (docs/bridge.md#operations); empty without bridges. */
  bridges? (): BridgeStatus[]
  /** The cluster this gateway is in (docs/cluster.md#operations); undefined outside a cluster. */
  cluster? (): ClusterStatus | undefined
  /** Tells the gateway about the instances a supervisor runs for it (`fnbus start` does); they count for health. */
  attachInstances (source: InstanceSource): void
  /**
   * Fresh credentials for `identity`, valid until revoked or until the gateway stops; the supervisor gives each
   * instance it starts its own.
   */
  issueCredentials (identity: string): IssuedCredentials
  /** Graceful: no new connections or calls, calls in flight answered or failed with a code, store closed. */
  close (): Promise<void>
  /**
   * The names HTTP requests may carry in `Host` (`http.allowedHosts` and those always allowed): what a plugin
   * serving HTTP or WebSocket on a listener of its own checks, as the HTTP port does.
   */
  readonly allowedHosts: HostAllowList
  /**
   * Throws FNBUS_CONFIG_INVALID when a listener on `host` would serve anonymous clients beyond this machine while
   * nobody chose to (no identity configured, `allowAnonymous` not set): the rule every listener of the gateway
   * obeys. `key` names the setting in the message (`plugins.websocket.host`).
   */
  checkExposure (host: string, key: string): void
  /** What the broker keeps for clients now: persistent sessions' queues and retained messages (their limits bound them). */
  brokerStorage (): BrokerStorage
}
