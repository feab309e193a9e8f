import { resolve } from 'node:path'
import { DEFAULT_FUNCTION_CONCURRENCY } from '../../limits.js'
import { FnbusError } from '../../errors.js'
import { isValidName } from '../../protocol/names.js'
import type { RuntimeMessage, SupervisorMessage } from '../../runtime/supervisor.js'
import { HostedWorker, loadHandler } from '../../runtime/worker-host.js'
import { ExitCode, HELP_OPTION, integerOption, stringOption, CONNECTION_OPTIONS, UsageError, type CommandSpec, type Io, type ParsedArgs } from '../spec.js'
import { onSecondSignal, untilSignal } from '../signals.js'
import { LOG_OPTIONS, logFlags } from '../log-options.js'
import { resolveLogSettings, RUNTIME_COMPONENT } from '../../log-settings.js'
import { createLineLogger } from '../../line-logger.js'
import { readCa } from '../connect.js'

export const runCommand: CommandSpec = {
  name: 'run',
  summary: 'Host a function module as a worker of SERVICE/FUNCTION.',
  description: [
    'MODULE is CommonJS or ESM and exports handler(event, context, callback) or async handler(event, context).',
    'FNBUS_URL is set to the gateway address, so new FCClient() in the function connects there.',
    'SIGTERM or Ctrl-C drains: no new invocations, those in flight answer, then exit 0.',
    'Waits for the gateway if it is not up yet, and reconnects by itself.',
  ].join('\n'),
  arguments: [{ name: 'MODULE', description: 'Path of the function module, e.g. ./helloworld.js.', required: true }],
  options: {
    service: { type: 'string', value: 'S', description: 'Service name (required), e.g. EdgeFC.' },
    function: { type: 'string', value: 'F', description: 'Function name (required), e.g. helloworld.' },
    concurrency: { type: 'string', value: 'N', description: 'Invocations run at once. Default 8.' },
    ...CONNECTION_OPTIONS,
    ...LOG_OPTIONS,
    ...HELP_OPTION,
  },
  run,
}

async function run ({ values, positionals }: ParsedArgs, io: Io): Promise<number> {
  const modulePath = resolve(io.cwd, positionals[0] as string)
  const service = requiredName(values, 'service')
  const functionName = requiredName(values, 'function')
  const concurrency = integerOption(values, 'concurrency')
  const url = stringOption(values, 'url')
  const instance = io.env.FNBUS_INSTANCE
  // not pino (start's logger): a function's process writes few lines, and need not load it for them
  const logger = createLineLogger(io.stderr, resolveLogSettings({ flags: logFlags(values), env: io.env }), {
    component: RUNTIME_COMPONENT,
    fn: `${service}/${functionName}`,
    // the supervisor's label for this process, as its own entries spell it
    ...(instance === undefined ? {} : { instance: `${service}/${functionName}#${instance}` }),
  })
  const log = (message: string): void => { logger.info(message) }
  const caFile = stringOption(values, 'ca')

  // the function's own clients (`new FCClient()` in the module) find the gateway here
  if (url !== undefined) process.env.FNBUS_URL = url
  if (caFile !== undefined) {
    // checked here, once, rather than by every client of the function
    readCa(resolve(io.cwd, caFile))
    process.env.FNBUS_CA = resolve(io.cwd, caFile)
  }
  let handler
  try {
    handler = await loadHandler(modulePath)
  } catch (err) {
    // the supervisor shows why in the status, and stops the gateway's start if this is the function's first load
    if (process.send !== undefined && process.connected) {
      await new Promise<void>(resolve => process.send?.({ t: 'failed', reason: (err as Error).message } satisfies RuntimeMessage, () => resolve()))
    }
    throw err
  }

  let worker: HostedWorker
  try {
    worker = new HostedWorker(handler, { service, functionName, concurrency, client: { url, username: stringOption(values, 'username') }, logger })
  } catch (err) {
    throw new UsageError(`--url ${JSON.stringify(url)}: ${(err as Error).message}`)
  }
  reportConnection(worker, log)
  const supervisor = listenToSupervisor(worker)
  const stop = stopRequested(supervisor.gone)

  const served = serveUntilReady(worker, log)
  served.catch(() => {}) // awaited below unless a stop came first, which makes it moot
  if (await Promise.race([served.then(() => false), stop.then(() => true)]) === false) {
    log(`serving ${worker.name} at ${worker.client.url} (concurrency ${concurrency ?? DEFAULT_FUNCTION_CONCURRENCY}, pid ${process.pid})`)
    supervisor.ready()
    await stop
  }
  log(`draining ${worker.name}`)
  const forget = onSecondSignal(() => process.exit(ExitCode.Failure))
  try {
    await worker.drain()
  } finally {
    forget()
  }
  log('stopped')
  return ExitCode.Ok
}

