import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { FnbusError, configError } from './errors.js'
import { DEFAULT_FUNCTION_CONCURRENCY, type Limits } from './limits.js'
import { normalizeBusOptions } from './options.js'
import { checkEventTopic } from './protocol/events.js'
import type { AsyncOptions } from './broker/function-bus.js'
import type { HttpAuthMode } from './http/identity-auth.js'
import { parseAllowedHosts } from './http/hosts.js'
import { parseRouteRules, parseRoutesOptions } from './route-rules.js'
import type { LogFormat, LogLevel } from './log-settings.js'
import { parsePolicy, type Policy } from './security/policy.js'
import type { IdentitySource } from './security/authenticate.js'
import { IDENTITIES_FILE_NAME, parseIdentityTable } from './security/credentials.js'
import { checkConfigFile } from './config/check.js'
import type { BridgeConfig } from './bridge/bridge-config.js'
import type { ClusterConfig } from './cluster/cluster-config.js'

/** The file `fnbus start` reads from its working directory when `--config` names none. */
export const CONFIG_FILE_NAME = 'fnbus.config.json'
export const DEFAULT_INSTANCES = 1
export { DEFAULT_FUNCTION_CONCURRENCY } from './limits.js'

/** One `functions[]` entry, validated, its `module` made absolute. */
export interface FunctionConfig {
  readonly service: string
  readonly function: string
  /** `Service/function`. */
  readonly name: string
  /** Absolute path of the module the supervisor runs; undefined: its workers run outside the supervisor. */
  readonly module: string | undefined
  readonly instances: number
  readonly concurrency: number
  readonly env: Readonly<Record<string, string>>
  /** Calls to the function default to it and may not ask for more. */
  readonly timeoutMs: number | undefined
  /** Its AWS Lambda name: Greengrass' `Lambda().invoke({ FunctionName })` of it (or of an ARN ending in it) calls this function. */
  readonly lambdaName: string | undefined
  /**
   * A process instance whose resident memory exceeds it is restarted; a thread's heap is bounded by it (its
   * Worker's resourceLimits).
   */
  readonly memoryLimitMb: number | undefined
  /** `process` or `thread`: how its instances run; undefined: the supervisor's default (docs/isolation.md). */
  readonly isolation: 'process' | 'thread' | undefined
  /** A thread function's host process, shared by the functions that name it; undefined: the gateway's process. */
  readonly runtimeHost: string | undefined
  /** Options of its stored (Async) invocations. */
  readonly async: AsyncOptions | undefined
}

/** `fnbus.config.json`, validated; paths absolute. Keys the file did not set are undefined. */
export interface FnbusConfig {
  /** Absolute path of the file, or undefined when there was none. */
  readonly file: string | undefined
  readonly port: number | undefined
  readonly host: string | undefined
  readonly dataDir: string | undefined
  readonly memory: boolean | undefined
  /** fsync every store write (survives a power cut); default true. false: faster, survives a process kill only. */
  readonly fsync: boolean | undefined
  readonly limits: Partial<Limits> | undefined
  readonly functions: readonly FunctionConfig[]
  /** The `log` block: level and format of the gateway's log, and whether payloads appear in it. */
  readonly log: LogConfig | undefined
  /** The operator's HTTP port (`/healthz`, `/api/status`, plugins' routes); undefined: none. */
  readonly http: HttpConfig | undefined
  /**
   * Built-in plugins to start, by name, each with its block (validated by the plugin when it starts). The
   * top-level `routes` key lands here as `routes: { rules }`: rules in the configuration switch the plugin on.
   */
  readonly plugins: Readonly<Record<string, unknown>> | undefined
  /** Who may invoke, serve, publish, subscribe; undefined: no policy, everything allowed. */
  readonly policy: Policy | undefined
  /**
   * The identities: an inline table, or the absolute path of an identities file. Undefined: the file
   * `fnbus.identities.json` beside the configuration (see `identitiesFileOf`).
   */
  readonly identities: IdentitySource | undefined
  /** Accept clients without a username; undefined: only while no identity exists. */
  readonly allowAnonymous: boolean | undefined
  /** TLS listener: absolute paths of PEM files. */
  readonly tls: TlsFiles | undefined
  /** A Unix socket to listen on too (absolute path); the functions the gateway supervises connect through it. */
  readonly socket: string | undefined
  /** Bridges to remote MQTT brokers (docs/bridge.md); their TLS file paths absolute. */
  readonly bridges: readonly BridgeConfig[] | undefined
  /** The cluster this gateway joins (docs/cluster.md); its credentials and TLS file paths absolute. */
  readonly cluster: ClusterConfig | undefined
}

