import assert from 'node:assert/strict'
import test from 'node:test'
import fc from 'fast-check'
import {
  decodeMessage, encodeMessage, envelope, ENVELOPE_FIELDS, EnvelopeBatcher, measureContext, pack, packr, parseEnvelope, unpackr, PublishHeader, SlabWriter, writeEnvelope,
} from '../../dist/protocol/index.js'
import mqttPacket from 'mqtt-packet'
import * as arbitrary from '../msgpack-arbitrary.js'
import { defined } from '../helpers.js'
/** @import { Envelope } from '../../dist/protocol/index.js' */
/** @import { Thrown } from '../helpers.js' */

// FNBUS_FUZZ_SEED=n replays the property test below; FNBUS_FUZZ_RUNS=n runs it longer
const SEED = Number(process.env.FNBUS_FUZZ_SEED ?? (Date.now() % 2 ** 31))

const codeOf = fn => { try { fn() } catch (err) { return /** @type {Thrown} */ (err).code } return 'no error' }

// Envelopes of every type, with the field values at the edges of each MessagePack form, then maps that are no
// envelope: the codec writes any map as msgpackr would.
const samples = /** @type {Envelope[]} */ (/** @type {unknown[]} */ ([
  envelope({ t: 'hello', id: 1, sdk: 'fnbus-js/0.1.0' }),
  envelope({ t: 'welcome', id: 1, gw: '0.1.0', maxPayload: 1048576, maxFrame: 1114112 }),
  envelope({ t: 'call', id: 127, fn: 'EdgeFC/helloworld', it: 'Sync', to: 30000, ww: undefined, ctx: { custom: { data: 'x', n: [1, 2.5, null] } }, ik: undefined, pk: 1, p: Buffer.from('hi') }),
  envelope({ t: 'call', id: 128, fn: 'S/f', it: 'Async', ik: 'fnbus-auto-' + 'k'.repeat(22), pk: 0, p: Buffer.alloc(300, 7) }),
  envelope({ t: 'invoke', id: 65535, fn: 'S/f', it: 'Sync', rid: 'V1StGXR8_Z5jdHi6B-myT', dl: 1732000000000, pk: 2, p: Buffer.from([0xc0]) }),
  envelope({ t: 'invoke', id: 65536, fn: 'S/f', it: 'Async', rid: 'r', dl: 4294967295, pk: 0, p: Buffer.alloc(70000, 1), ctx: {} }),
  envelope({ t: 'result', id: 4294967296, fe: 'Handled', pk: 1, p: Buffer.from('boom') }),
  envelope({ t: 'result', id: 3, code: 'FNBUS_PAYLOAD_TOO_LARGE', msg: 'é'.repeat(20) + 'x'.repeat(300) }),
  envelope({ t: 'reply', id: 255, pk: 2, p: packr.pack({ a: 1 }) }),
  envelope({ t: 'error', id: 0, code: 'FNBUS_BAD_MESSAGE', msg: 'ü'.repeat(70000) }),
  envelope({ t: 'reg', id: 256, fn: 'S/f', conc: 8 }),
  envelope({ t: 'queue', id: 9, op: 'dead', fn: undefined, limit: 100 }),
  envelope({ t: 'ack', id: 31 }),
  { v: 1, t: 'x', neg: -1, neg32: -32, neg33: -33, n128: -128, n129: -129, n32k: -32768, n32k1: -32769, big: -2147483649, f: 1.5, yes: true, no: false },
  { v: 1, t: 'y', nil: null, arr: [1, 'two'], long: 'a'.repeat(40), ok: 'ünï' },
  // ASCII at the edges of fixstr and str8, and str8-long strings that turn out not to be ASCII
  { v: 1, t: 'z', s31: 'b'.repeat(31), s32: 'c'.repeat(32), s255: 'd'.repeat(255), s256: 'e'.repeat(256), late: 'f'.repeat(200) + 'é', first: 'ü' + 'g'.repeat(40), empty: '' },
  // integers beyond 32 bits are MessagePack integers up to ±(2^53 - 1); beyond, a number is a float64
  { v: 1, t: 'w', u33: 2 ** 32, maxSafe: 2 ** 53 - 1, minSafe: -(2 ** 53 - 1), n33: -(2 ** 31) - 1, unsafe: 2 ** 53, frac: 2 ** 40 + 0.5, inf: Infinity },
  // 16 fields and more: no envelope of this protocol, still encoded as msgpackr would
  Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`f${i}`, i === 3 ? undefined : i])),
]))

