/** Per-function options of stored (Async) invocations: `functions[].async` in the config. */
export interface AsyncFunctionOptions {
  /** Failed deliveries retried before the invocation is dead-lettered (AWS Lambda's default: 2). */
  readonly maxRetries: number
  /** Age after which an undelivered invocation is dead-lettered. */
  readonly maxEventAgeMs: number
  /** Pending invocations the function may have; one more is refused with FNBUS_QUEUE_FULL. */
  readonly maxStored: number
  /** First retry delay; each further retry doubles it (up to 5 minutes), with jitter. */
  readonly retryDelayMs: number
  /** How long an idempotency key is remembered. */
  readonly idempotencyWindowMs: number
  /** Topic that receives each successful result as a JSON event. */
  readonly onSuccess: string | undefined
  /** Topic that receives each dead-lettered invocation as a JSON event. */
  readonly onFailure: string | undefined
}

export const DEFAULT_ASYNC_OPTIONS: AsyncFunctionOptions = Object.freeze({
  maxRetries: 2,
  maxEventAgeMs: 6 * 3600_000,
  maxStored: 100_000,
  retryDelayMs: 1000,
  idempotencyWindowMs: 24 * 3600_000,
  onSuccess: undefined,
  onFailure: undefined,
})

/** The longest backoff between two attempts. */
export const MAX_RETRY_DELAY_MS = 5 * 60_000

/** Exponential backoff with jitter: between half and all of base·2^(attempt−1), capped at 5 minutes. */
export function retryDelay (base: number, attempt: number): number {
  const ceiling = Math.min(MAX_RETRY_DELAY_MS, base * 2 ** (attempt - 1))
  return Math.round(ceiling / 2 + Math.random() * ceiling / 2)
}
