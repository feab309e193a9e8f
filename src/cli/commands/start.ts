import { resolve } from 'node:path'
import { loadConfig, type FunctionConfig } from '../../config.js'
import { createGateway } from '../../gateway.js'
import { createLogger, logEnvironment, resolveLogSettings } from '../../logging.js'
import { Supervisor, type SupervisedFunction } from '../../runtime/supervisor.js'
import { ExitCode, HELP_OPTION, integerOption, stringOption, UsageError, type CommandSpec, type Io, type ParsedArgs } from '../spec.js'
import { onSecondSignal, untilSignal } from '../signals.js'
import { LOG_OPTIONS, logFlags } from '../log-options.js'

export const startCommand: CommandSpec = {
  name: 'start',
  summary: 'Start the gateway and the functions its configuration supervises.',
  description: [
    'Reads fnbus.config.json from the working directory if there is one (--config names another);',
    'flags win over the file. Prints the broker address on stdout once it listens; logs go to stderr,',
    'each line of a supervised function prefixed with [Service/function#instance].',
    'SIGTERM or Ctrl-C stops the functions, then the gateway, and exits 0; a second one exits at once.',
  ].join('\n'),
  arguments: [],
  options: {
    config: { type: 'string', value: 'FILE', description: 'Configuration file. Default: ./fnbus.config.json if present.' },
    port: { type: 'string', value: 'N', description: 'MQTT port to listen on. Default 1883; 0 picks a free one.' },
    host: { type: 'string', value: 'HOST', description: 'Address to listen on. Default 127.0.0.1 (this machine only).' },
    data: { type: 'string', value: 'DIR', description: 'Data directory (durable state). Default ./data.' },
    memory: { type: 'boolean', description: 'Keep everything in memory: nothing survives a restart.' },
    'http-port': { type: 'string', value: 'N', description: 'Serve /healthz, /api/status and the plugins\' pages (metrics, dashboard) on this HTTP port, on loopback unless http.host says otherwise; 0 picks a free one. Default: http.port of the config, else none.' },
    ...LOG_OPTIONS,
    ...HELP_OPTION,
  },
  run: start,
}

async function start ({ values }: ParsedArgs, io: Io): Promise<number> {
  const port = integerOption(values, 'port', 0, 65535)
  const httpPort = integerOption(values, 'http-port', 0, 65535)
  const host = stringOption(values, 'host')
  const dataFlag = stringOption(values, 'data')
  const config = loadConfig(stringOption(values, 'config'), io.cwd)
  if (values.memory === true && dataFlag !== undefined) throw new UsageError('give --memory or --data, not both')

  const logSettings = resolveLogSettings({ flags: logFlags(values), config: config.log, env: io.env })
  const logger = createLogger(io.stderr, logSettings)
  const log = (message: string): void => { logger.info(message) }
  const memory = values.memory === true || (dataFlag === undefined && config.memory === true)
  const dataDir = dataFlag !== undefined ? resolve(io.cwd, dataFlag) : config.dataDir ?? resolve(io.cwd, 'data')
  if (config.file !== undefined) logger.info({ file: config.file }, `configuration from ${config.file}`)

  const gw = await createGateway({
    port: port ?? config.port ?? 1883,
    host: host ?? config.host ?? '127.0.0.1',
    dataDir,
    memory,
    fsync: config.fsync,
    limits: config.limits,
    logger,
    logPayloads: config.log?.payloads,
    http: httpPort !== undefined ? { port: httpPort, host: config.http?.host } : config.http,
    plugins: config.plugins,
  })
  try {
    for (const fn of config.functions) gw.bus.setFunctionOptions(fn.name, { timeoutMs: fn.timeoutMs, async: fn.async })
  } catch (err) {
    await gw.close()
    throw err
  }
  log(memory ? 'state kept in memory only (--memory)' : `data directory ${dataDir}`)
  // Listen for SIGINT/SIGTERM before saying we listen: a script that signals as soon as it reads the line below
  // must find the handlers in place, not Node's default (which kills the process without a graceful stop).
  const signalled = untilSignal()
  // stdout keeps the one plain line that people and scripts wait for; the log says it too, for log collectors
  io.stdout.write(`fnbus gateway listening on ${gw.url}\n`)
  logger.info({ url: gw.url }, `fnbus gateway listening on ${gw.url}`)
  if (gw.httpUrl !== undefined) {
    io.stdout.write(`fnbus http listening on ${gw.httpUrl}\n`)
    logger.info({ url: gw.httpUrl }, `fnbus http listening on ${gw.httpUrl}`)
  }

  const supervised = config.functions.filter(hasModule)
  const supervisor = new Supervisor(supervised, {
    url: gw.url,
    output: io.stderr,
    logger: logger.child({ component: 'supervisor' }),
    // the functions' own `fnbus run` log at the gateway's level and in its format
    env: logEnvironment(logSettings),
  })
  // its instances count for /healthz and show in `fnbus status`
  gw.attachInstances(supervisor)
  supervisor.start()

  const signal = await signalled
  log(`${signal ?? 'stop'} received: stopping${supervised.length > 0 ? ' the functions, then' : ''} the gateway`)
  const forget = onSecondSignal(() => {
    supervisor.kill()
    process.exit(ExitCode.Failure)
  })
  try {
    await supervisor.stop()
    await gw.close()
  } finally {
    forget()
  }
  log('stopped')
  return ExitCode.Ok
}

function hasModule (fn: FunctionConfig): fn is FunctionConfig & SupervisedFunction {
  return fn.module !== undefined
}
