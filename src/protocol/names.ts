import { invalidArgument } from '../errors.js'

/** Link IoT Edge's own rule for service and function names. */
const NAME = /^[a-zA-Z][\w-]{0,127}$/
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
const PROTOTYPE_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

export function isPrototypeName (value: string): boolean {
  return PROTOTYPE_NAMES.has(value)
}

export function isValidName (value: unknown): value is string {
  return typeof value === 'string' && NAME.test(value) && !PROTOTYPE_NAMES.has(value)
}

export function checkName (value: unknown, field: string): string {
  if (!isValidName(value)) {
    throw invalidArgument(`${field} must match [a-zA-Z][\\w-]{0,127} and not be constructor or prototype, got ${describe(value)}`)
  }
  return value
}

export function functionAddress (serviceName: unknown, functionName: unknown): FunctionAddress {
  const service = checkName(serviceName, 'serviceName')
  const fn = checkName(functionName, 'functionName')
  return { serviceName: service, functionName: fn, name: `${service}/${fn}` }
}

/** Parses `Service/function`. */
export function parseFunctionName (value: unknown, field = 'function'): FunctionAddress {
  if (typeof value !== 'string') throw invalidArgument(`${field} must be a string "Service/function", got ${describe(value)}`)
  const slash = value.indexOf('/')
  if (slash < 0) throw invalidArgument(`${field} must be "Service/function", got ${describe(value)}`)
  const service = value.slice(0, slash)
  const fn = value.slice(slash + 1)
  if (!isValidName(service)) throw invalidArgument(`${field}: service name must match [a-zA-Z][\\w-]{0,127} and not be constructor or prototype, got ${describe(service)}`)
  if (!isValidName(fn)) throw invalidArgument(`${field}: function name must match [a-zA-Z][\\w-]{0,127} and not be constructor or prototype, got ${describe(fn)}`)
  return { serviceName: service, functionName: fn, name: value }
}

/** Parses Link IoT Edge's `service:EdgeFC:function:helloworld`. */
export function parseFunctionId (value: unknown): FunctionAddress {
  const match = typeof value === 'string' ? FUNCTION_ID.exec(value) : null
  if (match === null) throw invalidArgument(`functionId must be "service:SERVICE:function:FUNCTION", got ${describe(value)}`)
  return functionAddress(match[1], match[2])
}

function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 140 ? value.slice(0, 140) + '…' : value)
  return value === null ? 'null' : typeof value
}