test('envelopes encode to exactly the bytes the bus codec writes (msgpackr with the bus options, integers as integers)', () => {
  for (const env of samples) {
    assert.deepEqual(encodeMessage([env]), pack(env), `envelope ${env.t}`)
  }
})

test('decoding gives what msgpackr gives, byte strings as views of the message', () => {
  const message = encodeMessage(samples)
  const decoded = decodeMessage(message)
  assert.deepEqual(decoded, unpackr.unpackMultiple(message))
  const call = /** @type {{ p: Buffer }} */ (decoded[2])
  assert.equal(call.p.buffer, message.buffer, 'the payload is a view, not a copy')
  assert.ok(Buffer.isBuffer(call.p))
})

test('integers are written as MessagePack integers: dl is a uint64, a negative beyond 32 bits an int64, never a float64', () => {
  const invoke = encodeMessage([envelope({ t: 'invoke', id: 1, fn: 'S/f', it: 'Sync', rid: 'r', dl: 1732000000000, pk: 1, p: Buffer.alloc(0) })])
  const dl = invoke.indexOf(Buffer.from('a2646c', 'hex')) + 3
  assert.equal(invoke.subarray(dl, dl + 9).toString('hex'), 'cf00000193433ea800')
  assert.equal(pack({ t: -5_000_000_000 }).toString('hex'), '81a174d3fffffffed5fa0e00')
  assert.equal(pack(2 ** 53 - 1).toString('hex'), 'cf001fffffffffffff')
  assert.equal(pack(2 ** 53).toString('hex'), 'cb4340000000000000', 'not a safe integer: a float64')
  assert.equal(pack(1.5).toString('hex'), 'cb3ff8000000000000')
  // nested values are walked: strings and bins holding 0xcb bytes are not mistaken for floats
  const nested = { s: '\u00cb\u00cb', b: Buffer.from([0xcb, 0, 0, 0, 0, 0, 0, 0, 0]), a: [[{ t: 1732000000000 }]], m: new Map([['k', -(2 ** 40)]]) }
  const bytes = pack(nested)
  assert.deepEqual(unpackr.unpack(bytes), { ...nested, m: { k: -(2 ** 40) } })
  assert.equal(bytes.includes(Buffer.from('cb4279', 'hex')), false, 'no float64 for 1732000000000')
  assert.ok(bytes.includes(Buffer.from('cf00000193433ea800', 'hex')))
})

test('64-bit integers decode as numbers up to ±2^53 (exact), as BigInt beyond, the same on both readers', () => {
  const int64 = (head, n) => { const b = Buffer.alloc(9); b[0] = head; b.writeBigUInt64BE(BigInt.asUintN(64, n), 1); return b }
  const values = [
    [0xcf, 2n ** 53n - 1n], [0xcf, 2n ** 53n], [0xcf, 2n ** 53n + 1n], [0xcf, 2n ** 64n - 1n], [0xcf, 1n],
    [0xd3, -(2n ** 53n)], [0xd3, -(2n ** 53n) - 1n], [0xd3, 2n ** 53n], [0xd3, 2n ** 53n + 1n], [0xd3, -(2n ** 63n)], [0xd3, -1n],
  ]
  for (const [head, n] of values) {
    const message = Buffer.concat([Buffer.from('82a17601a178', 'hex'), int64(head, n)])
    const [map] = decodeMessage(message)
    assert.deepEqual(map, unpackr.unpack(message), `${head.toString(16)} ${n}`)
    const small = n >= -(2n ** 53n) && n <= 2n ** 53n
    assert.equal(typeof map.x, small ? 'number' : 'bigint', `${head.toString(16)} ${n}`)
    assert.equal(BigInt(/** @type {number | bigint} */ (map.x)), n)
  }
})

