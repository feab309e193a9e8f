// The configuration's JSON Schema: the one statement of every key `fnbus.config.json` and `createGateway` take, with
// their types and limits. It is not loaded at run time: `npm run build` compiles it with ajv into plain validation
// code (scripts/build-validation.js → dist/config/validators.js), so that requiring fnbus loads no ajv, and writes
// it to schema/fnbus.config.schema.json for editors. What a schema cannot say (one key against another, paths made
// absolute, policies and routes parsed by their own modules) is checked beside it (config.ts, options.ts).
//
// `x-expected` ends the sentence "KEY must …" of an error message where the generic one (from the type and the
// bounds) would say less; editors ignore it, as JSON Schema says unknown keywords are.
import { DEFAULT_ASYNC_OPTIONS } from '../dispatcher/async-options.js'
import { HTTP_AUTH_MODES } from '../http/identity-auth.js'
import { DEFAULT_FUNCTION_CONCURRENCY, DEFAULT_LIMITS, LIMIT_RANGES, MAX_TIMER_MS, type Limits } from '../limits.js'
import { LOG_FORMATS, LOG_LEVELS } from '../log-settings.js'
import { BUILTIN_PLUGINS } from '../plugins.js'
import { LAMBDA_NAME, NAME, PROTOTYPE_NAMES } from '../protocol/names.js'
import { DEFAULT_ISOLATION, ISOLATIONS } from '../runtime/runner.js'

type Schema = Readonly<Record<string, unknown>>

const DAY_SEC = 24 * 3600
/** Limits whose default follows another limit: the schema states no number for them. */
const DERIVED_DEFAULTS: ReadonlySet<keyof Limits> = new Set(['maxFrameBytes', 'invokeBurst', 'maxBufferedBytesPerClient', 'maxQueuedBytes', 'maxQueuedBytesPerClient'])

function integer (min: number, max: number = Number.MAX_SAFE_INTEGER, extra: Schema = {}): Schema {
  return { type: 'integer', minimum: min, maximum: max, ...extra }
}
const text = (description: string): Schema => ({ type: 'string', minLength: 1, description })
const flag = (description: string): Schema => ({ type: 'boolean', description })
const port = (description: string): Schema => integer(0, 65535, { description })
/** `^…$` patterns of the code's regular expressions, as JSON Schema writes them. */
const pattern = (regexp: RegExp): string => regexp.source

const LIMITS: Schema = {
  type: 'object',
  description: 'Bounds of the gateway, each an integer (docs/configuration.md#limits).',
  additionalProperties: false,
  properties: Object.fromEntries(Object.entries(LIMIT_RANGES).map(([key, [min, max]]) => [
    key,
    integer(min, max, DERIVED_DEFAULTS.has(key as keyof Limits) ? {} : { default: DEFAULT_LIMITS[key as keyof Limits] }),
  ])),
}

const ASYNC: Schema = {
  type: 'object',
  description: 'Options of the function\'s stored (Async) invocations.',
  additionalProperties: false,
  properties: {
    maxRetries: integer(0, 100, { default: DEFAULT_ASYNC_OPTIONS.maxRetries, description: 'Failed deliveries retried before the invocation is dead-lettered.' }),
    maxEventAgeSec: integer(1, 365 * DAY_SEC, { default: DEFAULT_ASYNC_OPTIONS.maxEventAgeMs / 1000, description: 'An invocation not delivered successfully by then is dead-lettered.' }),
    maxStored: integer(1, 1_000_000_000, { default: DEFAULT_ASYNC_OPTIONS.maxStored, description: 'Stored invocations the function may have.' }),
    retryDelayMs: integer(0, 3600_000, { default: DEFAULT_ASYNC_OPTIONS.retryDelayMs, description: 'First retry delay; it doubles per retry, up to 5 min, with jitter.' }),
    idempotencyWindowSec: integer(1, 365 * DAY_SEC, { default: DEFAULT_ASYNC_OPTIONS.idempotencyWindowMs / 1000, description: 'How long an idempotency key is remembered.' }),
    onSuccess: text('Topic that receives each result as a JSON event.'),
    onFailure: text('Topic that receives each dead-lettered invocation as a JSON event.'),
  },
}

