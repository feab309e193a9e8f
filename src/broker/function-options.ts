import { invalidArgument } from '../errors.js'
import type { AsyncFunctionOptions } from '../dispatcher/async-engine.js'
import { checkEventTopic, parseFunctionName } from '../protocol/index.js'
import { LAMBDA_SERVICE } from '../protocol/names.js'
import { checkFunctionOptions } from '../config/check.js'
import type { BusContext } from './context.js'

export interface FunctionOptions {
  /** ms; calls to the function default to it and may not ask for more. `undefined`: the gateway's limits apply. */
  readonly timeoutMs?: number
  /** Options of its stored (Async) invocations. */
  readonly async?: AsyncOptions
  /**
   * Its AWS Lambda name: Greengrass' `new Lambda().invoke({ FunctionName })` with this name (or an ARN ending in it)
   * calls this function. Letters, digits, `-` and `_`, starting with a letter.
   */
  readonly lambdaName?: string
}

/** `functions[].async` of the config: durations in seconds, as the config writes them. */
export interface AsyncOptions {
  readonly maxRetries?: number
  readonly maxEventAgeSec?: number
  readonly maxStored?: number
  /** First retry delay in ms (doubling per retry, with jitter). Default 1000. */
  readonly retryDelayMs?: number
  readonly idempotencyWindowSec?: number
  readonly onSuccess?: string
  readonly onFailure?: string
}

/** Sets options of one function (`Service/function`), whoever serves it; used for `functions[]` of the config. */
export function configureFunction (ctx: BusContext, name: string, options: FunctionOptions): void {
  const fn = parseFunctionName(name)
  // types and bounds are those of `functions[]` in the configuration schema (config/schema.ts)
  checkFunctionOptions(options, fn.name)
  const { timeoutMs } = options
  const { maxTimeoutMs } = ctx.options.limits
  ctx.async.declare(fn.name)
  if (timeoutMs !== undefined && timeoutMs > maxTimeoutMs) {
    throw invalidArgument(`timeoutMs of ${fn.name} must be an integer between 1 and ${maxTimeoutMs} (limits.maxTimeoutMs), got ${JSON.stringify(timeoutMs)}`)
  }
  if (options.async !== undefined) ctx.async.configure(fn.name, asyncOptions(fn.name, options.async))
  if (options.lambdaName !== undefined) ctx.alias(parseFunctionName(`${LAMBDA_SERVICE}/${options.lambdaName}`), fn)
  ctx.dispatcher.setFunctionTimeout(fn.name, timeoutMs)
}

function asyncOptions (fn: string, given: AsyncOptions): Partial<AsyncFunctionOptions> {
  const topic = (value: string | undefined, name: string): string | undefined => {
    if (value === undefined) return undefined
    try {
      return checkEventTopic(value)
    } catch (err) {
      throw invalidArgument(`async.${name} of ${fn}: ${(err as Error).message}`)
    }
  }
  const ms = (seconds: number | undefined): number | undefined => seconds === undefined ? undefined : seconds * 1000
  const options: Partial<AsyncFunctionOptions> = {
    maxRetries: given.maxRetries,
    maxEventAgeMs: ms(given.maxEventAgeSec),
    maxStored: given.maxStored,
    retryDelayMs: given.retryDelayMs,
    idempotencyWindowMs: ms(given.idempotencyWindowSec),
    onSuccess: topic(given.onSuccess, 'onSuccess'),
    onFailure: topic(given.onFailure, 'onFailure'),
  }
  // an option not given keeps its current value
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined))
}
