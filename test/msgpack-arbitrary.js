// fast-check arbitraries of raw MessagePack: every format of the specification, each in every width it may take
// (a small integer as a uint64, a short string as a str32), and the extension types msgpackr decodes (timestamps,
// its BigInt, errors, sets, regular expressions, typed arrays, records, structured-clone ids and pointers), valid or
// not. They give bytes, not values, so that what another language's library may write is covered, not only what
// msgpackr writes. (Not a test file.)
import fc from 'fast-check'
import { packr } from '../dist/protocol/codec.js'

const byte = n => Buffer.from([n & 0xff])
const be = (bytes, write) => { const b = Buffer.alloc(bytes); write(b); return b }
const concat = parts => Buffer.concat(parts)

/** A header for a length in one of the forms that can hold it (`fix` only when it fits). */
function lengthHeader (length, fixBase, fixMax, heads, form) {
  if (form === 0 && fixBase !== undefined && length <= fixMax) return byte(fixBase | length)
  if (form <= 1 && heads[0] !== undefined && length < 0x100) return concat([byte(heads[0]), byte(length)])
  if (form <= 2 && length < 0x10000) return concat([byte(heads[1]), be(2, b => b.writeUInt16BE(length))])
  return concat([byte(heads[2]), be(4, b => b.writeUInt32BE(length))])
}

const form = fc.integer({ min: 0, max: 3 })

const integer = fc.oneof(
  fc.integer({ min: 0, max: 127 }).map(n => byte(n)),
  fc.integer({ min: -32, max: -1 }).map(n => byte(n)),
  fc.integer({ min: 0, max: 0xff }).map(n => concat([byte(0xcc), byte(n)])),
  fc.integer({ min: 0, max: 0xffff }).map(n => concat([byte(0xcd), be(2, b => b.writeUInt16BE(n))])),
  fc.integer({ min: 0, max: 0xffffffff }).map(n => concat([byte(0xce), be(4, b => b.writeUInt32BE(n))])),
  fc.constantFrom(0n, 1n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n)
    .chain(edge => fc.oneof(fc.constant(edge), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })))
    .map(n => concat([byte(0xcf), be(8, b => b.writeBigUInt64BE(n))])),
  fc.integer({ min: -128, max: 127 }).map(n => concat([byte(0xd0), be(1, b => b.writeInt8(n))])),
  fc.integer({ min: -32768, max: 32767 }).map(n => concat([byte(0xd1), be(2, b => b.writeInt16BE(n))])),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map(n => concat([byte(0xd2), be(4, b => b.writeInt32BE(n))])),
  fc.constantFrom(-1n, -(2n ** 53n), -(2n ** 53n) - 1n, -(2n ** 63n), 2n ** 63n - 1n)
    .chain(edge => fc.oneof(fc.constant(edge), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })))
    .map(n => concat([byte(0xd3), be(8, b => b.writeBigInt64BE(n))]))
)

const float = fc.oneof(
  fc.float().map(x => concat([byte(0xca), be(4, b => b.writeFloatBE(x))])),
  fc.oneof(fc.double(), fc.constantFrom(NaN, Infinity, -Infinity, -0, 2 ** 53, 1.5, 1732000000000))
    .map(x => concat([byte(0xcb), be(8, b => b.writeDoubleBE(x))]))
)

/** Text as UTF-8, or bytes that are not UTF-8 at all. */
const stringBytes = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 20 }).map(s => Buffer.from(s)) },
  fc.constantFrom('v', 't', 'id', 'ctx', '__proto__', 'constructor', 'call', 'Fuzz/x').map(s => Buffer.from(s)),
  fc.uint8Array({ maxLength: 12 }).map(a => Buffer.from(a))
)
export const string = fc.tuple(stringBytes, form).map(([bytes, f]) => concat([lengthHeader(bytes.length, 0xa0, 31, [0xd9, 0xda, 0xdb], f), bytes]))
const bin = fc.tuple(fc.uint8Array({ maxLength: 40 }), form).map(([bytes, f]) => concat([lengthHeader(bytes.length, undefined, 0, [0xc4, 0xc5, 0xc6], f === 0 ? 1 : f), Buffer.from(bytes)]))
const scalar = fc.oneof(
  integer, float, string, bin,
  fc.constantFrom(byte(0xc0), byte(0xc2), byte(0xc3)),
  { weight: 1, arbitrary: fc.constant(byte(0xc1)) } // never used: an invalid byte
)