test('what the fast reader does not take, msgpackr still decodes or refuses as before', () => {
  // uint64 and float32 values, a non-string key, a map16: valid MessagePack, decoded by msgpackr
  const unusual = [
    Buffer.from('82a176cf0000000000000001a174a361636b', 'hex'),
    Buffer.from('82a176ca3fc00000a174a361636b', 'hex'),
    Buffer.from('820101a174a361636b', 'hex'),
    Buffer.from('de0002a17601a174a361636b', 'hex'),
  ]
  for (const bytes of unusual) assert.deepEqual(decodeMessage(bytes), unpackr.unpackMultiple(bytes))
  assert.equal(codeOf(() => decodeMessage(Buffer.from([0x81, 0xa1]))), 'FNBUS_BAD_MESSAGE')
  assert.equal(codeOf(() => decodeMessage(Buffer.from([0x81, 0xa1, 0x61, 0xdc, 0xff, 0xff]))), 'FNBUS_BAD_MESSAGE')
  assert.equal(codeOf(() => decodeMessage(Buffer.from([0x81, 0xa1, 0x61, 0x01, 0x05]))), 'FNBUS_BAD_MESSAGE')
  // @ts-expect-error a map with a key named __proto__ (the computed one), in an object without a prototype
  const proto = decodeMessage(packr.pack({ __proto__: null, ['__proto__']: 1, t: 'ack' }))
  assert.equal(Object.getPrototypeOf(proto[0]), Object.prototype, 'a __proto__ key never sets a prototype')
})

test('damaged messages never crash the reader: each is decoded as msgpackr would, or refused with a code', () => {
  const message = encodeMessage(samples.slice(0, 13))
  let seed = 42
  const random = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
  for (let i = 0; i < 2000; i++) {
    const bytes = Buffer.from(message.subarray(0, 1 + Math.floor(random() * 400)))
    for (let k = 0; k < 3; k++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256)
    let expected
    try {
      expected = unpackr.unpackMultiple(bytes)
    } catch {
      expected = undefined
    }
    let actual
    try {
      actual = decodeMessage(bytes)
    } catch (err) {
      assert.equal(/** @type {Thrown} */ (err).code, 'FNBUS_BAD_MESSAGE')
      continue
    }
    assert.deepEqual(actual, expected)
  }
})

test('a batch is one MQTT PUBLISH that an MQTT parser reads back, split when it outgrows its limit', async () => {
  const frames = []
  const batcher = new EnvelopeBatcher('$fn/in/client-1', frame => frames.push(Buffer.from(frame)), () => 1000)
  const envs = []
  for (let i = 1; i <= 40; i++) {
    const env = envelope({ t: 'reply', id: i, pk: 0, p: Buffer.alloc(i * 10, i) })
    envs.push(env)
    batcher.add(env)
  }
  await new Promise(resolve => process.nextTick(resolve))
  assert.ok(frames.length > 1)
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const received = []
  parser.on('packet', packet => received.push(packet))
  for (const frame of frames) parser.parse(frame)
  assert.equal(received.length, frames.length)
  const decoded = []
  for (const packet of received) {
    assert.equal(packet.cmd, 'publish')
    assert.equal(packet.qos, 0)
    assert.equal(packet.topic, '$fn/in/client-1')
    const maps = decodeMessage(packet.payload)
    // only a lone envelope may exceed the limit
    assert.ok(maps.length === 1 || packet.payload.length <= 1000)
    decoded.push(...maps)
  }
  assert.deepEqual(decoded.map(m => m.id), envs.map(e => e.id))
  assert.deepEqual(decoded.map(m => m.p), envs.map(e => 'p' in e ? e.p : undefined))
})

