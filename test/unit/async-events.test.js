// The pieces of the async engine that need no store: the backoff between attempts, and the onSuccess/onFailure
// events' JSON.
import assert from 'node:assert/strict'
import test from 'node:test'
import { MAX_RETRY_DELAY_MS, retryDelay } from '../../dist/dispatcher/async-options.js'
import { describePayload, eventJson } from '../../dist/dispatcher/destinations.js'
import { Payload, PayloadKind } from '../../dist/protocol/index.js'

test('retryDelay: between half and all of base·2^(attempt−1), never above the cap', () => {
  for (let i = 0; i < 200; i++) {
    const first = retryDelay(1000, 1)
    assert.ok(first >= 500 && first <= 1000, String(first))
    const third = retryDelay(1000, 3)
    assert.ok(third >= 2000 && third <= 4000, String(third))
    const late = retryDelay(1000, 30)
    assert.ok(late >= MAX_RETRY_DELAY_MS / 2 && late <= MAX_RETRY_DELAY_MS, String(late))
  }
})

test('event JSON: BigInt as decimal text, bytes as base64, a value JSON cannot hold as base64 with the reason', () => {
  assert.equal(eventJson({ n: 2n ** 64n }), '{"n":"18446744073709551616"}')
  assert.deepEqual(describePayload(Payload.of('text')), { payload: 'text' })
  assert.deepEqual(describePayload(Payload.of(Buffer.from([1, 2, 3]))), { payload: 'AQID', payloadEncoding: 'base64' })
  // an array of two that ends after one
  const described = describePayload(Payload.fromWire(PayloadKind.MsgPack, Buffer.from([0x92, 0x01])))
  assert.equal(described.payload, 'kgE=')
  assert.equal(described.payloadEncoding, 'base64')
  assert.equal(/** @type {{ code?: string }} */ (described.payloadError)?.code, 'FNBUS_BAD_MESSAGE')
})
