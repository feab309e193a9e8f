import { invalidArgument } from '../errors.js'
import type { AsyncFunctionOptions } from '../dispatcher/async-engine.js'
import { checkEventTopic, parseFunctionName } from '../protocol/index.js'
import { LAMBDA_NAME, LAMBDA_SERVICE } from '../protocol/names.js'
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
  const { timeoutMs } = options
  const { maxTimeoutMs } = ctx.options.limits
  ctx.async.declare(fn.name)
  if (timeoutMs !== undefined && (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > maxTimeoutMs)) {
    throw invalidArgument(`timeoutMs of ${fn.name} must be an integer between 1 and ${maxTimeoutMs} (limits.maxTimeoutMs), got ${JSON.stringify(timeoutMs)}`)
  }
  if (options.async !== undefined) ctx.async.configure(fn.name, asyncOptions(fn.name, options.async))
  if (options.lambdaName !== undefined) {
    if (typeof options.lambdaName !== 'string' || !LAMBDA_NAME.test(options.lambdaName)) {
      throw invalidArgument(`lambdaName of ${fn.name} must be letters, digits, - and _, starting with a letter (at most 64), got ${JSON.stringify(options.lambdaName)}`)
    }
    ctx.alias(parseFunctionName(`${LAMBDA_SERVICE}/${options.lambdaName}`), fn)
  }
  ctx.dispatcher.setFunctionTimeout(fn.name, timeoutMs)
}

function asyncOptions (fn: string, given: AsyncOptions): Partial<AsyncFunctionOptions> {
  const check = (value: number | undefined, name: string, min: number): number | undefined => {
    if (value === undefined) return undefined
    if (!Number.isSafeInteger(value) || value < min) throw invalidArgument(`async.${name} of ${fn} must be an integer ≥ ${min}, got ${JSON.stringify(value)}`)
    return value
  }
  const topic = (value: string | undefined, name: string): string | undefined => {
    if (value === undefined) return undefined
    try {
      return checkEventTopic(value)
    } catch (err) {
      throw invalidArgument(`async.${name} of ${fn}: ${(err as Error).message}`)
    }
  }
  const seconds = (value: number | undefined, name: string): number | undefined => {
    const checked = check(value, name, 1)
    return checked === undefined ? undefined : checked * 1000
  }
  const options: Partial<AsyncFunctionOptions> = {
    maxRetries: check(given.maxRetries, 'maxRetries', 0),
    maxEventAgeMs: seconds(given.maxEventAgeSec, 'maxEventAgeSec'),
    maxStored: check(given.maxStored, 'maxStored', 1),
    retryDelayMs: check(given.retryDelayMs, 'retryDelayMs', 0),
    idempotencyWindowMs: seconds(given.idempotencyWindowSec, 'idempotencyWindowSec'),
    onSuccess: topic(given.onSuccess, 'onSuccess'),
    onFailure: topic(given.onFailure, 'onFailure'),
  }
  // an option not given keeps its current value
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined))
}
