import assert from 'node:assert/strict'
import test from 'node:test'
import {
  checkEventFilter, checkEventTopic, decodeMessage, encodeEnvelope, encodeMessage, envelope, parseEnvelope,
  parseFunctionId, parseFunctionName, functionAddress, Payload, PayloadKind, topicMatches, isBusTopic, packr,
  checkContextArgument, checkIdempotencyKey, encodePayload, encodeEventPayload, measureContext, pack, MAX_CONTEXT_DEPTH,
} from '../../dist/protocol/index.js'
/** @import { Thrown } from '../helpers.js' */

const codeOf = fn => { try { fn() } catch (err) { return /** @type {Thrown} */ (err).code } return 'no error' }

test('names follow [a-zA-Z][\\w-]{0,127}', () => {
  assert.deepEqual(parseFunctionName('EdgeFC/helloworld'), { serviceName: 'EdgeFC', functionName: 'helloworld', name: 'EdgeFC/helloworld' })
  assert.equal(functionAddress('a', 'b-c_1').name, 'a/b-c_1')
  assert.equal(functionAddress('a', 'x'.repeat(128)).functionName.length, 128)
  for (const bad of ['', 'x'.repeat(129), '1abc', '_a', 'a b', 'a/b', 'ä', '__proto__', 'a\u0000']) {
    assert.equal(codeOf(() => functionAddress('Svc', bad)), 'FNBUS_INVALID_ARGUMENT', `function name ${JSON.stringify(bad)}`)
  }
  for (const bad of ['nofn', '/fn', 'Svc/', 'Svc/a/b', 3]) {
    assert.equal(codeOf(() => parseFunctionName(bad)), 'FNBUS_INVALID_ARGUMENT', `address ${JSON.stringify(bad)}`)
  }
})

test('an invalid name error names the field', () => {
  assert.throws(() => functionAddress('9bad', 'ok'), /serviceName/)
  assert.throws(() => functionAddress('ok', '9bad'), /functionName/)
})

test("Link IoT Edge's functionId form parses to the same address", () => {
  assert.equal(parseFunctionId('service:EdgeFC:function:helloworld').name, 'EdgeFC/helloworld')
  assert.equal(codeOf(() => parseFunctionId('service:EdgeFC')), 'FNBUS_INVALID_ARGUMENT')
  assert.equal(codeOf(() => parseFunctionId('service:1x:function:y')), 'FNBUS_INVALID_ARGUMENT')
})

test('payloads keep their type across the wire form', () => {
  const cases = ['text ✓', Buffer.from([0, 1, 255]), { a: [1, 2, { b: null }] }, 42, 1.5, true, null, [1, 'x']]
  for (const value of cases) {
    const wire = Payload.of(value)
    const back = Payload.fromWire(wire.kind, wire.bytes).value
    assert.deepEqual(back, value)
    if (typeof value === 'string') assert.equal(wire.kind, PayloadKind.Text)
    if (Buffer.isBuffer(value)) { assert.equal(wire.kind, PayloadKind.Bytes); assert.ok(Buffer.isBuffer(back)) }
  }
  assert.equal(Payload.fromWire(PayloadKind.MsgPack, Payload.of(undefined).bytes).value, null)
  assert.ok(Buffer.isBuffer(Payload.fromWire(PayloadKind.Bytes, Buffer.from(new Uint8Array([7]))).value))
})

test('a corrupt MessagePack payload is FNBUS_BAD_MESSAGE when read, not before', () => {
  const payload = Payload.fromWire(PayloadKind.MsgPack, Buffer.from([0x92, 0x01]))
  assert.equal(payload.byteLength, 2)
  assert.equal(codeOf(() => payload.value), 'FNBUS_BAD_MESSAGE')
})

test('one message carries several envelopes', () => {
  const a = envelope({ t: 'ack', id: 1 })
  const b = envelope({ t: 'call', id: 2, fn: 'S/f', it: 'Sync', pk: 1, p: Buffer.from('hi') })
  const raws = decodeMessage(encodeMessage([a, b]))
  assert.equal(raws.length, 2)
  assert.deepEqual(parseEnvelope(raws[0]), a)
  const call = parseEnvelope(raws[1])
  assert.equal(call.t, 'call')
  assert.equal(call.p.toString(), 'hi')
})

