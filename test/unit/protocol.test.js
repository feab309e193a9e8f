import assert from 'node:assert/strict'
import test from 'node:test'
import {
  checkEventFilter, checkEventTopic, decodeMessage, encodeEnvelope, encodeMessage, envelope, parseEnvelope,
  parseFunctionId, parseFunctionName, functionAddress, Payload, PayloadKind, topicMatches, isBusTopic, packr,
} from '../../dist/protocol/index.js'

const codeOf = fn => { try { fn() } catch (err) { return err.code } return 'no error' }

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
  assert.throws(() => parseEnvelope(raw), err => err.code === 'FNBUS_PROTOCOL_MISMATCH' && err.requestId === 9)
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
    assert.throws(() => parseEnvelope({ v: 1, t, id: 1 }), err => err.code === 'FNBUS_BAD_MESSAGE' && err.message.length < 200, `t = ${typeof t}`)
  }
  for (const v of [2n ** 64n - 1n, [1, 2, 3], 'one']) {
    assert.throws(() => parseEnvelope({ v, t: 'ack', id: 1 }), err => err.code === 'FNBUS_PROTOCOL_MISMATCH' && err.message.length < 200)
  }
})