test('the 32nd envelope of a tick leaves at once with those before it; the rest leave at the end of the tick, in order', async () => {
  const frames = []
  const batcher = new EnvelopeBatcher('$fn/up', frame => frames.push(Buffer.from(frame)), () => 1 << 20)
  const idsOf = frame => {
    let ids
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    parser.on('packet', packet => { ids = decodeMessage(publishPayload(packet)).map(m => m.id) })
    parser.parse(frame)
    return ids
  }
  for (let id = 1; id <= 31; id++) batcher.add(envelope({ t: 'ack', id }))
  assert.equal(frames.length, 0, 'nothing leaves before the 32nd')
  batcher.add(envelope({ t: 'ack', id: 32 }))
  assert.equal(frames.length, 1, 'the 32nd sends the frame without waiting for the tick')
  assert.deepEqual(idsOf(frames[0]), Array.from({ length: 32 }, (_, i) => i + 1))
  for (let id = 33; id <= 70; id++) batcher.add(envelope({ t: 'ack', id }))
  assert.equal(frames.length, 2)
  await new Promise(resolve => process.nextTick(resolve))
  assert.equal(frames.length, 3)
  assert.deepEqual(idsOf(frames[1]), Array.from({ length: 32 }, (_, i) => i + 33))
  assert.deepEqual(idsOf(frames[2]), Array.from({ length: 6 }, (_, i) => i + 65))
  // a lone envelope of a later tick still leaves at that tick's end
  batcher.add(envelope({ t: 'ack', id: 71 }))
  await new Promise(resolve => process.nextTick(resolve))
  assert.equal(frames.length, 4)
  assert.deepEqual(idsOf(frames[3]), [71])
})

test('an envelope that cannot be encoded leaves the batch as it was', async () => {
  const frames = []
  const batcher = new EnvelopeBatcher('$fn/up', frame => frames.push(Buffer.from(frame)), () => 1 << 20)
  batcher.add(envelope({ t: 'ack', id: 1 }))
  assert.throws(() => batcher.add(envelope({ t: 'call', id: 2, fn: 'S/f', it: 'Sync', pk: 1, p: Buffer.alloc(0), ctx: { big: 2n ** 70n } })))
  batcher.add(envelope({ t: 'ack', id: 3 }))
  await new Promise(resolve => process.nextTick(resolve))
  assert.equal(frames.length, 1)
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  let payload
  parser.on('packet', packet => { payload = publishPayload(packet) })
  parser.parse(frames[0])
  assert.deepEqual(decodeMessage(defined(payload)).map(m => m.id), [1, 3])
})

test('pieces cut from a slab stay intact while the writer goes on', () => {
  const out = new SlabWriter()
  const pieces = []
  for (let i = 0; i < 2000; i++) {
    out.begin(3)
    writeEnvelope(out, envelope({ t: 'ack', id: i }))
    if (i % 7 === 0) writeEnvelope(out, envelope({ t: 'reply', id: i, pk: 0, p: Buffer.alloc(100, i & 0xff) }))
    pieces.push(/** @type {const} */ ([i, out.finish()]))
  }
  for (const [i, piece] of pieces) {
    const maps = decodeMessage(piece.subarray(3))
    assert.equal(maps[0].id, i)
    if (i % 7 === 0) assert.deepEqual(maps[1].p, Buffer.alloc(100, i & 0xff))
  }
  const header = new PublishHeader('t')
  assert.equal(header.reserve, 1 + 4 + 3)
})

