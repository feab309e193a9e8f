import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { dirname, join, resolve, sep } from 'node:path'
import type { Logger } from '../../logger.js'
import { identitiesFileOf, loadConfig, type FnbusConfig, type FunctionConfig } from '../../config.js'
import { configError } from '../../options.js'
import { BUILTIN_PLUGINS, createGateway, type ClusterConfig, type Gateway, type GatewayOptions, type TlsOptions } from '../../gateway.js'
import { defaultSocketPath, isSocketFailure } from '../default-socket.js'
import { createLogger, logEnvironment, resolveLogSettings } from '../../logging.js'
import { Supervisor, type SupervisedFunction } from '../../runtime/supervisor.js'
import { moduleProblem } from '../../runtime/module-check.js'
import { ThreadHost } from '../../runtime/thread-host.js'
import { FnbusError } from '../../errors.js'
import { ExitCode, HELP_OPTION, integerOption, stringOption, UsageError, type CommandSpec, type Io, type ParsedArgs } from '../spec.js'
import { onSecondSignal, untilSignal } from '../signals.js'
import { LOG_OPTIONS, logFlags } from '../log-options.js'

export const startCommand: CommandSpec = {
  name: 'start',
  summary: 'Start the gateway and the functions its configuration supervises.',
  description: [
    'Reads fnbus.config.json from the working directory if there is one (--config names another);',
    'FNBUS_PORT, FNBUS_HOST, FNBUS_CONFIG, FNBUS_DATA_DIR, FNBUS_HTTP_PORT and FNBUS_CLUSTER_SERVERS stand for their flags: flags win over',
    'the environment, the environment over the file. Prints the broker address on stdout once it listens; logs go to stderr,',
    'each line of a supervised function prefixed with [Service/function#instance].',
    'SIGTERM or Ctrl-C stops the functions, then the gateway, and exits 0; a second one exits at once.',
    'Clients authenticate as the identities in fnbus.identities.json beside the configuration (fnbus identity',
    'add); with none, clients are anonymous and --host must be loopback, unless --allow-anonymous.',
  ].join('\n'),
  arguments: [],
  options: {
    config: { type: 'string', value: 'FILE', description: 'Configuration file. Default: ./fnbus.config.json if present.' },
    port: { type: 'string', value: 'N', description: 'MQTT port to listen on. Default 1883; 0 picks a free one.' },
    host: { type: 'string', value: 'HOST', description: 'Address to listen on. Default 127.0.0.1 (this machine only).' },
    data: { type: 'string', value: 'DIR', description: 'Data directory (durable state). Default ./data.' },
    watch: { type: 'boolean', description: 'For development: restart a supervised function when a file in its module\'s folder changes.' },
    plugin: { type: 'string', value: 'NAME[,NAME…]', description: 'Start these built-in plugins (metrics, dashboard, routes, websocket) with their default settings, beside those of the config\'s plugins.' },
    socket: { type: 'string', value: 'PATH', description: 'Also listen on this Unix socket (mqtt+unix://PATH); supervised functions connect through it. Default: socket of the config, else, when the config supervises functions, DATA/fnbus.sock (with --memory, fnbus-PID.sock in $XDG_RUNTIME_DIR or the temporary directory).' },
    memory: { type: 'boolean', description: 'Keep everything in memory: nothing survives a restart.' },
    'http-port': { type: 'string', value: 'N', description: 'Serve /healthz, /api/status and the plugins\' pages (metrics, dashboard) on this HTTP port, on loopback unless http.host says otherwise; 0 picks a free one. Default: http.port of the config, else none.' },
    ...LOG_OPTIONS,
    cluster: { type: 'string', value: 'URL[,URL…]', description: 'Join the cluster of gateways on these NATS servers (nats://HOST:PORT); see docs/cluster.md. Default: cluster.servers of the config, else none.' },
    'gateway-name': { type: 'string', value: 'NAME', description: 'This gateway\'s name in its cluster, unique there. Default: cluster.name of the config, else the host name.' },
    'allow-anonymous': { type: 'boolean', description: 'Accept clients without a username, even with identities or beyond loopback.' },
    ...HELP_OPTION,
  },
  run: start,
}

/**
 * Settings a service manager or a container sets in the environment, by the flag they stand for: a flag wins over
 * its variable, a variable over the configuration file.
 */