export interface HttpConfig {
  readonly port: number
  /** Default 127.0.0.1. */
  readonly host: string | undefined
  /** `basic`: operators sign in with HTTP Basic as one of the gateway's identities; undefined: loopback, read-only. */
  readonly auth: HttpAuthMode | undefined
  /** Names requests may carry in `Host` besides IP addresses, localhost and the machine's name (DNS rebinding). */
  readonly allowedHosts?: readonly string[]
}

export interface LogConfig {
  readonly level: LogLevel | undefined
  readonly format: LogFormat | undefined
  /** Put invocation payloads in debug lines. Default false: payloads are never logged. */
  readonly payloads: boolean | undefined
}

export interface TlsFiles {
  readonly cert: string
  readonly key: string
  /**
   * The CA certificate that signed `cert`, which clients must trust; the supervisor gives its path to the
   * functions it runs (`FNBUS_CA`). Undefined: `cert` is self-signed and is its own CA.
   */
  readonly ca: string | undefined
}

/** A `functions[]` entry as the schema accepts it: FunctionConfig's keys as the file writes them. */
type FunctionEntry = { readonly [K in Exclude<keyof FunctionConfig, 'name'>]?: FunctionConfig[K] } & { readonly service: string, readonly function: string }

/** The file's object as the schema accepts it. */
interface ConfigFile {
  readonly port?: number
  readonly host?: string
  readonly dataDir?: string
  readonly memory?: boolean
  readonly fsync?: boolean
  readonly limits?: Partial<Limits>
  readonly functions?: readonly FunctionEntry[]
  readonly log?: Partial<LogConfig>
  readonly http?: { readonly port: number, readonly host?: string, readonly auth?: HttpAuthMode, readonly allowedHosts?: readonly string[] }
  readonly plugins?: Readonly<Record<string, unknown>>
  readonly routes?: unknown
  readonly policy?: unknown
  readonly identities?: unknown
  readonly allowAnonymous?: boolean
  readonly tls?: { readonly cert: string, readonly key: string, readonly ca?: string }
  readonly socket?: string
  readonly bridges?: readonly BridgeConfig[]
  readonly cluster?: ClusterConfig
}

export const EMPTY_CONFIG: FnbusConfig = Object.freeze({
  file: undefined, port: undefined, host: undefined, dataDir: undefined, memory: undefined, fsync: undefined, limits: undefined, functions: [], log: undefined,
  http: undefined, plugins: undefined, policy: undefined, identities: undefined, allowAnonymous: undefined, tls: undefined, socket: undefined, bridges: undefined, cluster: undefined,
})

/**
 * Reads the configuration. With `explicitPath` (from `--config`) the file must exist; without it,
 * `fnbus.config.json` in `cwd` is read if present, else the configuration is empty.
 * Every problem is an FNBUS_CONFIG_INVALID error whose message starts with the file and names the key.
 */
export function loadConfig (explicitPath: string | undefined, cwd: string = process.cwd()): FnbusConfig {
  const file = resolve(cwd, explicitPath ?? CONFIG_FILE_NAME)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && explicitPath === undefined) return EMPTY_CONFIG
    throw configError(`${file}: cannot read the configuration file: ${(err as Error).message}`)
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw configError(`${file}: not valid JSON: ${(err as Error).message}`)
  }
  return parseConfig(raw, file)
}

