import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { FnbusError, configError } from './errors.js'
import { DEFAULT_LIMITS, type Limits } from './limits.js'
import { normalizeBusOptions } from './options.js'
import { isValidName, LAMBDA_NAME } from './protocol/names.js'
import { checkEventTopic } from './protocol/events.js'
import type { AsyncOptions } from './broker/function-bus.js'
import { BUILTIN_PLUGINS } from './plugins.js'
import { HTTP_AUTH_MODES, type HttpAuthMode } from './http/identity-auth.js'
import { parseAllowedHosts } from './http/hosts.js'
import { parseRouteRules, parseRoutesOptions } from './route-rules.js'
import { isLogFormat, isLogLevel, LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from './logging.js'
import { parsePolicy, type Policy } from './security/policy.js'
import type { IdentitySource } from './security/authenticate.js'
import { IDENTITIES_FILE_NAME, parseIdentityTable } from './security/credentials.js'

/** The file `fnbus start` reads from its working directory when `--config` names none. */
export const CONFIG_FILE_NAME = 'fnbus.config.json'
export const DEFAULT_INSTANCES = 1
export const DEFAULT_FUNCTION_CONCURRENCY = 8

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

export const EMPTY_CONFIG: FnbusConfig = Object.freeze({
  file: undefined, port: undefined, host: undefined, dataDir: undefined, memory: undefined, fsync: undefined, limits: undefined, functions: [], log: undefined,
  http: undefined, plugins: undefined, policy: undefined, identities: undefined, allowAnonymous: undefined, tls: undefined, socket: undefined,
})

const TOP_LEVEL_KEYS = new Set([
  'port', 'host', 'dataDir', 'memory', 'fsync', 'limits', 'functions', 'log', 'http', 'plugins', 'routes', 'policy', 'identities', 'allowAnonymous', 'tls',
  'socket',
])
const HTTP_KEYS = new Set(['port', 'host', 'auth', 'allowedHosts'])
const TLS_KEYS = new Set(['cert', 'key', 'ca'])
const FUNCTION_KEYS = new Set(['service', 'function', 'module', 'instances', 'concurrency', 'env', 'timeoutMs', 'memoryLimitMb', 'async', 'lambdaName', 'isolation'])
const LOG_KEYS = new Set(['level', 'format', 'payloads'])
const ASYNC_KEYS = new Set(['maxRetries', 'maxEventAgeSec', 'maxStored', 'retryDelayMs', 'idempotencyWindowSec', 'onSuccess', 'onFailure'])

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

/** Validates a parsed configuration object; `file` names it in errors and anchors its relative paths. */
export function parseConfig (raw: unknown, file: string): FnbusConfig {
  const fail = (message: string): FnbusError => configError(`${file}: ${message}`)
  if (!isPlainObject(raw)) throw fail('the configuration must be a JSON object')
  for (const key of Object.keys(raw)) {
    if (!TOP_LEVEL_KEYS.has(key)) throw fail(`unknown key "${key}" (known: ${[...TOP_LEVEL_KEYS].join(', ')})`)
  }
  const base = dirname(file)

  const port = optionalInteger(raw, 'port', 0, 65535, fail)
  const host = optionalString(raw, 'host', fail)
  const dataDirValue = optionalString(raw, 'dataDir', fail)
  const socketValue = optionalString(raw, 'socket', fail)
  const memory = optionalBoolean(raw, 'memory', fail)
  const fsync = optionalBoolean(raw, 'fsync', fail)

  let limits: Partial<Limits> | undefined
  if (raw.limits !== undefined) {
    if (!isPlainObject(raw.limits)) throw fail('"limits" must be an object')
    limits = raw.limits as Partial<Limits>
    try {
      normalizeBusOptions({ limits })
    } catch (err) {
      // normalizeBusOptions names the key (`limits.maxPayloadBytes must …`); the file is ours to add
      throw fail((err as Error).message)
    }
  }
  const maxTimeoutMs = limits?.maxTimeoutMs ?? DEFAULT_LIMITS.maxTimeoutMs

  const functions: FunctionConfig[] = []
  if (raw.functions !== undefined) {
    if (!Array.isArray(raw.functions)) throw fail('"functions" must be an array')
    const seen = new Set<string>()
    const lambdaNames = new Map<string, string>()
    raw.functions.forEach((entry: unknown, index: number) => {
      const fn = parseFunction(entry, `functions[${index}]`, base, maxTimeoutMs, fail)
      if (seen.has(fn.name)) throw fail(`functions[${index}]: ${fn.name} is listed twice`)
      seen.add(fn.name)
      if (fn.lambdaName !== undefined) {
        const other = lambdaNames.get(fn.lambdaName)
        if (other !== undefined) throw fail(`functions[${index}]: lambdaName ${fn.lambdaName} is ${other}'s already`)
        lambdaNames.set(fn.lambdaName, fn.name)
      }
      functions.push(fn)
    })
  }

  let policy: Policy | undefined
  if (raw.policy !== undefined) {
    try {
      policy = parsePolicy(raw.policy)
    } catch (err) {
      throw fail((err as Error).message)
    }
  }

  return Object.freeze({
    file,
    port,
    host,
    dataDir: dataDirValue === undefined ? undefined : resolve(base, dataDirValue),
    memory,
    fsync,
    limits,
    functions: Object.freeze(functions),
    log: parseLog(raw.log, fail),
    http: parseHttp(raw.http, fail),
    plugins: withRoutes(parsePlugins(raw.plugins, fail), raw.routes, fail),
    policy,
    identities: parseIdentities(raw.identities, base, fail),
    allowAnonymous: optionalBoolean(raw, 'allowAnonymous', fail),
    tls: parseTls(raw.tls, base, fail),
    socket: socketValue === undefined ? undefined : resolve(base, socketValue),
  })
}

/**
 * The top-level `routes` rules (the configuration's place for them, docs/design.md) start the routes plugin. They are validated here, as
 * `plugins.routes` is, so that a bad rule stops the gateway with the file's name and the rule's index.
 */
function withRoutes (plugins: Readonly<Record<string, unknown>> | undefined, routes: unknown, fail: (message: string) => FnbusError): Readonly<Record<string, unknown>> | undefined {
  const check = (run: () => unknown): void => {
    try {
      run()
    } catch (err) {
      throw fail((err as Error).message)
    }
  }
  if (plugins?.routes !== undefined) check(() => parseRoutesOptions(plugins.routes))
  if (routes === undefined) return plugins
  if (plugins?.routes !== undefined) throw fail('give the route rules as "routes" or as "plugins.routes.rules", not both')
  check(() => parseRouteRules(routes, 'routes'))
  return Object.freeze({ ...plugins, routes: { rules: routes } })
}

function parseHttp (value: unknown, fail: (message: string) => FnbusError): HttpConfig | undefined {
  if (value === undefined) return undefined
  if (!isPlainObject(value)) throw fail('"http" must be an object, such as { "port": 8080 }')
  for (const key of Object.keys(value)) {
    if (!HTTP_KEYS.has(key)) throw fail(`http: unknown key "${key}" (known: ${[...HTTP_KEYS].join(', ')})`)
  }
  const port = optionalInteger(value, 'port', 0, 65535, message => fail(`http.${message}`))
  if (port === undefined) throw fail('http.port is required (0 picks a free port)')
  const auth = value.auth
  if (auth !== undefined && (typeof auth !== 'string' || !HTTP_AUTH_MODES.includes(auth))) {
    throw fail(`http.auth must be ${HTTP_AUTH_MODES.map(mode => JSON.stringify(mode)).join(' or ')} (operators sign in as identities), got ${JSON.stringify(auth)}`)
  }
  let allowedHosts: readonly string[] | undefined
  try {
    allowedHosts = parseAllowedHosts(value.allowedHosts, 'http.allowedHosts')
  } catch (err) {
    throw fail((err as Error).message)
  }
  return Object.freeze({
    port, host: optionalString(value, 'host', message => fail(`http.${message}`)), auth: auth as HttpAuthMode | undefined,
    ...allowedHosts === undefined ? {} : { allowedHosts },
  })
}

function parsePlugins (value: unknown, fail: (message: string) => FnbusError): Readonly<Record<string, unknown>> | undefined {
  if (value === undefined) return undefined
  if (!isPlainObject(value)) throw fail('"plugins" must be an object of built-in plugin names to their configuration, such as { "metrics": {} }')
  for (const [name, block] of Object.entries(value)) {
    if (!BUILTIN_PLUGINS.includes(name)) throw fail(`plugins: unknown plugin "${name}" (built-ins: ${BUILTIN_PLUGINS.join(', ')})`)
    if (!isPlainObject(block)) throw fail(`plugins.${name} must be an object (its configuration; {} for the defaults)`)
  }
  return Object.freeze({ ...value })
}

function parseLog (value: unknown, fail: (message: string) => FnbusError): LogConfig | undefined {
  if (value === undefined) return undefined
  if (!isPlainObject(value)) throw fail('"log" must be an object')
  for (const key of Object.keys(value)) {
    if (!LOG_KEYS.has(key)) throw fail(`log: unknown key "${key}" (known: ${[...LOG_KEYS].join(', ')})`)
  }
  if (value.level !== undefined && !isLogLevel(value.level)) throw fail(`log.level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(value.level)}`)
  if (value.format !== undefined && !isLogFormat(value.format)) throw fail(`log.format must be one of ${LOG_FORMATS.join(', ')}, got ${JSON.stringify(value.format)}`)
  return Object.freeze({
    level: value.level as LogLevel | undefined,
    format: value.format as LogFormat | undefined,
    payloads: optionalBoolean(value, 'payloads', message => fail(`log.${message}`)),
  })
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

function parseIdentities (value: unknown, base: string, fail: (message: string) => FnbusError): IdentitySource | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'string') {
    if (value.length === 0) throw fail('identities must be the path of an identities file or an object of identities, got ""')
    return resolve(base, value)
  }
  try {
    return parseIdentityTable(value, '')
  } catch (err) {
    throw fail((err as Error).message)
  }
}

