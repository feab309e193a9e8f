import { FnbusError, invalidArgument } from '../errors.js'

/** How deep an invoker context may nest: the context map is level 1, a map or array inside it level 2… */
export const MAX_CONTEXT_DEPTH = 32

/**
 * The rule for an invoker context, the same wherever one enters the bus (a `call` envelope, the SDK's and the
 * gateway's `context` option): a map of JSON's values — strings, finite numbers, booleans, null, arrays and maps
 * with string keys — nested at most MAX_CONTEXT_DEPTH deep. Nothing else: no bytes, no MessagePack extension (a
 * Date, a BigInt extension, msgpackr's records and references), no BigInt, no cycle (a cycle is deeper than any
 * bound). Such a context can always be written again, by any MessagePack or JSON library, whenever it is delivered.
 *
 * Returns the context's size as the bus writes it in MessagePack, or — a string — why `value` is not a context.
 * Measuring stops once the size passes `maxBytes`: the figure returned is then only known to exceed it.
 * `undefined` is what a JavaScript caller may leave in a map (it is left out) or an array (nil); from the wire it
 * can only be MessagePack extension 0, which some libraries decode so, and is refused (`decoded`).
 */
export function measureContext (value: unknown, maxBytes = Infinity, decoded = false): number | string {
  if (!isPlainMap(value)) return 'is not a map'
  return measure(value, 1, maxBytes, !decoded)
}

/** Checks a context an SDK or in-process caller passes: FNBUS_INVALID_ARGUMENT, or FNBUS_PAYLOAD_TOO_LARGE past `maxBytes`. */
export function checkContextArgument (value: unknown, maxBytes = Infinity, name = 'context'): Record<string, unknown> | undefined {
  if (value === undefined) return undefined
  const size = measureContext(value, maxBytes)
  if (typeof size === 'string') {
    throw invalidArgument(`${name} ${size}: an invoker context holds strings, finite numbers, booleans, null, arrays and plain objects, at most ${MAX_CONTEXT_DEPTH} deep`)
  }
  if (size > maxBytes) throw new FnbusError('FNBUS_PAYLOAD_TOO_LARGE', `${name} exceeds ${maxBytes} bytes (limits.maxContextBytes)`)
  return value as Record<string, unknown>
}

function isPlainMap (value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** The size of a map or array at `depth`, or why it cannot be in a context. */
function measure (container: object, depth: number, maxBytes: number, undefinedAllowed: boolean): number | string {
  if (depth > MAX_CONTEXT_DEPTH) return `is nested deeper than ${MAX_CONTEXT_DEPTH} levels, or holds a cycle`
  let size: number
  if (Array.isArray(container)) {
    if (Object.getPrototypeOf(container) !== Array.prototype) return 'holds an array of a class of its own'
    const length = container.length
    size = headerBytes(length)
    for (let i = 0; i < length && size <= maxBytes; i++) {
      const item = measureValue(container[i] as unknown, depth, maxBytes - size, undefinedAllowed)
      if (typeof item === 'string') return item
      size += item
    }
    return size
  }
  const fields = container as Record<string, unknown>
  let count = 0
  size = 0
  for (const key in fields) {
    const item = fields[key]
    if (item === undefined && undefinedAllowed) continue
    count++
    const itemSize = measureValue(item, depth, maxBytes - size, undefinedAllowed)
    if (typeof itemSize === 'string') return itemSize
    size += stringBytes(key) + itemSize
    if (size > maxBytes) break
  }
  return size + headerBytes(count)
}

function measureValue (value: unknown, depth: number, maxBytes: number, undefinedAllowed: boolean): number | string {
  switch (typeof value) {
    case 'string': return stringBytes(value)
    case 'number': return numberBytes(value)
    case 'boolean': return 1
    case 'undefined': return undefinedAllowed ? 1 : 'holds a MessagePack extension decoded as undefined'
    case 'object':
      if (value === null) return 1
      if (Array.isArray(value) || isPlainMap(value)) return measure(value, depth + 1, maxBytes, undefinedAllowed)
      return `holds ${describeObject(value)}`
    default:
      return `holds a ${typeof value}`
  }
}

function describeObject (value: object): string {
  if (value instanceof Uint8Array) return 'bytes'
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name
  return typeof name === 'string' && name !== '' ? `a value of type ${name}` : 'an object of a class of its own'
}

function headerBytes (count: number): number {
  return count < 16 ? 1 : count < 0x10000 ? 3 : 5
}

/** As the bus writes it: the smallest integer form for a safe integer, else a float64 (never float32). */
function numberBytes (n: number): number | string {
  if (!Number.isFinite(n)) return `holds ${n}`
  if (!Number.isSafeInteger(n)) return 9
  if (n >= 0) return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9
  return n >= -0x20 ? 1 : n >= -0x80 ? 2 : n >= -0x8000 ? 3 : n >= -0x80000000 ? 5 : 9
}

function stringBytes (s: string): number {
  let bytes = s.length
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) continue
    if (c < 0x800) {
      bytes += 1
    } else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 2 // a surrogate pair: two UTF-16 units, four bytes
      i++
    } else {
      bytes += 2 // three bytes (a lone surrogate as U+FFFD)
    }
  }
  return bytes + (bytes < 32 ? 1 : bytes < 0x100 ? 2 : bytes < 0x10000 ? 3 : 5)
}