test('fields set to undefined are left out of the envelope', () => {
  const bytes = encodeEnvelope(envelope({ t: 'reply', id: 3, fe: undefined, pk: 1, p: Buffer.from('x') }))
  assert.equal(Object.hasOwn(decodeMessage(bytes)[0], 'fe'), false)
})

test('a wrong version is FNBUS_PROTOCOL_MISMATCH, with the request id kept', () => {
  const [raw] = decodeMessage(packr.pack({ v: 2, t: 'hello', id: 9 }))
  assert.throws(() => parseEnvelope(raw), (/** @type {Thrown} */ err) => err.code === 'FNBUS_PROTOCOL_MISMATCH' && err.requestId === 9)
})

test('malformed envelopes are FNBUS_BAD_MESSAGE naming the problem', () => {
  assert.equal(codeOf(() => decodeMessage(Buffer.from([0x81, 0xa1]))), 'FNBUS_BAD_MESSAGE')
  assert.equal(codeOf(() => decodeMessage(Buffer.from([0xc1]))), 'FNBUS_BAD_MESSAGE')
  assert.equal(codeOf(() => decodeMessage(packr.pack('a string'))), 'FNBUS_BAD_MESSAGE')
  assert.equal(codeOf(() => decodeMessage(Buffer.alloc(0))), 'FNBUS_BAD_MESSAGE')
  assert.throws(() => parseEnvelope({ v: 1, t: 'nope', id: 1 }), /unknown envelope type/)
  assert.throws(() => parseEnvelope({ v: 1, t: 'call', id: 1, fn: 'S/f', it: 'Sync', pk: 1 }), /lacks field "p"/)
  assert.throws(() => parseEnvelope({ v: 1, t: 'call', id: 1, fn: 'S/f', it: 'Later', pk: 1, p: Buffer.alloc(0) }), /malformed field "it"/)
  assert.throws(() => parseEnvelope({ v: 1, t: 'reg', id: -1, fn: 'S/f', conc: 1 }), /malformed field "id"/)
  assert.throws(() => parseEnvelope({ v: 1, t: 'call', id: 1, fn: 'S/f', it: 'Sync', pk: 7, p: Buffer.alloc(0) }), /malformed field "pk"/)
})

test('event topics and filters are checked; $fn/ is reserved', () => {
  assert.equal(checkEventTopic('sensors/1/temp'), 'sensors/1/temp')
  for (const bad of ['', 'a/+', 'a/#', '$fn/up', '$fn', 'a\u0000b']) assert.equal(codeOf(() => checkEventTopic(bad)), 'FNBUS_INVALID_ARGUMENT', bad)
  for (const good of ['#', '+', 'a/+/c', 'a/#', '+/+']) assert.equal(checkEventFilter(good), good)
  for (const bad of ['a/#/b', 'a#', 'a/b+', '$fn/#', '']) assert.equal(codeOf(() => checkEventFilter(bad)), 'FNBUS_INVALID_ARGUMENT', bad)
  assert.ok(isBusTopic('$fn/in/x'))
  assert.ok(!isBusTopic('$fnord/x'))
})

test('topic matching follows MQTT, including $ topics and # matching the parent level', () => {
  assert.ok(topicMatches('a/+/c', 'a/b/c'))
  assert.ok(!topicMatches('a/+/c', 'a/b/d'))
  assert.ok(topicMatches('a/#', 'a'))
  assert.ok(topicMatches('a/#', 'a/b/c'))
  assert.ok(!topicMatches('a/+', 'a/b/c'))
  assert.ok(!topicMatches('#', '$SYS/x'))
  assert.ok(!topicMatches('+/x', '$fn/x'))
  assert.ok(topicMatches('$SYS/#', '$SYS/x'))
})

test('an envelope whose type or version is not a string or a number is a coded error, whatever it is (a BigInt, a large array)', () => {
  for (const t of [10n, Array.from({ length: 10_000 }, (_, i) => i), { a: 1 }, null, true]) {
    assert.throws(() => parseEnvelope({ v: 1, t, id: 1 }), (/** @type {Thrown} */ err) => err.code === 'FNBUS_BAD_MESSAGE' && err.message.length < 200, `t = ${typeof t}`)
  }
  for (const v of [2n ** 64n - 1n, [1, 2, 3], 'one']) {
    assert.throws(() => parseEnvelope({ v, t: 'ack', id: 1 }), (/** @type {Thrown} */ err) => err.code === 'FNBUS_PROTOCOL_MISMATCH' && err.message.length < 200)
  }
})