export const ENVIRONMENT_SETTINGS: Readonly<Record<string, string>> = Object.freeze({
  port: 'FNBUS_PORT',
  host: 'FNBUS_HOST',
  config: 'FNBUS_CONFIG',
  data: 'FNBUS_DATA_DIR',
  'http-port': 'FNBUS_HTTP_PORT',
  cluster: 'FNBUS_CLUSTER_SERVERS',
})

/** The flags, with the environment's settings where a flag was not given; a bad value names its variable. */
function withEnvironment (values: ParsedArgs['values'], env: Io['env']): ParsedArgs['values'] {
  const merged: Record<string, string | boolean | undefined> = { ...values }
  for (const [flag, variable] of Object.entries(ENVIRONMENT_SETTINGS)) {
    const value = env[variable]
    if (merged[flag] !== undefined || value === undefined || value === '') continue
    if ((flag === 'port' || flag === 'http-port') && !(/^\d+$/.test(value) && Number(value) <= 65535)) {
      throw new UsageError(`${variable} must be an integer between 0 and 65535, got ${JSON.stringify(value)}`)
    }
    merged[flag] = value
  }
  return merged as ParsedArgs['values']
}

/** The config's cluster block with what the flags (or their variables) say over it; undefined: no cluster. */
function clusterOf (config: FnbusConfig, servers: string | undefined, name: string | undefined): ClusterConfig | undefined {
  if (config.cluster === undefined && servers === undefined && name === undefined) return undefined
  return {
    ...config.cluster,
    ...servers === undefined ? {} : { servers: servers.split(',').map(server => server.trim()).filter(server => server !== '') },
    ...name === undefined ? {} : { name },
  }
}

