// Runs the validators compiled from the configuration's schema (schema.ts) and turns their first error into the
// message users read: the key path (`functions[2].maxRetries`), what is wrong with it and what was given, or for an
// unknown key the keys that are known.
import { FnbusError, type ErrorCode } from '../errors.js'
import { validateConfig, validateFunctionOptions, validateGatewayOptions, type SchemaError, type Validator } from './validators.js'

/** Longest rendering of a wrong value in a message: the value may be anything a user or a peer sent. */
const MAX_VALUE_CHARS = 120

/** The configuration file's object as the schema says; `file` starts every message. */
export function checkConfigFile (raw: unknown, file: string): void {
  check(validateConfig, raw, 'the configuration', message => new FnbusError('FNBUS_CONFIG_INVALID', `${file}: ${message}`))
}

/** `createGateway`'s options (and the bus options inside them), as the same schema says. */
export function checkGatewayOptions (options: unknown, what = 'the options'): void {
  check(validateGatewayOptions, options, what, message => new FnbusError('FNBUS_CONFIG_INVALID', message))
}

/** `setFunctionOptions`' options of the function `name`. */
export function checkFunctionOptions (options: unknown, name: string, code: ErrorCode = 'FNBUS_INVALID_ARGUMENT'): void {
  check(validateFunctionOptions, options, 'the options', message => new FnbusError(code, `${name}: ${message}`))
}

function check (validate: Validator, value: unknown, rootName: string, fail: (message: string) => FnbusError): void {
  if (validate(value)) return
  const error = validate.errors?.[0]
  throw fail(error === undefined ? `${rootName} are invalid` : describeError(error, rootName))
}

/** One schema error in words. Exported for the tests of every keyword the schemas use. */
export function describeError (error: SchemaError, rootName: string): string {
  const path = keyPath(error.instancePath)
  const schema = error.parentSchema ?? {}
  const where = path === '' ? '' : `${path}: `
  switch (error.keyword) {
    case 'additionalProperties': {
      const known = Object.keys((schema.properties ?? {}) as object).filter(key => !key.startsWith('$'))
      return `${where}unknown key ${quote(error.params.additionalProperty)} (known: ${known.join(', ')})`
    }
    case 'required':
      return `${where}${quote(error.params.missingProperty)} is required`
  }
  const subject = path === '' ? rootName : path
  return `${subject} must ${expectation(error, schema)}, got ${show(error.data)}`
}

function expectation (error: SchemaError, schema: Readonly<Record<string, unknown>>): string {
  const expected = schema['x-expected']
  if (typeof expected === 'string') return expected
  switch (error.keyword) {
    case 'type': return typeExpectation(schema)
    case 'minimum': return integerExpectation(schema)
    // a value beyond the largest safe integer: say where the range ends
    case 'maximum': return `be an integer between ${String(schema.minimum)} and ${String(schema.maximum)}`
    case 'minLength': return 'be a non-empty string'
    case 'pattern': return `match ${String(error.params.pattern).replace(/^\^|\$$/g, '')}`
    case 'enum': return oneOf(schema.enum)
    case 'not': return `not ${oneOf((schema.not as { enum?: unknown } | undefined)?.enum)}`
  }
  return error.message ?? `satisfy ${error.keyword}`
}

function typeExpectation (schema: Readonly<Record<string, unknown>>): string {
  const types = ([] as unknown[]).concat(schema.type)
  return 'be ' + types.map(type => {
    switch (type) {
      case 'integer': return integerExpectation(schema).slice(3)
      case 'string': return schema.minLength === 1 ? 'a non-empty string' : 'a string'
      case 'boolean': return 'true or false'
      case 'object': return 'an object'
      case 'array': return 'an array'
      default: return String(type)
    }
  }).join(' or ')
}

function integerExpectation (schema: Readonly<Record<string, unknown>>): string {
  const min = schema.minimum as number
  const max = schema.maximum as number | undefined
  return max === undefined || max >= Number.MAX_SAFE_INTEGER ? `be an integer ≥ ${min}` : `be an integer between ${min} and ${max}`
}

function oneOf (values: unknown): string {
  const list = Array.isArray(values) ? values : []
  return list.length === 1 ? `be ${JSON.stringify(list[0])}` : `be one of ${list.join(', ')}`
}

/** `/functions/2/async/maxRetries` → `functions[2].async.maxRetries`. */
export function keyPath (instancePath: string): string {
  let path = ''
  for (const raw of instancePath.split('/').slice(1)) {
    const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~')
    path += /^(0|[1-9]\d*)$/.test(segment) ? `[${segment}]` : path === '' ? segment : `.${segment}`
  }
  return path
}

function quote (value: unknown): string {
  return JSON.stringify(String(value))
}

/** The value as JSON, cut short; what JSON cannot write (a bigint, a cycle, a function) as its type: `[bigint]`. */
function show (value: unknown): string {
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch {}
  text ??= `[${typeof value === 'object' && value !== null ? value.constructor?.name ?? 'object' : typeof value}]`
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS)}…` : text
}
