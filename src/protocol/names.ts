import { invalidArgument } from '../errors.js'

/** Link IoT Edge's own rule for service and function names. */
export const NAME = /^[a-zA-Z][\w-]{0,127}$/
const FUNCTION_ID = /^service:([^:]+):function:([^:]+)$/

export interface FunctionAddress {
  readonly serviceName: string
  readonly functionName: string
  /** `Service/function`, the form used on the wire and in logs. */
  readonly name: string
}

/**
 * Names that reach objects' prototypes when used as keys. fnbus keeps names in Maps, but a function's name also
 * becomes a key in other people's code (handlers, plugins, JSON): refusing them here keeps that safe too.
 */
export const PROTOTYPE_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

export function isPrototypeName (value: string): boolean {
  return PROTOTYPE_NAMES.has(value)
}

export function isValidName (value: unknown): value is string {
  return typeof value === 'string' && NAME.test(value) && !PROTOTYPE_NAMES.has(value)
}

export function checkName (value: unknown, field: string): string {
  if (!isValidName(value)) {
    throw invalidArgument(`${field} must match [a-zA-Z][\\w-]{0,127} and not be constructor or prototype, got ${describeValue(value)}`)
  }
  return value
}

/**
 * An idempotency key: 1 to 256 printable ASCII characters (`!` to `~`, no space). The gateway keeps every key it is
 * given for the function's window, so its length is bounded like a name's; the SDK's own keys
 * (`auto.{16 letters and digits}.{12 digits}`) are 34 characters.
 */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 256
// the length is checked apart: a bounded quantifier ({1,256}) made the test half again as slow
const IDEMPOTENCY_KEY = /^[\x21-\x7e]+$/

export function isIdempotencyKey (value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_IDEMPOTENCY_KEY_LENGTH && IDEMPOTENCY_KEY.test(value)
}

export function checkIdempotencyKey (value: unknown, field = 'idempotencyKey'): string | undefined {
  if (value === undefined) return undefined
  if (!isIdempotencyKey(value)) {
    throw invalidArgument(`${field} must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters (no space), got ${describeValue(value)}`)
  }
  if (PROTOTYPE_NAMES.has(value)) throw invalidArgument(`${field} ${value} is reserved`)
  return value
}

export function functionAddress (serviceName: unknown, functionName: unknown): FunctionAddress {
  const service = checkName(serviceName, 'serviceName')
  const fn = checkName(functionName, 'functionName')
  return { serviceName: service, functionName: fn, name: `${service}/${fn}` }
}

/**
 * Addresses already parsed: every call names its function, and the same few names recur. Bounded, so that a peer
 * naming ever new functions cannot grow it; a name past the bound is simply parsed each time.
 */
const parsedNames = new Map<string, FunctionAddress>()
const PARSED_NAMES_MAX = 10_000

/** Parses `Service/function`. */
export function parseFunctionName (value: unknown, field = 'function'): FunctionAddress {
  if (typeof value !== 'string') throw invalidArgument(`${field} must be a string "Service/function", got ${describeValue(value)}`)
  const known = parsedNames.get(value)
  if (known !== undefined) return known
  const slash = value.indexOf('/')
  if (slash < 0) throw invalidArgument(`${field} must be "Service/function", got ${describeValue(value)}`)
  const service = value.slice(0, slash)
  const fn = value.slice(slash + 1)
  if (!isValidName(service)) throw invalidArgument(`${field}: service name must match [a-zA-Z][\\w-]{0,127} and not be constructor or prototype, got ${describeValue(service)}`)
  if (!isValidName(fn)) throw invalidArgument(`${field}: function name must match [a-zA-Z][\\w-]{0,127} and not be constructor or prototype, got ${describeValue(fn)}`)
  const address: FunctionAddress = Object.freeze({ serviceName: service, functionName: fn, name: value })
  if (parsedNames.size < PARSED_NAMES_MAX) parsedNames.set(value, address)
  return address
}

/** Parses Link IoT Edge's `service:EdgeFC:function:helloworld`. */
export function parseFunctionId (value: unknown): FunctionAddress {
  const match = typeof value === 'string' ? FUNCTION_ID.exec(value) : null
  if (match === null) throw invalidArgument(`functionId must be "service:SERVICE:function:FUNCTION", got ${describeValue(value)}`)
  return functionAddress(match[1], match[2])
}

/**
 * A value from the wire, for an error message: a string quoted and cut at 140 characters, a number as it is, else
 * only its type — never JSON.stringify of anything else (a BigInt throws, a large array makes a large message).
 */
export function describeValue (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 140 ? value.slice(0, 140) + '…' : value)
  if (typeof value === 'number') return String(value)
  return value === null ? 'null' : typeof value
}

/**
 * Greengrass' functions are called by their AWS Lambda name: `Lambda/NAME` on the bus, which a function of the
 * configuration takes with `functions[].lambdaName`. A Lambda name (letters, digits, `-`, `_`) that starts with a
 * letter, as fnbus names do.
 */
export const LAMBDA_SERVICE = 'Lambda'
export const LAMBDA_NAME = /^[A-Za-z][\w-]{0,63}$/