function parseTls (value: unknown, base: string, fail: (message: string) => FnbusError): TlsFiles | undefined {
  if (value === undefined) return undefined
  if (!isPlainObject(value)) throw fail('"tls" must be an object { "cert": FILE, "key": FILE, "ca"?: FILE }')
  for (const key of Object.keys(value)) {
    if (!TLS_KEYS.has(key)) throw fail(`tls: unknown key "${key}" (known: ${[...TLS_KEYS].join(', ')})`)
  }
  const failHere = (message: string): FnbusError => fail(`tls.${message}`)
  const cert = optionalString(value, 'cert', failHere)
  const key = optionalString(value, 'key', failHere)
  if (cert === undefined || key === undefined) throw fail('tls needs both "cert" and "key" (PEM files)')
  const ca = optionalString(value, 'ca', failHere)
  return Object.freeze({ cert: resolve(base, cert), key: resolve(base, key), ca: ca === undefined ? undefined : resolve(base, ca) })
}

function parseFunction (
  entry: unknown, where: string, base: string, maxTimeoutMs: number, fail: (message: string) => FnbusError
): FunctionConfig {
  if (!isPlainObject(entry)) throw fail(`${where} must be an object`)
  const failHere = (message: string): FnbusError => fail(`${where}.${message}`)
  for (const key of Object.keys(entry)) {
    if (!FUNCTION_KEYS.has(key)) throw fail(`${where}: unknown key "${key}" (known: ${[...FUNCTION_KEYS].join(', ')})`)
  }
  for (const key of ['service', 'function'] as const) {
    const value = entry[key]
    if (value === undefined) throw fail(`${where}: "${key}" is required`)
    if (!isValidName(value)) throw failHere(`${key} must match [a-zA-Z][\\w-]{0,127}, got ${JSON.stringify(value)}`)
  }
  const service = entry.service as string
  const functionName = entry.function as string
  const moduleValue = optionalString(entry, 'module', failHere)
  const lambdaName = optionalString(entry, 'lambdaName', failHere)
  if (lambdaName !== undefined && !LAMBDA_NAME.test(lambdaName)) throw failHere(`lambdaName must be letters, digits, - and _, starting with a letter (at most 64), got ${JSON.stringify(lambdaName)}`)
  const isolation = optionalString(entry, 'isolation', failHere)
  if (isolation !== undefined && isolation !== 'process' && isolation !== 'thread') throw failHere(`isolation must be "process" or "thread", got ${JSON.stringify(isolation)}`)
  const env = entry.env ?? {}
  if (!isPlainObject(env)) throw failHere('env must be an object of strings')
  for (const [name, value] of Object.entries(env)) {
    if (typeof value !== 'string') throw failHere(`env.${name} must be a string, got ${JSON.stringify(value)}`)
  }
  return Object.freeze({
    service,
    function: functionName,
    name: `${service}/${functionName}`,
    module: moduleValue === undefined ? undefined : resolve(base, moduleValue),
    instances: optionalInteger(entry, 'instances', 1, 1024, failHere) ?? DEFAULT_INSTANCES,
    concurrency: optionalInteger(entry, 'concurrency', 1, DEFAULT_LIMITS.maxConcurrency, failHere) ?? DEFAULT_FUNCTION_CONCURRENCY,
    env: Object.freeze({ ...env as Record<string, string> }),
    timeoutMs: optionalInteger(entry, 'timeoutMs', 1, maxTimeoutMs, failHere),
    lambdaName,
    memoryLimitMb: optionalInteger(entry, 'memoryLimitMb', 16, 1024 * 1024, failHere),
    isolation,
    async: parseAsync(entry.async, failHere),
  })
}

