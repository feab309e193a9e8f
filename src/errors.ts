/**
 * Every error fnbus raises carries a stable `code`. Messages may change between releases; codes may not.
 * The error table of docs/errors.md is held against `ErrorCodes` by a test.
 */
export const ErrorCodes = {
  FNBUS_INVALID_ARGUMENT: 'An argument, option or name is malformed (the message names it).',
  FNBUS_FUNCTION_NOT_FOUND: 'No live worker serves the function (Sync), and none appeared within `waitForWorker`.',
  FNBUS_TIMEOUT: 'The call did not complete before its deadline.',
  FNBUS_WORKER_LOST: 'The worker running the call disconnected or died before answering.',
  FNBUS_QUEUE_FULL: "The function's queue of waiting calls is at its bound.",
  FNBUS_NOT_AUTHORIZED: 'The caller may not perform this action.',
  FNBUS_PAYLOAD_TOO_LARGE: "The payload exceeds the gateway's `limits.maxPayloadBytes`.",
  FNBUS_DISCONNECTED: 'The connection to the gateway dropped while the call was in flight; it may or may not have run.',
  FNBUS_FUNCTION_ERROR: 'The function failed (promise API only); `err.handled` tells a handled error from a crash.',
  FNBUS_RATE_LIMITED: 'The caller exceeded its invocation rate (`limits.invokeRatePerSec`) or its calls in flight (`limits.maxInFlightPerClient`).',
  FNBUS_BAD_MESSAGE: 'The gateway could not decode a bus message (not msgpack, missing or mistyped fields).',
  FNBUS_CANCELLED: 'The invocation was cancelled.',
  FNBUS_INVOCATION_NOT_FOUND: 'No waiting stored invocation has that id (it completed, was cancelled or dead-lettered, or never existed).',
  FNBUS_SHUTTING_DOWN: 'The gateway is shutting down and takes no new calls.',
  FNBUS_STORE_FAILURE: 'The durable store could not write; the call was not accepted.',
  FNBUS_PROTOCOL_MISMATCH: 'Client and gateway do not speak the same bus protocol version.',
  FNBUS_CLIENT_CLOSED: 'The client was closed with `close()`.',
  FNBUS_DATA_DIR_LOCKED: 'Another gateway process holds the data directory.',
  FNBUS_ADDRESS_IN_USE: "The gateway's port, or its Unix socket, is taken by another process.",
  FNBUS_CONFIG_INVALID: 'The configuration file or options are invalid (the message names the key).',
} as const

export type ErrorCode = keyof typeof ErrorCodes

/** Codes whose calls may be retried safely: the function did not run, or the caller can tell. */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'FNBUS_FUNCTION_NOT_FOUND',
  'FNBUS_QUEUE_FULL',
  'FNBUS_RATE_LIMITED',
  'FNBUS_SHUTTING_DOWN',
  'FNBUS_STORE_FAILURE',
])

export class FnbusError extends Error {
  readonly code: ErrorCode
  /** True when the call certainly did not run and may be sent again as it is. */
  readonly retryable: boolean

  constructor (code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ErrorCodes[code], options)
    this.name = 'FnbusError'
    this.code = code
    this.retryable = RETRYABLE.has(code)
  }
}

/** A function that failed, as the promise API reports it. `payload` is what the function sent back (its message). */
export class FunctionError extends FnbusError {
  /** `true`: the handler called back with an error; `false`: it threw, or its worker died. */
  readonly handled: boolean
  readonly payload: unknown

  constructor (handled: boolean, payload: unknown) {
    super('FNBUS_FUNCTION_ERROR', typeof payload === 'string' ? payload : handled ? 'Handled function error' : 'Unhandled function error')
    this.name = 'FunctionError'
    this.handled = handled
    this.payload = payload
  }
}

export function isErrorCode (value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ErrorCodes, value)
}

/** Rebuilds an error sent over the wire as plain data; an unknown code degrades to FNBUS_BAD_MESSAGE. */
export function errorFromWire (code: unknown, message: unknown): FnbusError {
  const text = typeof message === 'string' ? message : undefined
  if (isErrorCode(code)) return new FnbusError(code, text)
  return new FnbusError('FNBUS_BAD_MESSAGE', `unknown error code ${String(code)}: ${text ?? ''}`)
}

export function invalidArgument (message: string): FnbusError {
  return new FnbusError('FNBUS_INVALID_ARGUMENT', message)
}

/** An invalid configuration or option: the message names the key (and the file, where there is one). */
export function configError (message: string): FnbusError {
  return new FnbusError('FNBUS_CONFIG_INVALID', message)
}
