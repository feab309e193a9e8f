// JetStream's answers to an accept's publish (src/cluster/acked-publisher.ts), as fnbus' codes (storeError): a PubAck,
// a duplicate, a full stream (per subject and whole), a 503 with no JetStream answering, an answer that is no PubAck.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parsePubAck } from '../../dist/cluster/acked-publisher.js'
import { storeError } from '../../dist/cluster/async-streams.js'

/**
 * A NATS message as nats.js hands it over: the body, and for a status the headers' code (what parsePubAck reads of it).
 * @param {string} body
 * @param {number} [code]
 * @returns {import('@nats-io/transport-node').Msg}
 */
const msg = (body, code) => /** @type {any} */ ({ data: new TextEncoder().encode(body), headers: code === undefined ? undefined : { code, description: 'No Responders' } })
const mapped = body => {
  try {
    parsePubAck(typeof body === 'string' ? msg(body) : body)
  } catch (err) {
    return storeError(err, 'the invocation could not be stored').code
  }
  return 'stored'
}

test('a PubAck is the stream\'s sequence, duplicate or not', () => {
  assert.deepEqual(parsePubAck(msg('{"stream":"FNBUS_ASYNC","seq":42}')), { stream: 'FNBUS_ASYNC', seq: 42, duplicate: false })
  assert.deepEqual(parsePubAck(msg('{"stream":"FNBUS_ASYNC","seq":42,"duplicate":true}')), { stream: 'FNBUS_ASYNC', seq: 42, duplicate: true })
})

test('JetStream\'s refusals as fnbus\' codes', () => {
  assert.equal(mapped('{"error":{"code":503,"err_code":10077,"description":"maximum messages per subject exceeded"}}'), 'FNBUS_QUEUE_FULL')
  assert.equal(mapped('{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}'), 'FNBUS_QUEUE_FULL')
  assert.equal(mapped('{"error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}'), 'FNBUS_STORE_FAILURE')
  assert.equal(mapped(msg('', 503)), 'FNBUS_STORE_FAILURE')
  assert.equal(mapped('{"stream":"","seq":0}'), 'FNBUS_STORE_FAILURE')
  assert.equal(mapped('{}'), 'FNBUS_STORE_FAILURE')
})