/** Extension types msgpackr gives a meaning to, and the rest. */
const EXTENSION_TYPES = [-1, 0, 0x10, 0x11, 0x42, 0x65, 0x69, 0x70, 0x72, 0x73, 0x74, 0x78]
function extension (type, data) {
  const n = data.length
  const fixed = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 }[n]
  const header = fixed !== undefined ? byte(fixed) : lengthHeader(n, undefined, 0, [0xc7, 0xc8, 0xc9], 1)
  return concat([header, byte(type), data])
}
const rawExtension = fc.tuple(fc.oneof(fc.constantFrom(...EXTENSION_TYPES), fc.integer({ min: -128, max: 127 })), fc.uint8Array({ maxLength: 20 }))
  .map(([type, data]) => extension(type, Buffer.from(data)))
const timestamp = fc.oneof(
  fc.integer({ min: 0, max: 0xffffffff }).map(s => extension(-1, be(4, b => b.writeUInt32BE(s)))),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(n => extension(-1, be(8, b => b.writeBigUInt64BE(n)))),
  fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }))
    .map(([ns, s]) => extension(-1, be(12, b => { b.writeUInt32BE(ns); b.writeBigInt64BE(s, 4) })))
)
const bigIntExtension = fc.uint8Array({ minLength: 1, maxLength: 24 }).map(data => extension(0x42, Buffer.from(data)))
const typedArrayExtension = fc.tuple(fc.integer({ min: 0, max: 20 }), fc.uint8Array({ maxLength: 16 }))
  .map(([code, data]) => extension(0x74, concat([byte(code), Buffer.from(data)])))
const pointer = fc.integer({ min: 0, max: 3 }).map(id => extension(0x70, be(4, b => b.writeUInt32BE(id))))

/**
 * One MessagePack value as bytes: scalars, arrays and maps in every header width (maps with keys of any type,
 * mostly strings), extensions, and msgpackr's structures built from several values (a structured-clone id followed
 * by what it names, a set or an error tag followed by its array).
 */
export const value = fc.letrec(tie => ({
  value: fc.oneof({ maxDepth: 4, depthIdentifier: 'msgpack' },
    { weight: 6, arbitrary: scalar },
    { weight: 2, arbitrary: tie('array') },
    { weight: 2, arbitrary: tie('map') },
    { weight: 2, arbitrary: fc.oneof(rawExtension, timestamp, bigIntExtension, typedArrayExtension, pointer) },
    { weight: 1, arbitrary: tie('structure') }
  ),
  array: fc.tuple(fc.array(tie('value'), { maxLength: 5 }), form)
    .map(([items, f]) => concat([lengthHeader(items.length, 0x90, 15, [undefined, 0xdc, 0xdd], f), ...items])),
  map: fc.tuple(fc.array(fc.tuple(fc.oneof({ weight: 4, arbitrary: string }, tie('value')), tie('value')), { maxLength: 5 }), form)
    .map(([entries, f]) => concat([lengthHeader(entries.length, 0x80, 15, [undefined, 0xde, 0xdf], f), ...entries.flat()])),
  structure: fc.oneof(
    // a structured-clone id, then the array or map it names (which may point back at it)
    fc.tuple(fc.integer({ min: 0, max: 3 }), tie('array')).map(([id, target]) => concat([extension(0x69, be(4, b => b.writeUInt32BE(id))), target])),
    fc.tuple(fc.constantFrom(0x73, 0x65, 0x78), tie('array')).map(([tag, items]) => concat([extension(tag, byte(0)), items]))
  ),
})).value

/** A map of string keys to values, as raw MessagePack: what `ctx` may be sent as. */
export const map = fc.tuple(fc.array(fc.tuple(string, value), { maxLength: 6 }), form)
  .map(([entries, f]) => concat([lengthHeader(entries.length, 0x80, 15, [undefined, 0xde, 0xdf], f), ...entries.flat()]))

/** A map written field by field: `fields` is [key, MessagePack bytes][]; `f` the header's form. */
export function mapOf (fields, f = 0) {
  return concat([lengthHeader(fields.length, 0x80, 15, [undefined, 0xde, 0xdf], f), ...fields.flatMap(([key, bytes]) => [
    lengthHeader(Buffer.byteLength(key), 0xa0, 31, [0xd9, 0xda, 0xdb], 0), Buffer.from(key), bytes,
  ])])
}