test('an invoker context is a map of JSON values, at most 32 deep; its size is what the bus writes', () => {
  const nest = depth => { let value = /** @type {unknown} */ ('leaf'); for (let i = 1; i < depth; i++) value = [value]; return { a: value } }
  const good = [{}, { s: 'é😀', n: [0, -1, 127, 128, -33, 65536, 2 ** 32, -(2 ** 40), 1.5, Number.MAX_SAFE_INTEGER, 2 ** 60], b: true, z: null, m: { x: { y: [] } } },
    nest(MAX_CONTEXT_DEPTH), Object.assign(Object.create(null), { a: 1 }), { ['x'.repeat(70_000)]: 'y'.repeat(300) }]
  for (const ctx of good) assert.equal(measureContext(ctx), pack(ctx).length, JSON.stringify(ctx).slice(0, 60))
  assert.equal(measureContext({ a: undefined, b: [undefined] }), pack({ b: [null] }).length, 'undefined: left out of a map, nil in an array')
  const cyclic = { list: /** @type {unknown[]} */ ([]) }
  cyclic.list.push(cyclic)
  class Point { constructor () { this.x = 1 } }
  /** @type {[unknown, RegExp][]} */
  const bad = [
    [nest(MAX_CONTEXT_DEPTH + 1), /nested deeper than 32/], [cyclic, /cycle/], [{ n: 1n }, /bigint/], [{ d: new Date() }, /Date/],
    [{ b: Buffer.from('x') }, /bytes/], [{ f: new Float64Array(1) }, /Float64Array/], [{ n: NaN }, /NaN/], [{ n: -Infinity }, /Infinity/],
    [{ p: new Point() }, /Point/], [{ m: new Map() }, /Map/], [{ s: new Set() }, /Set/], [{ f: () => 1 }, /function/], [{ s: Symbol('x') }, /symbol/],
    [[1], /not a map/], ['s', /not a map/], [null, /not a map/], [new Map(), /not a map/],
  ]
  for (const [ctx, reason] of bad) {
    assert.match(String(measureContext(ctx)), reason)
    assert.equal(codeOf(() => checkContextArgument(ctx)), 'FNBUS_INVALID_ARGUMENT')
  }
  assert.match(String(measureContext({ a: undefined }, Infinity, true)), /extension decoded as undefined/, 'from the wire, undefined is extension 0')
  // measuring stops past the bound: a huge array costs no more than the bound
  const holes = []
  holes.length = 1e9
  assert.ok(Number(measureContext({ holes }, 1000)) > 1000)
  assert.equal(codeOf(() => checkContextArgument({ s: 'x'.repeat(100) }, 50)), 'FNBUS_PAYLOAD_TOO_LARGE')
  assert.equal(checkContextArgument(undefined, 50), undefined)
})

test('a call\'s ctx is checked when it is parsed: FNBUS_BAD_MESSAGE with the reason, FNBUS_PAYLOAD_TOO_LARGE past the limit, the id kept', () => {
  const call = ctx => ({ v: 1, t: 'call', id: 41, fn: 'S/f', it: 'Sync', pk: 1, p: Buffer.alloc(0), ctx })
  const parsed = parseEnvelope(call({ a: [1, 'x'] }), { maxContextBytes: 100 })
  assert.ok(parsed.t === 'call')
  assert.deepEqual(parsed.ctx, { a: [1, 'x'] })
  assert.throws(() => parseEnvelope(call({ a: 10n })), (/** @type {Thrown} */ err) => err.code === 'FNBUS_BAD_MESSAGE' && err.requestId === 41 && /ctx holds a bigint/.test(err.message))
  assert.throws(() => parseEnvelope(call({ s: 'x'.repeat(200) }), { maxContextBytes: 100 }), (/** @type {Thrown} */ err) => err.code === 'FNBUS_PAYLOAD_TOO_LARGE' && err.requestId === 41)
  assert.throws(() => parseEnvelope(call([1])), /malformed field "ctx"/)
  // invoke's ctx follows the same rule; an unknown field named ctx on another type is ignored like any unknown field
  assert.throws(() => parseEnvelope({ v: 1, t: 'invoke', id: 1, fn: 'S/f', it: 'Sync', rid: 'r', dl: 1, pk: 1, p: Buffer.alloc(0), ctx: { d: new Date() } }), /ctx holds/)
  assert.equal(parseEnvelope({ v: 1, t: 'ack', id: 1, ctx: 10n }).t, 'ack')
})