const NAME_PART: Schema = { type: 'string', pattern: pattern(NAME), not: { enum: [...PROTOTYPE_NAMES] } }

/** What `setFunctionOptions` takes, and a `functions[]` entry besides its own keys. */
const FUNCTION_OPTIONS = {
  timeoutMs: integer(1, MAX_TIMER_MS, { description: 'Default and maximum timeout of calls to the function (at most limits.maxTimeoutMs). Default: limits.defaultTimeoutMs.' }),
  lambdaName: {
    type: 'string',
    pattern: pattern(LAMBDA_NAME),
    'x-expected': 'be letters, digits, - and _, starting with a letter (at most 64)',
    description: 'Its AWS Lambda name: Greengrass\' Lambda().invoke({ FunctionName }) with it calls this function; unique.',
  },
  async: ASYNC,
}

/**
 * One `functions[]` entry. A new key is added here, with its type, bounds, default and description, and to
 * `FunctionConfig` (config.ts), which receives every validated key as it is.
 */
const FUNCTION: Schema = {
  type: 'object',
  description: 'A function the gateway supervises (with a module) or gives options to.',
  required: ['service', 'function'],
  additionalProperties: false,
  properties: {
    service: { ...NAME_PART, description: 'Its service name.' },
    function: { ...NAME_PART, description: 'Its function name.' },
    module: text('Path of the function module (relative to this file); the gateway runs it.'),
    instances: integer(1, 1024, { default: 1, description: 'Instances to run (processes or threads).' }),
    concurrency: integer(1, Number.MAX_SAFE_INTEGER, { default: DEFAULT_FUNCTION_CONCURRENCY, description: 'Invocations each instance runs at once (at most limits.maxConcurrency).' }),
    env: { type: 'object', description: 'Environment variables for its processes.', additionalProperties: { type: 'string' } },
    timeoutMs: FUNCTION_OPTIONS.timeoutMs,
    memoryLimitMb: integer(16, 1024 * 1024, { description: 'A process: restarted when its resident memory exceeds it (MiB). A thread: its heap limit (docs/isolation.md).' }),
    isolation: {
      enum: [...ISOLATIONS],
      default: DEFAULT_ISOLATION,
      'x-expected': `be ${ISOLATIONS.map(kind => JSON.stringify(kind)).join(' or ')}`,
      description: 'How its instances run: "process", each its own supervised process; "thread", each a Worker thread in the gateway\'s process (docs/isolation.md).',
    },
    runtimeHost: {
      type: 'string',
      pattern: '^[A-Za-z0-9_-]{1,64}$',
      'x-expected': 'be letters, digits, - and _ (at most 64), such as "untrusted"',
      description: 'A thread function: the host process its threads run in, shared with the functions that name the same host, instead of the gateway\'s process (docs/isolation.md).',
    },
    async: FUNCTION_OPTIONS.async,
    lambdaName: FUNCTION_OPTIONS.lambdaName,
  },
}

const HTTP_PROPERTIES = {
  port: port('The HTTP port; 0 picks a free one.'),
  host: text('Listen address. Default 127.0.0.1.'),
  auth: {
    enum: [...HTTP_AUTH_MODES],
    'x-expected': `be ${HTTP_AUTH_MODES.map(mode => JSON.stringify(mode)).join(' or ')} (operators sign in as identities)`,
    description: '"basic": operators sign in with HTTP Basic as identities.',
  },
  allowedHosts: {
    type: 'array',
    items: { type: 'string' },
    'x-expected': 'be an array of host names, such as ["gateway.example.com", ".plant.example"]',
    description: 'Names requests may carry in Host besides addresses, localhost and the machine\'s name.',
  },
}