const pack = value => Buffer.from(packr.pack(value))
const FUNCTIONS = ['Fuzz/x', 'Fuzz/r', 'Svc/echo']

/** Envelopes of every type with their fields right, for fields to be replaced or added over. */
const validEnvelope = fc.oneof(
  fc.constant({ t: 'hello', id: 1 }),
  fc.record({ it: fc.constantFrom('Sync', 'Async'), fn: fc.constantFrom(...FUNCTIONS) })
    .map(({ it, fn }) => ({ t: 'call', id: 2, fn, it, pk: 1, p: Buffer.from('x'), to: 200 })),
  fc.constant({ t: 'reg', id: 3, fn: 'Fuzz/x', conc: 1 }),
  fc.constant({ t: 'unreg', id: 4, fn: 'Fuzz/x' }),
  fc.integer({ min: 0, max: 100 }).map(id => ({ t: 'result', id, pk: 1, p: Buffer.from('forged') })),
  fc.constant({ t: 'cancel', id: 5, iid: 'x' }),
  fc.constantFrom('ls', 'dead').map(op => ({ t: 'queue', id: 6, op })),
  fc.constant({ t: 'status', id: 7 })
)
const FIELD_NAMES = ['v', 't', 'id', 'fn', 'it', 'pk', 'p', 'to', 'ww', 'ctx', 'ik', 'iid', 'op', 'conc', 'limit', 'fe', 'code', 'msg', 'rid', 'dl', '__proto__', 'x']

/**
 * A bus envelope as raw MessagePack: a valid one of any type, with up to three fields replaced or added by values
 * of any MessagePack type, and often a `ctx` of any content; its map header in any width.
 */
export const envelope = fc.tuple(
  validEnvelope,
  fc.array(fc.tuple(fc.constantFrom(...FIELD_NAMES), value), { maxLength: 3 }),
  fc.option(fc.oneof({ weight: 3, arbitrary: map }, value), { nil: undefined }),
  form
).map(([valid, replaced, ctx, f]) => {
  const fields = new Map(Object.entries({ v: 1, ...valid }).map(([key, v]) => [key, pack(v)]))
  if (ctx !== undefined) fields.set('ctx', ctx)
  for (const [key, bytes] of replaced) fields.set(key, bytes)
  return mapOf([...fields], f)
})

/**
 * Values that a careless consumer cannot turn into JSON or MessagePack again: integers beyond 2^53 (BigInt), a BigInt
 * extension beyond 64 bits, a self-referencing array, 3000 levels of nesting, a timestamp, an unknown extension.
 */
export const hardValues = [
  Buffer.from('cfffffffffffffffff', 'hex'),
  Buffer.from('d38000000000000000', 'hex'),
  Buffer.from('81a162cf0020000000000001', 'hex'),
  Buffer.from('c70942010000000000000000', 'hex'),
  Buffer.from('d6690000000191d67000000001', 'hex'),
  Buffer.from('81a161d6690000000191d67000000001', 'hex'),
  Buffer.concat([Buffer.alloc(3000, 0x91), Buffer.from([0xc0])]),
  Buffer.from('d6ff00000000', 'hex'),
  Buffer.from('d40700', 'hex'),
]

/** A worker's answer to the invoke `id`: a value of any kind and content, or a bus error, or fields of any type. */
export function result (id) {
  return fc.tuple(
    fc.oneof(
      fc.tuple(fc.constantFrom(0, 1, 2), value).map(([pk, v]) => [['pk', pack(pk)], ['p', pack(pk === 2 ? v : v.subarray(0, 8))]]),
      fc.constantFrom(...hardValues).map(v => [['pk', pack(2)], ['p', pack(v)]]),
      fc.constantFrom('FNBUS_TIMEOUT', 'FNBUS_SHUTTING_DOWN', 'FNBUS_NOPE', '').map(code => [['code', pack(code)], ['msg', pack('fuzzed')]]),
      fc.array(fc.tuple(fc.constantFrom('pk', 'p', 'fe', 'code', 'msg'), value), { maxLength: 3 })
    ),
    fc.option(fc.constantFrom('Handled', 'Unhandled'), { nil: undefined })
  ).map(([fields, fe]) => mapOf([['v', pack(1)], ['t', pack('result')], ['id', pack(id)], ...(fe === undefined ? [] : [['fe', pack(fe)]]), ...fields]))
}
