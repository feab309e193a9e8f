import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { getHeapStatistics } from 'node:v8'
import { FCClient, type ClientServedFunction, type FCClientOptions } from '../client/fc-client.js'
import { FnbusError, invalidArgument } from '../errors.js'
import { logsAt, type Logger } from '../logger.js'
import { IdTable } from '../util/id-table.js'
import { errorMessage, runHandler, type Callback, type Handler, type InvocationContext } from './handler.js'

/**
 * Loads a function module, CommonJS or ESM, and returns its `handler` export. Failures are FNBUS_INVALID_ARGUMENT
 * errors whose message names the file and what is wrong with it.
 */
export async function loadHandler (modulePath: string): Promise<Handler> {
  const file = resolve(modulePath)
  if (!existsSync(file)) throw invalidArgument(`cannot load ${file}: no such file`)
  let exports: Record<string, unknown>
  try {
    // import() loads both kinds; a CommonJS module's `module.exports` arrives as `default`
    exports = await import(pathToFileURL(file).href) as Record<string, unknown>
  } catch (err) {
    throw new FnbusError('FNBUS_INVALID_ARGUMENT', `cannot load ${file}: ${describeLoadError(err)}`, { cause: err })
  }
  const commonJs = exports.default as Record<string, unknown> | undefined
  const handler = exports.handler ?? (commonJs !== null && typeof commonJs === 'object' ? commonJs.handler : undefined)
  if (typeof handler !== 'function') {
    const found = Object.keys(exports).filter(name => name !== 'default' || typeof commonJs !== 'object')
    const what = handler === undefined ? 'does not export a "handler" function' : `exports "handler" as a ${typeof handler}, not a function`
    throw invalidArgument(`${file} ${what} (its exports: ${found.length === 0 ? 'none' : found.join(', ')})`)
  }
  return handler as Handler
}

function describeLoadError (err: unknown): string {
  if (err instanceof SyntaxError) return `syntax error: ${err.message}`
  const code = (err as { code?: unknown }).code
  const message = errorMessage(err)
  return typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message
}

export interface HostOptions {
  readonly service: string
  readonly functionName: string
  readonly concurrency?: number
  readonly client?: FCClientOptions
  /** With debug on, one line when each invocation starts and one when it ends, under its requestId. */
  readonly logger?: Logger
}

/** What the supervisor asks a hosted worker about, over IPC, on every heartbeat. */
export interface WorkerHealth {
  readonly inFlight: number
  /** Invocations in a row whose handler did not finish by its deadline (reset by one that did). */
  readonly consecutiveOverruns: number
  readonly rssBytes: number
  /** Its V8 heap (its isolate's: a thread's own), used and the most it may grow to. */
  readonly heapUsedBytes?: number
  readonly heapLimitBytes?: number
  readonly connected: boolean
}

interface RunningInvocation {
  /** The invocation's deadline on the monotonic clock (performance.now()), taken from its context as it started. */
  readonly expiresAt: number
  overran: boolean
}

/**
 * One module served as a worker of one function. It keeps count of what the supervisor needs to tell a hung
 * instance from a busy one: invocations that overran their deadline.
 */
export class HostedWorker {
  readonly client: FCClient
  readonly name: string
  readonly #handler: Handler
  readonly #concurrency: number | undefined
  readonly #running = new IdTable<RunningInvocation>()
  #consecutiveOverruns = 0
  #served: ClientServedFunction | undefined
  #draining: Promise<void> | undefined
  /** The logger when it writes debug lines, else undefined. */
  readonly #trace: Logger | undefined

  constructor (handler: Handler, options: HostOptions) {
    this.name = `${options.service}/${options.functionName}`
    this.#handler = handler
    this.#concurrency = options.concurrency
    this.client = new FCClient(options.client)
    this.#trace = options.logger !== undefined && logsAt(options.logger, 'debug') ? options.logger : undefined
  }

  /** Registers with the gateway; resolves once calls are routed here. */
  async serve (): Promise<void> {
    this.#served = await this.client.serve(this.name, this.#tracked, { concurrency: this.#concurrency })
  }

  /**
   * Runs the user's handler through the same runner as the SDK, and answers the way the handler did: a callback
   * error stays Handled, a throw stays Unhandled.
   */
  readonly #tracked = (event: unknown, context: InvocationContext, callback: Callback): Promise<unknown> => {
    // the time left, counted on the monotonic clock: a wall clock set forward would make every invocation an overrun
    // (and the supervisor restart a healthy instance)
    const invocation: RunningInvocation = { expiresAt: performance.now() + context.getRemainingTimeInMillis(), overran: false }
    const runningId = this.#running.add(invocation)
    const trace = this.#trace
    const startedAt = trace === undefined ? 0 : performance.now()
    trace?.debug({ requestId: context.requestId, type: context.invocationType }, 'invocation started')
    return runHandler(this.#handler, event, context).then(outcome => {
      this.#running.delete(runningId)
      trace?.debug({
        requestId: context.requestId,
        outcome: outcome.functionError === undefined ? 'ok' : outcome.functionError.toLowerCase(),
        durationMs: Math.round((performance.now() - startedAt) * 1000) / 1000,
        overran: performance.now() > invocation.expiresAt,
      }, 'invocation ended')
      if (performance.now() > invocation.expiresAt) this.#countOverrun(invocation)
      else this.#consecutiveOverruns = 0
      if (outcome.functionError === 'Handled') {
        callback(outcome.value)
        return undefined
      }
      if (outcome.functionError === 'Unhandled') throw new Error(String(outcome.value))
      return outcome.value
    })
  }

  #countOverrun (invocation: RunningInvocation): void {
    if (invocation.overran) return
    invocation.overran = true
    this.#consecutiveOverruns++
  }

  health (): WorkerHealth {
    const now = performance.now()
    // a handler still running past its deadline counts now: one that never returns must count at all
    for (const invocation of this.#running.values()) if (now > invocation.expiresAt) this.#countOverrun(invocation)
    const heap = getHeapStatistics()
    return {
      inFlight: this.#running.size,
      consecutiveOverruns: this.#consecutiveOverruns,
      rssBytes: process.memoryUsage.rss(),
      heapUsedBytes: heap.used_heap_size,
      heapLimitBytes: heap.heap_size_limit,
      connected: this.client.connected,
    }
  }

  /**
   * Stops taking invocations and lets those in flight answer. The gateway fails a call at its deadline anyway, so
   * waiting past the last deadline (plus `marginMs`) would only hold the process up.
   */
  drain (marginMs = 1000): Promise<void> {
    this.#draining ??= this.#drain(marginMs)
    return this.#draining
  }

  async #drain (marginMs: number): Promise<void> {
    const now = performance.now()
    const latest = Math.max(now, ...this.#running.values().map(i => i.expiresAt))
    let timer: NodeJS.Timeout | undefined
    const bound = new Promise<void>(resolve => { timer = setTimeout(resolve, latest - now + marginMs) })
    try {
      await Promise.race([this.client.close(), bound])
    } finally {
      clearTimeout(timer)
    }
  }

  get served (): boolean {
    return this.#served !== undefined
  }
}
