// The entry of a function's thread (thread-host.ts starts it as a Worker): loads the module, serves it through the
// thread's link to the gateway, answers the supervisor's heartbeats on the control port, drains when told to stop.
import { workerData } from 'node:worker_threads'
import { THREAD_DATA_KEY, type ThreadData } from '../client/thread-link.js'
import { FnbusError } from '../errors.js'
import { createLineLogger } from '../line-logger.js'
import { resolveLogSettings, RUNTIME_COMPONENT } from '../log-settings.js'
import type { RuntimeMessage, SupervisorMessage } from './runner.js'
import { THREAD_RUN_KEY, type ThreadRunData } from './thread-host.js'
import { HostedWorker, loadHandler } from './worker-host.js'

async function main (): Promise<void> {
  const data = workerData as Record<string, unknown>
  const { control } = data[THREAD_DATA_KEY] as ThreadData
  const run = data[THREAD_RUN_KEY] as ThreadRunData
  const name = `${run.service}/${run.function}`
  const instance = process.env.FNBUS_INSTANCE
  // the same lines as the gateway's pino logger, without pino in every thread (line-logger.ts)
  const logger = createLineLogger(process.stderr, resolveLogSettings({ env: process.env }), {
    component: RUNTIME_COMPONENT,
    fn: name,
    ...(instance === undefined ? {} : { instance: `${name}#${instance}` }),
  })
  const post = (message: RuntimeMessage): void => control.postMessage(message)

  let handler
  try {
    handler = await loadHandler(run.module)
  } catch (err) {
    // the supervisor shows why in the status, and stops the gateway's start if this is the function's first load
    post({ t: 'failed', reason: (err as Error).message })
    logger.error({ err }, (err as Error).message)
    process.exit(2)
  }
  const worker = new HostedWorker(handler, { service: run.service, functionName: run.function, concurrency: run.concurrency, logger })
  let stopping: Promise<void> | undefined
  control.on('message', (message: SupervisorMessage) => {
    if (message?.t === 'ping') post({ t: 'health', ...worker.health() })
    else if (message?.t === 'stop') {
      stopping ??= worker.drain().then(() => {
        logger.info('stopped')
        // the function's own timers must not keep a drained thread alive
        process.exit(0)
      })
    }
  })
  for (;;) {
    try {
      await worker.serve()
      break
    } catch (err) {
      // by its code, as run.ts does: the bundled runtime's error classes are its own copy
      const code = err instanceof Error ? (err as Partial<FnbusError>).code : undefined
      if (code !== 'FNBUS_TIMEOUT' && code !== 'FNBUS_DISCONNECTED') throw err
    }
  }
  logger.info(`serving ${name} in thread (concurrency ${run.concurrency})`)
  post({ t: 'ready' })
}

// a failure here is the thread's uncaught error: the host reports it as how the thread ended
await main()