const http = (extra: Schema): Schema => ({
  type: 'object',
  description: 'The operator\'s HTTP port (docs/operations.md).',
  'x-expected': 'be an object, such as { "port": 8080 }',
  required: ['port'],
  additionalProperties: false,
  properties: { ...HTTP_PROPERTIES, ...extra },
})

const TOPIC_RULES = (direction: string): Schema => ({
  type: 'array',
  description: `${direction}: each rule renames the fixed part of "from" to "to" and keeps what the wildcards matched.`,
  'x-expected': 'be an array of rules ({ "from": "topic/#", "to": "other/topic/#", "qos": 1 })',
  items: {
    type: 'object',
    required: ['from', 'to'],
    additionalProperties: false,
    properties: {
      from: text('Topic filter the messages match.'),
      to: text('What the filter becomes on the other side (the same wildcards, in the same order).'),
      qos: { enum: [0, 1], default: 1, description: 'QoS on the other side; 1 outbound: stored, sent again until acknowledged.' },
    },
  },
})

/** One `bridges[]` entry: a link to a remote MQTT broker (docs/bridge.md). */
const BRIDGE: Schema = {
  type: 'object',
  description: 'A bridge to a remote MQTT broker, with store-and-forward (docs/bridge.md).',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: { ...NAME_PART, description: 'Names the bridge in status and metrics, its identity $bridge/NAME and its environment variables FNBUS_BRIDGE_NAME_*.' },
    url: text('mqtt://, mqtts://, ws:// or wss:// url of the remote broker (or FNBUS_BRIDGE_NAME_URL).'),
    clientId: text('Client id at the remote broker. Default fnbus-bridge-NAME (or FNBUS_BRIDGE_NAME_CLIENT_ID).'),
    username: text('User name at the remote broker (or FNBUS_BRIDGE_NAME_USERNAME).'),
    password: text('Password at the remote broker; better FNBUS_BRIDGE_NAME_PASSWORD.'),
    tls: {
      type: 'object',
      description: 'TLS to the remote broker: PEM files (relative to this file) or contents.',
      additionalProperties: false,
      properties: {
        ca: text('CA certificates to trust for the remote broker (default: the system\'s).'),
        cert: text('Client certificate (mutual TLS).'),
        key: text('Its private key.'),
        rejectUnauthorized: flag('Check the remote broker\'s certificate. Default true.'),
      },
    },
    out: TOPIC_RULES('Local topics sent to the remote broker'),
    in: TOPIC_RULES('Remote topics published locally'),
    queue: {
      type: 'object',
      description: 'Bounds of the outbound queue; past one the oldest messages are dropped, counted and logged.',
      additionalProperties: false,
      properties: {
        maxMessages: integer(1, 1_000_000_000, { default: 100_000 }),
        maxBytes: integer(1024, Number.MAX_SAFE_INTEGER, { default: 104_857_600 }),
        maxAgeMs: integer(1, 10 * 365 * DAY_SEC * 1000, { default: 604_800_000 }),
      },
    },
    keepaliveSec: integer(0, 65535, { default: 60, description: 'MQTT keep-alive with the remote broker.' }),
    reconnect: {
      type: 'object',
      description: 'Pauses between connection attempts: from minDelayMs, doubling, up to maxDelayMs, with jitter.',
      additionalProperties: false,
      properties: { minDelayMs: integer(10, MAX_TIMER_MS, { default: 500 }), maxDelayMs: integer(10, MAX_TIMER_MS, { default: 10_000 }) },
    },
  },
}

const TOKEN_PATTERN = '^[A-Za-z0-9_-]{1,64}$'