/** SIGTERM, Ctrl-C, or the supervisor that started this worker going away. */
async function stopRequested (supervisorGone: Promise<void>): Promise<void> {
  await untilSignal(supervisorGone)
}

function requiredName (values: ParsedArgs['values'], name: 'service' | 'function'): string {
  const value = stringOption(values, name)
  if (value === undefined) throw new UsageError(`--${name} is required`)
  if (!isValidName(value)) throw new UsageError(`--${name} must match [a-zA-Z][\\w-]{0,127}, got ${JSON.stringify(value)}`)
  return value
}

/**
 * Registers the function. A gateway that is not there yet is waited for, so that workers and gateway can start in
 * any order; anything else (a refused registration, a protocol mismatch) is final.
 */
async function serveUntilReady (worker: HostedWorker, log: (message: string) => void): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await worker.serve()
      return
    } catch (err) {
      // by its code: in the bundled dist/run.js, an MQTT.js client's errors come from dist/errors.js, a copy of the
      // error classes other than the bundle's own
      const code = err instanceof Error ? (err as Partial<FnbusError>).code : undefined
      if (code !== 'FNBUS_TIMEOUT' && code !== 'FNBUS_DISCONNECTED') throw err
      if (attempt === 1) log(`still waiting for the gateway at ${worker.client.url} (${(err as Error).message})`)
    }
  }
}

function reportConnection (worker: HostedWorker, log: (message: string) => void): void {
  let warned = false
  worker.client.on('warning', (err: Error) => {
    // MQTT.js retries every second: say it once per outage, not every time
    if (warned) return
    warned = true
    log(`cannot reach the gateway at ${worker.client.url} (${err.message}); retrying`)
  })
  worker.client.on('connect', () => {
    if (warned) log(`connected to ${worker.client.url}`)
    warned = false
  })
  worker.client.on('disconnect', () => log(`lost the connection to ${worker.client.url}; reconnecting`))
}

/**
 * When started by `fnbus start`: answer its heartbeats over the IPC channel, tell it when ready, and stop when it
 * is gone (a worker whose gateway was killed must not linger).
 */
function listenToSupervisor (worker: HostedWorker): { ready: () => void, gone: Promise<void> } {
  const send = process.send?.bind(process)
  if (send === undefined) return { ready: () => {}, gone: new Promise<void>(() => {}) }
  // a supervisor that died while the module loaded (import() yields to the event loop) disconnected already: its
  // 'disconnect' was emitted before this listener, and waiting for it would leave an orphan serving forever
  const gone = process.connected ? new Promise<void>(resolve => process.once('disconnect', resolve)) : Promise.resolve()
  const post = (message: RuntimeMessage): void => {
    if (process.connected) send(message)
  }
  process.on('message', (message: SupervisorMessage) => {
    if (message?.t === 'ping') post({ t: 'health', ...worker.health() })
  })
  // the channel must not keep a drained worker alive
  process.channel?.unref()
  return { ready: () => post({ t: 'ready' }), gone }
}