function parseAsync (value: unknown, fail: (message: string) => FnbusError): AsyncOptions | undefined {
  if (value === undefined) return undefined
  if (!isPlainObject(value)) throw fail('async must be an object')
  const failHere = (message: string): FnbusError => fail(`async.${message}`)
  for (const key of Object.keys(value)) {
    if (!ASYNC_KEYS.has(key)) throw fail(`async: unknown key "${key}" (known: ${[...ASYNC_KEYS].join(', ')})`)
  }
  const day = 24 * 3600
  return Object.freeze({
    maxRetries: optionalInteger(value, 'maxRetries', 0, 100, failHere),
    maxEventAgeSec: optionalInteger(value, 'maxEventAgeSec', 1, 365 * day, failHere),
    maxStored: optionalInteger(value, 'maxStored', 1, 1_000_000_000, failHere),
    retryDelayMs: optionalInteger(value, 'retryDelayMs', 0, 3600_000, failHere),
    idempotencyWindowSec: optionalInteger(value, 'idempotencyWindowSec', 1, 365 * day, failHere),
    onSuccess: optionalTopic(value, 'onSuccess', failHere),
    onFailure: optionalTopic(value, 'onFailure', failHere),
  })
}

function optionalTopic (object: Record<string, unknown>, key: string, fail: (message: string) => FnbusError): string | undefined {
  const topic = optionalString(object, key, fail)
  if (topic === undefined) return undefined
  try {
    return checkEventTopic(topic)
  } catch (err) {
    throw fail(`${key}: ${(err as Error).message}`)
  }
}

function optionalInteger (
  object: Record<string, unknown>, key: string, min: number, max: number, fail: (message: string) => FnbusError
): number | undefined {
  const value = object[key]
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw fail(`${key} must be an integer between ${min} and ${max}, got ${JSON.stringify(value)}`)
  }
  return value
}

function optionalString (object: Record<string, unknown>, key: string, fail: (message: string) => FnbusError): string | undefined {
  const value = object[key]
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value.length === 0) throw fail(`${key} must be a non-empty string, got ${JSON.stringify(value)}`)
  return value
}

function optionalBoolean (object: Record<string, unknown>, key: string, fail: (message: string) => FnbusError): boolean | undefined {
  const value = object[key]
  if (value === undefined) return undefined
  if (typeof value !== 'boolean') throw fail(`${key} must be true or false, got ${JSON.stringify(value)}`)
  return value
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}