test('idempotency keys are 1 to 256 printable ASCII characters, checked on the wire and as arguments', () => {
  const call = ik => ({ v: 1, t: 'call', id: 5, fn: 'S/f', it: 'Async', pk: 1, p: Buffer.alloc(0), ik })
  for (const good of ['k', '~'.repeat(256), 'auto.AbCdEfGhIjKlMnOp.000000000001', 'order:42/line#7', '{"json":true}']) {
    const parsed = parseEnvelope(call(good))
    assert.ok(parsed.t === 'call')
    assert.equal(parsed.ik, good)
    assert.equal(checkIdempotencyKey(good), good)
  }
  for (const bad of ['', 'x'.repeat(257), 'k'.repeat(300_000), 'with space', 'tab\t', 'é', 'nul\u0000', 42]) {
    assert.throws(() => parseEnvelope(call(bad)), (/** @type {Thrown} */ err) => err.code === 'FNBUS_BAD_MESSAGE' && err.requestId === 5 && err.message.length < 400)
    assert.equal(codeOf(() => checkIdempotencyKey(bad)), 'FNBUS_INVALID_ARGUMENT')
  }
  assert.equal(codeOf(() => checkIdempotencyKey('__proto__')), 'FNBUS_INVALID_ARGUMENT')
})

test('request ids are 1..2^32-1 in every envelope but error; an error echoes any non-negative safe integer it was given', () => {
  for (const t of ['hello', 'status', 'ack']) {
    assert.equal(parseEnvelope({ v: 1, t, id: 2 ** 32 - 1 }).id, 2 ** 32 - 1)
    for (const [id, echoed] of [[0, 0], [2 ** 32, 2 ** 32], [2 ** 53 - 1, 2 ** 53 - 1], [1.5, 0], [-1, 0], [2n ** 64n, 0], ['7', 0]]) {
      assert.throws(() => parseEnvelope({ v: 1, t, id }), (/** @type {Thrown} */ err) => err.code === 'FNBUS_BAD_MESSAGE' && err.requestId === echoed && /"id"/.test(err.message), `${t} ${id}`)
    }
  }
  assert.equal(parseEnvelope({ v: 1, t: 'error', id: 0, code: 'FNBUS_BAD_MESSAGE', msg: 'x' }).id, 0)
  assert.equal(parseEnvelope({ v: 1, t: 'error', id: 2 ** 40, code: 'FNBUS_BAD_MESSAGE', msg: 'x' }).id, 2 ** 40)
})

test('typed arrays and DataViews are payloads of kind 0 holding their own bytes, everywhere a payload or event is encoded', () => {
  const memory = new ArrayBuffer(32)
  new Uint8Array(memory).fill(0xee)
  const f64 = new Float64Array(memory, 8, 1)
  f64[0] = 1.5
  const u16 = new Uint16Array(memory, 2, 2)
  u16.set([1, 2])
  for (const [view, hex] of [[f64, '000000000000f83f'], [u16, '01000200'], [new DataView(memory, 2, 4), '01000200'], [new BigUint64Array([2n ** 64n - 1n]), 'ffffffffffffffff']]) {
    const [kind, bytes] = encodePayload(view)
    assert.equal(kind, PayloadKind.Bytes)
    assert.equal(bytes.toString('hex'), hex)
    assert.equal(encodeEventPayload(view).toString('hex'), hex)
    assert.equal(/** @type {Buffer} */ (Payload.of(view).ownValue).toString('hex'), hex)
  }
  assert.equal(encodePayload(new Uint8Array([1, 2]).buffer)[1].toString('hex'), '0102', 'an ArrayBuffer: its bytes')
  // inside a MessagePack value: a bin of the view's bytes; the value itself is not changed
  const value = { f: f64, list: [u16, 1], set: new Set([u16]), keep: Buffer.from('ab') }
  const decoded = Payload.fromWire(PayloadKind.MsgPack, Payload.of(value).bytes).value
  assert.deepEqual(decoded, { f: Buffer.from('000000000000f83f', 'hex'), list: [Buffer.from('01000200', 'hex'), 1], set: [Buffer.from('01000200', 'hex')], keep: Buffer.from('ab') })
  assert.equal(value.f, f64)
  // a cycle is still the caller's error, as before
  const cyclic = {}
  cyclic.self = cyclic
  assert.equal(codeOf(() => encodePayload(cyclic)), 'FNBUS_INVALID_ARGUMENT')
})