/**
 * Validates a parsed configuration object against the configuration's schema (config/schema.ts), then what a schema
 * cannot say: limits against each other, each function listed once, topics, policy, routes and identities parsed by
 * their own modules. `file` names it in errors and anchors its relative paths.
 */
export function parseConfig (raw: unknown, file: string): FnbusConfig {
  checkConfigFile(raw, file)
  const config = raw as ConfigFile
  const fail = (message: string): FnbusError => configError(`${file}: ${message}`)
  // the modules that parse policies, routes, host names and identities name the key; the file is ours to add
  const within = <T>(parse: () => T): T => {
    try {
      return parse()
    } catch (err) {
      throw fail((err as Error).message)
    }
  }
  const base = dirname(file)
  const path = (value: string | undefined): string | undefined => value === undefined ? undefined : resolve(base, value)
  const limits = within(() => normalizeBusOptions({ limits: config.limits }).limits)
  const { http, tls, log } = config
  return Object.freeze({
    file,
    port: config.port,
    host: config.host,
    dataDir: path(config.dataDir),
    memory: config.memory,
    fsync: config.fsync,
    limits: config.limits,
    functions: parseFunctions(config.functions ?? [], base, limits, fail),
    log: log === undefined ? undefined : Object.freeze({ level: log.level, format: log.format, payloads: log.payloads }),
    http: http === undefined
      ? undefined
      : Object.freeze({
        port: http.port,
        host: http.host,
        auth: http.auth,
        ...http.allowedHosts === undefined ? {} : { allowedHosts: within(() => parseAllowedHosts(http.allowedHosts, 'http.allowedHosts')) },
      }),
    plugins: within(() => withRoutes(config.plugins, config.routes)),
    policy: config.policy === undefined ? undefined : within(() => parsePolicy(config.policy)),
    identities: typeof config.identities === 'string' ? resolve(base, config.identities) : config.identities === undefined ? undefined : within(() => parseIdentityTable(config.identities, '')),
    allowAnonymous: config.allowAnonymous,
    tls: tls === undefined ? undefined : Object.freeze({ cert: resolve(base, tls.cert), key: resolve(base, tls.key), ca: path(tls.ca) }),
    socket: path(config.socket),
    bridges: config.bridges === undefined ? undefined : Object.freeze(config.bridges.map(bridge => withTlsPaths(bridge, base))),
    cluster: config.cluster === undefined ? undefined : clusterWithPaths(config.cluster, base),
  })
}

/** The cluster block with the paths of its files made absolute (relative to the configuration); PEM contents stay. */
function clusterWithPaths (cluster: ClusterConfig, base: string): ClusterConfig {
  const file = (value: string | undefined): string | undefined => value === undefined || value.includes('-----BEGIN') ? value : resolve(base, value)
  const tls = cluster.tls === undefined ? undefined : Object.freeze({ ca: file(cluster.tls.ca), cert: file(cluster.tls.cert), key: file(cluster.tls.key) })
  return Object.freeze({ ...cluster, creds: file(cluster.creds), tls, servers: cluster.servers === undefined ? undefined : Object.freeze([...cluster.servers]) })
}

/** A bridge with the paths of its TLS files made absolute (relative to the configuration); PEM contents stay as they are. */
function withTlsPaths (bridge: BridgeConfig, base: string): BridgeConfig {
  if (bridge.tls === undefined) return Object.freeze({ ...bridge })
  const tls = Object.fromEntries(Object.entries(bridge.tls).map(([key, value]) => [key, typeof value === 'string' && !value.includes('-----BEGIN') ? resolve(base, value) : value]))
  return Object.freeze({ ...bridge, tls })
}

