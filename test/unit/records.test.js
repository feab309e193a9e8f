import assert from 'node:assert/strict'
import test from 'node:test'
import { pack, packr, unpackr } from '../../dist/protocol/index.js'
import {
  deadRecord, decodeIdempotencyEntry, decodeRecord, encodeIdempotencyEntry, encodeRecord, newRecord, rescheduledRecord, revivedRecord, toInvocation,
} from '../../dist/store/records.js'

// Stores written before records had a codec of their own hold msgpackr's bytes; records are now the bus's own
// MessagePack (msgpackr's, with integers beyond 32 bits as integers rather than float64): both must read back.
const fresh = [
  newRecord({ fn: 'S/f', payloadKind: 0, payload: Buffer.alloc(64, 1), createdAt: 1732000000000 }, '0.1.AbCdEfGhIjKlMnOp', 1),
  newRecord({ fn: 'Plant/fragile', payloadKind: 1, payload: Buffer.from('é'.repeat(40)), createdAt: Date.now(), idempotencyKey: 'k'.repeat(40), context: { custom: { a: [1, 2.5, null], b: 'ü' } } },
    'z.2s.0123456789abcdef', 2 ** 40),
  newRecord({ fn: 'S/big', payloadKind: 2, payload: Buffer.alloc(70_000, 3), createdAt: 0, context: {} }, 'id', Number.MAX_SAFE_INTEGER),
]

test('records and idempotency entries are the bytes the bus codec writes, decode back, and so do msgpackr\'s older bytes', () => {
  const stored = toInvocation(fresh[1])
  const records = [
    ...fresh,
    rescheduledRecord(stored, { code: 'FNBUS_TIMEOUT', message: 'too slow' }, Date.now() + 1000),
    deadRecord(stored, { code: 'FNBUS_FUNCTION_ERROR', message: 'Unhandled: ' + 'x'.repeat(300) }, Date.now(), true),
  ]
  records.push(revivedRecord(records[4], 99, Date.now()))
  for (const record of records) {
    const bytes = encodeRecord(record)
    assert.deepEqual(bytes, pack(record), `record ${record.id} (${Object.keys(record).join(' ')})`)
    assert.deepEqual(decodeRecord(bytes), record)
    assert.deepEqual(decodeRecord(bytes), unpackr.unpack(bytes), 'read as msgpackr reads it')
    assert.deepEqual(decodeRecord(Buffer.from(packr.pack(record))), record, 'a record an older store holds (times as float64)')
  }
  for (const entry of [{ id: '0.1.AbCdEfGhIjKlMnOp', exp: Date.now() + 86_400_000 }, { id: 'x', exp: 0 }]) {
    assert.deepEqual(encodeIdempotencyEntry(entry), pack(entry))
    assert.deepEqual(decodeIdempotencyEntry(encodeIdempotencyEntry(entry)), entry)
  }
  // a map of 16 fields and more (map16) reads the same
  const wide = { ...fresh[0], ...Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`x${i}`, i])) }
  assert.deepEqual(decodeRecord(packr.pack(wide)), wide)
})

test('records encoded one after another stay intact: each is a view no later record writes over', () => {
  const encoded = []
  for (let i = 0; i < 2000; i++) {
    const record = newRecord({ fn: 'S/f', payloadKind: 0, payload: Buffer.alloc(100 + (i % 50), i & 0xff), createdAt: i }, `id${i}`, i + 1)
    encoded.push([record, encodeRecord(record)])
  }
  for (const [record, bytes] of encoded) assert.deepEqual(bytes, pack(record))
})

test('a context MessagePack cannot hold is the caller\'s error: FNBUS_INVALID_ARGUMENT', () => {
  const cyclic = {}
  cyclic.self = cyclic
  for (const context of /** @type {Record<string, unknown>[]} */ ([{ big: 2n ** 70n }, cyclic])) {
    assert.throws(() => encodeRecord(newRecord({ fn: 'S/f', payloadKind: 0, payload: Buffer.alloc(1), createdAt: 0, context }, 'id', 1)),
      { code: 'FNBUS_INVALID_ARGUMENT' })
  }
})