async function start (args: ParsedArgs, io: Io): Promise<number> {
  const values = withEnvironment(args.values, io.env)
  if (args.values.memory === true && values.data !== undefined && args.values.data === undefined) delete (values as Record<string, unknown>).data
  const port = integerOption(values, 'port', 0, 65535)
  const httpPort = integerOption(values, 'http-port', 0, 65535)
  const host = stringOption(values, 'host')
  const dataFlag = stringOption(values, 'data')
  const socketFlag = stringOption(values, 'socket')
  const config = loadConfig(stringOption(values, 'config'), io.cwd)
  if (values.memory === true && dataFlag !== undefined) throw new UsageError('give --memory or --data, not both')

  const logSettings = resolveLogSettings({ flags: logFlags(values), config: config.log, env: io.env })
  const logger = createLogger(io.stderr, logSettings)
  const log = (message: string): void => { logger.info(message) }
  const memory = values.memory === true || (dataFlag === undefined && config.memory === true)
  const dataDir = dataFlag !== undefined ? resolve(io.cwd, dataFlag) : config.dataDir ?? resolve(io.cwd, 'data')
  if (config.file !== undefined) logger.info({ file: config.file }, `configuration from ${config.file}`)
  const identitiesFile = identitiesFileOf(config, io.cwd)
  const allowAnonymous = values['allow-anonymous'] === true ? true : config.allowAnonymous

  await checkModules(config)

  // the supervised functions' hops go through a Unix socket unless one cannot be made (then through TCP)
  const supervised = config.functions.filter(hasModule)
  const explicitSocket = socketFlag !== undefined ? resolve(io.cwd, socketFlag) : config.socket
  let defaultSocket: string | undefined
  if (explicitSocket === undefined && supervised.length > 0) {
    const { path, reason } = defaultSocketPath(memory ? undefined : dataDir, io.env)
    if (reason !== undefined) logger.warn({ reason }, `no Unix socket for the functions: ${reason}; they connect through TCP`)
    defaultSocket = path
  }
  const gatewayOptions: GatewayOptions = {
    port: port ?? config.port ?? 1883,
    host: host ?? config.host ?? '127.0.0.1',
    dataDir,
    memory,
    fsync: config.fsync,
    limits: config.limits,
    logger,
    logPayloads: config.log?.payloads,
    http: httpPort !== undefined ? { ...config.http, port: httpPort } : config.http,
    plugins: withPlugins(config.plugins, stringOption(values, 'plugin')),
    policy: config.policy,
    // the default file is read once it exists: "fnbus identity add" works on a running gateway
    identities: identitiesFile === undefined ? config.identities : { file: identitiesFile, optional: config.identities === undefined },
    allowAnonymous,
    tls: readTls(config),
    socket: explicitSocket ?? defaultSocket,
    bridges: config.bridges,
    cluster: clusterOf(config, stringOption(values, 'cluster'), stringOption(values, 'gateway-name')),
  }
  let gw: Gateway
  try {
    gw = await createGateway(gatewayOptions)
  } catch (err) {
    if (defaultSocket === undefined || !isSocketFailure(err, defaultSocket)) throw err
    logger.warn({ err }, `no Unix socket for the functions (${(err as Error).message}); they connect through TCP`)
    gw = await createGateway({ ...gatewayOptions, socket: undefined })
  }
  try {
    for (const fn of config.functions) gw.bus.setFunctionOptions(fn.name, { timeoutMs: fn.timeoutMs, async: fn.async, lambdaName: fn.lambdaName })
  } catch (err) {
    await gw.close()
    throw err
  }
  log(memory ? 'state kept in memory only (--memory)' : `data directory ${dataDir}`)
  const identities = gw.bus.authenticator.identities.length
  log(`${identities} identit${identities === 1 ? 'y' : 'ies'}${identitiesFile === undefined ? ' (inline)' : ` from ${identitiesFile}`}; ` +
    `anonymous clients ${gw.bus.authenticator.anonymousAllowed ? 'accepted' : 'refused'}`)
  // Listen for SIGINT/SIGTERM before saying we listen: a script that signals as soon as it reads the line below
  // must find the handlers in place, not Node's default (which kills the process without a graceful stop).
  const signalled = untilSignal()
  // stdout keeps the one plain line that people and scripts wait for; the log says it too, for log collectors
  io.stdout.write(`fnbus gateway listening on ${gw.url}\n`)
  logger.info({ url: gw.url }, `fnbus gateway listening on ${gw.url}`)
  if (gw.socketUrl !== undefined) {
    io.stdout.write(`fnbus gateway listening on ${gw.socketUrl}\n`)
    logger.info({ url: gw.socketUrl }, `fnbus gateway listening on ${gw.socketUrl}`)
  }
  if (gw.httpUrl !== undefined) {
    io.stdout.write(`fnbus http listening on ${gw.httpUrl}\n`)
    logger.info({ url: gw.httpUrl }, `fnbus http listening on ${gw.httpUrl}`)
  }

  // each instance connects as its function, with a secret of its own, to the gateway's local address: its Unix
  // socket when it has one (a quicker hop than TCP)
  const supervisor = new Supervisor(supervised, {
    url: gw.socketUrl ?? localUrl(gw.url, gw.host),
    output: io.stderr,
    logger: logger.child({ component: 'supervisor' }),
    credentials: identity => gw.issueCredentials(identity),
    // thread functions' connections enter the gateway as its listeners' sockets do
    threads: new ThreadHost({ connect: stream => gw.bus.handle(stream) }),
    // the functions' own `fnbus run` log at the gateway's level and in its format
    env: { ...logEnvironment(logSettings), ...(config.tls === undefined ? {} : { FNBUS_CA: config.tls.ca ?? config.tls.cert }) },
  })
  // its instances count for /healthz and show in `fnbus status`
  gw.attachInstances(supervisor)
  // `fnbus restart Service/function`
  gw.bus.provideRestart(name => supervisor.restart(name))
  // a module that throws as its first instance loads it is a mistake in the configuration, reported as one
  // (exit 2), not a crash to retry every 0.5 to 30 s
  const firstLoadFailed = new Promise<FnbusError>(resolve => {
    supervisor.once('firstLoadFailed', (label: string, reason: string) => {
      const index = config.functions.findIndex(fn => label.startsWith(fn.name + '#'))
      resolve(configError(`${config.file ?? 'configuration'}: functions[${index}] (${label.replace(/#\d+$/, '')}): its module did not load in its first instance: ${reason}`))
    })
  })
  supervisor.start()
  const unwatch = values.watch === true ? watchModules(supervisor, logger, memory ? undefined : dataDir) : undefined

  const signal = await Promise.race([signalled, firstLoadFailed])
  unwatch?.()
  if (signal instanceof FnbusError) {
    await supervisor.stop()
    await gw.close()
    throw signal
  }
  log(`${signal ?? 'stop'} received: stopping${supervised.length > 0 ? ' the functions, then' : ''} the gateway`)
  const forget = onSecondSignal(() => {
    supervisor.kill()
    process.exit(ExitCode.Failure)
  })
  try {
    // calls waiting for the functions learn that the gateway stops, not that their function went away
    gw.bus.beginShutdown()
    await supervisor.stop()
    await gw.close()
  } finally {
    forget()
  }
  log('stopped')
  return ExitCode.Ok
}