/**
 * The top-level `routes` rules (the configuration's place for them, docs/design.md) start the routes plugin. They are
 * validated here, as `plugins.routes` is, so that a bad rule stops the gateway with the file's name and the rule's index.
 */
function withRoutes (plugins: Readonly<Record<string, unknown>> | undefined, routes: unknown): Readonly<Record<string, unknown>> | undefined {
  if (plugins?.routes !== undefined) parseRoutesOptions(plugins.routes)
  if (routes === undefined) return plugins === undefined ? undefined : Object.freeze({ ...plugins })
  if (plugins?.routes !== undefined) throw new Error('give the route rules as "routes" or as "plugins.routes.rules", not both')
  parseRouteRules(routes, 'routes')
  return Object.freeze({ ...plugins, routes: { rules: routes } })
}

/**
 * The identities file of a configuration: the one it names, else `fnbus.identities.json` beside it (beside the
 * working directory without a configuration file). Undefined when the configuration holds its identities inline.
 */
export function identitiesFileOf (config: FnbusConfig, cwd: string): string | undefined {
  if (typeof config.identities === 'string') return config.identities
  if (config.identities !== undefined) return undefined
  return resolve(config.file === undefined ? cwd : dirname(config.file), IDENTITIES_FILE_NAME)
}

function parseFunctions (entries: readonly FunctionEntry[], base: string, limits: Limits, fail: (message: string) => FnbusError): readonly FunctionConfig[] {
  const names = new Set<string>()
  const lambdaNames = new Map<string, string>()
  return Object.freeze(entries.map((entry, index) => {
    const where = `functions[${index}]`
    const name = `${entry.service}/${entry.function}`
    if (names.has(name)) throw fail(`${where}: ${name} is listed twice`)
    names.add(name)
    if (entry.lambdaName !== undefined) {
      const other = lambdaNames.get(entry.lambdaName)
      if (other !== undefined) throw fail(`${where}: lambdaName ${entry.lambdaName} is ${other}'s already`)
      lambdaNames.set(entry.lambdaName, name)
    }
    // bounds that are limits of the gateway, which the file may have changed
    const within = (key: 'timeoutMs' | 'concurrency', limit: 'maxTimeoutMs' | 'maxConcurrency'): void => {
      const value = entry[key]
      if (value !== undefined && value > limits[limit]) throw fail(`${where}.${key} must be an integer between 1 and ${limits[limit]} (limits.${limit}), got ${value}`)
    }
    within('timeoutMs', 'maxTimeoutMs')
    within('concurrency', 'maxConcurrency')
    // how the gateway runs the function's module: without one it runs nothing, and the key would be ignored unseen
    if (entry.isolation !== undefined && entry.module === undefined) throw fail(`${where}: isolation says how the gateway runs the function's module, and it has no "module"`)
    if (entry.runtimeHost !== undefined && entry.isolation !== 'thread') throw fail(`${where}: runtimeHost names a process that hosts thread functions; it needs "isolation": "thread"`)
    for (const key of ['onSuccess', 'onFailure'] as const) {
      const topic = entry.async?.[key]
      if (topic === undefined) continue
      try {
        checkEventTopic(topic)
      } catch (err) {
        throw fail(`${where}.async.${key}: ${(err as Error).message}`)
      }
    }
    // every key the schema accepted is carried over as it is, so a new one needs no code here
    return Object.freeze({
      instances: DEFAULT_INSTANCES,
      concurrency: DEFAULT_FUNCTION_CONCURRENCY,
      timeoutMs: undefined,
      lambdaName: undefined,
      memoryLimitMb: undefined,
      isolation: undefined,
      runtimeHost: undefined,
      async: undefined,
      ...entry,
      name,
      module: entry.module === undefined ? undefined : resolve(base, entry.module),
      env: Object.freeze({ ...entry.env }),
      ...entry.async === undefined ? {} : { async: Object.freeze({ ...entry.async }) },
    })
  }))
}