/** `cluster`: this gateway's membership of a cluster of gateways on NATS JetStream (docs/cluster.md). */
const CLUSTER: Schema = {
  type: 'object',
  description: 'Join a cluster of gateways on NATS (docs/cluster.md). Secrets are better given as FNBUS_CLUSTER_PASSWORD and the like.',
  additionalProperties: false,
  properties: {
    servers: { type: 'array', minItems: 1, maxItems: 64, items: { type: 'string', minLength: 1 }, description: 'NATS servers: nats://HOST:PORT or tls://HOST:PORT (or FNBUS_CLUSTER_SERVERS, comma-separated).' },
    name: { type: 'string', pattern: TOKEN_PATTERN, description: 'This gateway\'s name in the cluster, unique there: letters, digits, _ and -. Default: the host name (or FNBUS_CLUSTER_NAME).' },
    prefix: { type: 'string', pattern: TOKEN_PATTERN, description: 'First token of the cluster\'s subjects, so that several clusters can share NATS servers. Default fnbus.' },
    user: text('NATS user (or FNBUS_CLUSTER_USER).'),
    password: text('NATS password; better FNBUS_CLUSTER_PASSWORD.'),
    token: text('NATS token; better FNBUS_CLUSTER_TOKEN.'),
    nkey: text('NATS NKey seed (SU…); better FNBUS_CLUSTER_NKEY.'),
    creds: text('NATS credentials file (JWT and seed), relative to this file (or FNBUS_CLUSTER_CREDS).'),
    tls: {
      type: 'object',
      description: 'TLS to the NATS servers: PEM files (relative to this file) or contents.',
      additionalProperties: false,
      properties: { ca: text('CA certificates to trust for the servers.'), cert: text('Client certificate (mutual TLS).'), key: text('Its private key.') },
    },
    replicas: integer(1, 5, { description: 'Copies JetStream keeps of what the cluster stores. Default min(3, servers given).' }),
    heartbeatMs: integer(50, 60_000, { default: 1000, description: 'How often each gateway tells the others what it serves; one silent for three has left.' }),
  },
}

/** Keys the configuration file and `createGateway` share, with the same meaning and the same bounds. */
const SHARED = {
  port: port('MQTT port; 0 picks a free one. Default 1883.'),
  host: text('Listen address. Default 127.0.0.1 (loopback only).'),
  dataDir: text('Where durable state lives (relative to this file). Default ./data.'),
  memory: flag('Keep everything in memory: nothing survives a restart.'),
  fsync: flag('fsync every store write (survives a power cut). Default true.'),
  limits: { $ref: '#/definitions/limits' },
  allowAnonymous: flag('Accept clients without a user name. Default: while no identity exists.'),
  socket: text('Also listen on this Unix domain socket.'),
}

const bridges = (ref: string): Schema => ({ type: 'array', description: 'Bridges to remote MQTT brokers (docs/bridge.md).', items: { $ref: ref } })