/**
 * Every supervised module exists and parses, checked before the gateway listens (parsed by `node --check` in a
 * process of its own: none of it runs here). A typo would otherwise start a gateway that restarts the function for
 * ever while its callers get FNBUS_FUNCTION_NOT_FOUND.
 */
async function checkModules (config: FnbusConfig): Promise<void> {
  // each file once, all at once: ten functions of one module are one `node --check`, not ten in a row
  const checks = new Map<string, Promise<string | undefined>>()
  for (const fn of config.functions) if (fn.module !== undefined && !checks.has(fn.module)) checks.set(fn.module, moduleProblem(fn.module))
  for (const [index, fn] of config.functions.entries()) {
    if (fn.module === undefined) continue
    const problem = await checks.get(fn.module)
    if (problem !== undefined) throw configError(`${config.file ?? 'configuration'}: functions[${index}] (${fn.name}): module ${fn.module} ${problem}`)
  }
}

/** Debounce of `--watch`: an editor's save is often several writes and a rename. */
const WATCH_SETTLE_MS = 250

/**
 * `--watch`: a change to any file in the folder of a supervised module (not under node_modules, .git or the data
 * directory, which the gateway itself writes) restarts the functions whose module lives there, once the writes
 * settle. Returns what stops the watching.
 */
function watchModules (supervisor: Supervisor, logger: Logger, dataDir: string | undefined): () => void {
  const byFolder = new Map<string, string[]>()
  for (const [name, module] of supervisor.functions()) byFolder.set(dirname(module), [...byFolder.get(dirname(module)) ?? [], name])
  const watchers: FSWatcher[] = []
  const timers = new Map<string, NodeJS.Timeout>()
  for (const [folder, names] of byFolder) {
    const watcher = watch(folder, { recursive: true }, (_event, file) => {
      if (file !== null && (file.split(sep).some(part => part === 'node_modules' || part === '.git') || (dataDir !== undefined && (join(folder, file) + sep).startsWith(dataDir + sep)))) return
      clearTimeout(timers.get(folder))
      timers.set(folder, setTimeout(() => {
        timers.delete(folder)
        for (const name of names) {
          logger.info({ fn: name, file: file === null ? folder : join(folder, file) }, `${file ?? folder} changed: restarting ${name}`)
          supervisor.restart(name)
        }
      }, WATCH_SETTLE_MS))
    })
    watcher.on('error', err => logger.warn({ err, folder }, `--watch: ${folder} can no longer be watched`))
    watchers.push(watcher)
  }
  logger.info({ folders: [...byFolder.keys()] }, `--watch: restarting functions when their files change (${[...byFolder.keys()].join(', ')})`)
  return () => {
    for (const watcher of watchers) watcher.close()
    for (const timer of timers.values()) clearTimeout(timer)
  }
}

/** The config's plugins, and those `--plugin` names with their defaults (a plugin the config sets up keeps its block). */
function withPlugins (configured: FnbusConfig['plugins'], flag: string | undefined): FnbusConfig['plugins'] {
  if (flag === undefined) return configured
  const plugins: Record<string, unknown> = { ...configured }
  for (const name of flag.split(',').map(part => part.trim()).filter(part => part !== '')) {
    if (!BUILTIN_PLUGINS.includes(name)) throw new UsageError(`--plugin ${JSON.stringify(name)}: not a built-in plugin (${BUILTIN_PLUGINS.join(', ')})`)
    plugins[name] ??= {}
  }
  return plugins as FnbusConfig['plugins']
}

/** The TLS listener's certificate and key, read from the files the configuration names. */
function readTls (config: FnbusConfig): TlsOptions | undefined {
  if (config.tls === undefined) return undefined
  const read = (key: 'cert' | 'key' | 'ca'): Buffer => {
    const file = config.tls?.[key] as string
    try {
      return readFileSync(file)
    } catch (err) {
      throw configError(`${config.file ?? 'configuration'}: tls.${key}: cannot read ${file}: ${(err as Error).message}`)
    }
  }
  // the CA is only handed to the functions, but a wrong path should stop the start, not every function
  if (config.tls.ca !== undefined) read('ca')
  return { cert: read('cert'), key: read('key') }
}

/** Where processes of this machine reach the gateway: loopback when it listens on every address. */
function localUrl (url: string, host: string): string {
  if (host === '0.0.0.0') return url.replace('//0.0.0.0:', '//127.0.0.1:')
  if (host === '::') return url.replace('//[::]:', '//[::1]:')
  return url
}

function hasModule (fn: FunctionConfig): fn is FunctionConfig & SupervisedFunction {
  return fn.module !== undefined
}