test('a piece larger than a slab grows geometrically: a 200 KiB frame moves a few times (doubling), not once per envelope', () => {
  const out = new SlabWriter()
  out.begin(5)
  const slabs = new Set()
  for (let i = 0; i < 200; i++) {
    writeEnvelope(out, envelope({ t: 'reply', id: i, pk: 0, p: Buffer.alloc(1024, i & 0xff) }))
    slabs.add(out.buffer)
  }
  assert.ok(slabs.size <= 10, `moved to ${slabs.size} slabs`) // sized exactly, it moved about once per envelope past 64 KiB
  const maps = decodeMessage(out.finish().subarray(5))
  assert.equal(maps.length, 200)
  for (const [i, map] of maps.entries()) assert.deepEqual(map.p, Buffer.alloc(1024, i & 0xff))
})

test('over every MessagePack type and extension: both readers agree, and whatever the parser accepts can be written again', () => {
  const accepted = { any: 0, ctx: 0 }
  fc.assert(fc.property(arbitrary.envelope, bytes => {
    let expected
    try {
      expected = unpackr.unpackMultiple(bytes)
    } catch {
      expected = undefined
    }
    let raws
    try {
      raws = decodeMessage(bytes)
    } catch (err) {
      assert.equal(/** @type {Thrown} */ (err).code, 'FNBUS_BAD_MESSAGE')
      return
    }
    if (expected !== undefined) assert.equal(shape(raws), shape(expected))
    for (const raw of raws) {
      let env
      try {
        env = parseEnvelope(raw, { maxContextBytes: 16384 })
      } catch (e) {
        const err = /** @type {Thrown} */ (e)
        assert.ok(['FNBUS_BAD_MESSAGE', 'FNBUS_PROTOCOL_MISMATCH', 'FNBUS_PAYLOAD_TOO_LARGE'].includes(String(err.code)), err.message)
        continue
      }
      accepted.any++
      // what a timer or a promise reaction would encode later (the envelope's own fields: the gateway never forwards
      // unknown ones) never throws for an accepted envelope
      const known = Object.fromEntries(['v', 't', ...Object.keys(ENVELOPE_FIELDS[env.t])].filter(k => env[k] !== undefined).map(k => [k, env[k]]))
      const again = decodeMessage(encodeMessage(/** @type {Envelope[]} */ ([known])))[0]
      if (known.ctx !== undefined) {
        accepted.ctx++
        assert.equal(typeof measureContext(again.ctx), 'number')
      }
    }
  }), { numRuns: Number(process.env.FNBUS_FUZZ_RUNS ?? 3000), seed: SEED })
  assert.ok(accepted.any > 100 && accepted.ctx > 10, `enough accepted envelopes to mean something: ${JSON.stringify(accepted)}`)
})

/**
 * A decoded value as a string that two decodings of the same bytes share: deepEqual fails them for an Invalid Date,
 * Errors (their stacks), and views of the message against msgpackr's copies.
 */
function shape (value, path = new Set()) {
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value)
  if (value === null || typeof value !== 'object') return `${typeof value}:${String(value)}`
  if (path.has(value)) return '<cycle>'
  path.add(value)
  let out
  if (ArrayBuffer.isView(value)) out = `${value.constructor.name}:${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`
  else if (value instanceof Date) out = `date:${value.getTime()}`
  else if (value instanceof Error) out = `error:${value.name}:${value.message}`
  else if (value instanceof Set || value instanceof Map || Array.isArray(value)) out = `${value.constructor.name}[${[...value].map(v => shape(v, path)).join(',')}]`
  else out = `${Object.getPrototypeOf(value)?.constructor?.name ?? 'null'}{${Object.keys(value).map(k => `${JSON.stringify(k)}:${shape(value[k], path)}`).join(',')}}`
  path.delete(value)
  return out
}

/**
 * The payload of a PUBLISH packet mqtt-packet parsed.
 * @param {import('mqtt-packet').Packet} packet
 */
function publishPayload (packet) {
  assert.equal(packet.cmd, 'publish')
  return Buffer.from(/** @type {import('mqtt-packet').IPublishPacket} */ (packet).payload)
}