/** The schema of `fnbus.config.json`, published as schema/fnbus.config.schema.json. */
export const CONFIG_SCHEMA: Schema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'fnbus.config.json',
  description: 'The configuration of `fnbus start`. Every key is optional. Reference: docs/configuration.md.',
  type: 'object',
  'x-expected': 'be a JSON object',
  additionalProperties: false,
  definitions: { limits: LIMITS, function: FUNCTION, bridge: BRIDGE, cluster: CLUSTER },
  properties: {
    $schema: { type: 'string', description: 'This schema, for editors; fnbus ignores it.' },
    port: SHARED.port,
    host: SHARED.host,
    dataDir: SHARED.dataDir,
    memory: SHARED.memory,
    fsync: SHARED.fsync,
    limits: SHARED.limits,
    functions: { type: 'array', description: 'Functions to supervise, or to give options to; each listed once.', items: { $ref: '#/definitions/function' } },
    log: {
      type: 'object',
      description: 'The gateway\'s log.',
      additionalProperties: false,
      properties: {
        level: { enum: [...LOG_LEVELS], default: 'info' },
        format: { enum: [...LOG_FORMATS], default: 'json' },
        payloads: flag('Put invocation payloads in debug lines. Default false.'),
      },
    },
    http: http({}),
    plugins: {
      type: 'object',
      description: 'Built-in plugins to start, each with its configuration ({} for the defaults).',
      'x-expected': 'be an object of built-in plugin names to their configuration, such as { "metrics": {} }',
      additionalProperties: false,
      properties: Object.fromEntries(BUILTIN_PLUGINS.map(name => [name, {
        type: 'object', 'x-expected': 'be an object (its configuration; {} for the defaults)',
      }])),
    },
    routes: { type: 'array', description: 'Rules that turn events into invocations (docs/routes.md).', 'x-expected': 'be an array of rules ({ "from": "topic/filter", "to": "Service/function" })' },
    policy: { type: 'array', description: 'Who may invoke, serve, manage, publish and subscribe what (docs/security.md).', 'x-expected': 'be an array of rules' },
    identities: {
      type: ['string', 'object'],
      minLength: 1,
      description: 'The path of an identities file, or the identities inline: { "NAME": { "hash": "$scrypt$…" } }.',
      'x-expected': 'be the path of an identities file or an object of identities',
    },
    allowAnonymous: SHARED.allowAnonymous,
    tls: {
      type: 'object',
      description: 'Listen with TLS: PEM files (relative to this file).',
      'x-expected': 'be an object { "cert": FILE, "key": FILE, "ca"?: FILE }',
      required: ['cert', 'key'],
      additionalProperties: false,
      properties: { cert: text('The certificate.'), key: text('Its private key.'), ca: text('The CA that signed cert.') },
    },
    socket: SHARED.socket,
    bridges: bridges('#/definitions/bridge'),
    cluster: { $ref: '#/definitions/cluster' },
  },
}

/**
 * `createGateway`'s options: the configuration's keys that mean the same there, and the rest of `GatewayOptions`.
 * Options that are objects of the host's (a logger, a store, plugin instances, a policy) or functions are only named
 * here, so that an unknown key is refused; the code that uses them checks them.
 */
export const GATEWAY_OPTIONS_SCHEMA: Schema = {
  type: 'object',
  'x-expected': 'be an object',
  additionalProperties: false,
  definitions: { functionOptions: { type: 'object', 'x-expected': 'be an object', additionalProperties: false, properties: FUNCTION_OPTIONS } },
  // the file's keys in the file's order: with several mistakes, both name the same one first
  properties: {
    port: SHARED.port,
    host: SHARED.host,
    dataDir: SHARED.dataDir,
    memory: SHARED.memory,
    fsync: SHARED.fsync,
    limits: { $ref: 'fnbus.config#/definitions/limits' },
    http: http({ authorize: {} }),
    plugins: {},
    policy: {},
    identities: {},
    allowAnonymous: SHARED.allowAnonymous,
    tls: { type: 'object', required: ['cert', 'key'], properties: { cert: {}, key: {} }, 'x-expected': 'be an object { cert, key } (PEM contents)' },
    socket: SHARED.socket,
    bridges: bridges('fnbus.config#/definitions/bridge'),
    cluster: { $ref: 'fnbus.config#/definitions/cluster' },
    shutdownGraceMs: integer(0, MAX_TIMER_MS),
    logPayloads: { type: 'boolean' },
    pluginConfig: { type: 'object' },
    logger: {},
    store: {},
    diskSpace: {},
    clientIdStore: {},
    clock: {},
  },
}

/** The validators the build compiles, by the name the generated module exports them under. */
export const VALIDATORS: Readonly<Record<string, string>> = Object.freeze({
  validateConfig: 'fnbus.config',
  validateGatewayOptions: 'gateway-options',
  validateFunctionOptions: 'gateway-options#/definitions/functionOptions',
})

/** The schemas behind VALIDATORS, by their id. */
export const SCHEMAS: Readonly<Record<string, Schema>> = Object.freeze({
  'fnbus.config': CONFIG_SCHEMA,
  'gateway-options': GATEWAY_OPTIONS_SCHEMA,
})
