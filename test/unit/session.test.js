// The bus side of a connection: what it cannot encode it answers with a coded error (never throws into the code
// that handed it over: a timer, another worker's answer); what its peer does not read it bounds.
import assert from 'node:assert/strict'
import { PassThrough } from 'node:stream'
import test from 'node:test'
import { Session } from '../../dist/broker/session.js'
import { Dispatcher } from '../../dist/dispatcher/index.js'
import { decodeMessage, parseFunctionName, Payload } from '../../dist/protocol/index.js'

const silent = { debug () {}, info () {}, warn () {}, error () {} }

/** A connection whose written frames are kept (MQTT PUBLISH frames: the envelopes follow the topic). */
function fakeClient (id = 'peer') {
  const conn = new PassThrough()
  const written = []
  conn.write = (chunk) => { written.push(chunk); return true }
  return { id, conn, written }
}

function envelopesOf (written) {
  return written.flatMap(frame => {
    // fixed header 0x30, remaining length (varint), topic length, topic, then the envelopes
    let i = 1
    while (frame[i] & 0x80) i++
    i++
    const topicLength = frame.readUInt16BE(i)
    return decodeMessage(frame.subarray(i + 2 + topicLength))
  })
}

function session (client, dispatcher, extra = {}) {
  return new Session(client, { maxPayloadBytes: 1024 * 1024, maxBufferedBytes: 8 * 1024 * 1024, dispatcher, subject: '$anonymous', logger: silent, onLimit () {}, ...extra })
}

test('an invocation whose context cannot be encoded is refused to the dispatcher, not thrown', async () => {
  const dispatcher = new Dispatcher({ maxQueuedCalls: 10, defaultTimeoutMs: 1000, maxTimeoutMs: 10_000 })
  const client = fakeClient()
  const worker = session(client, dispatcher)
  const fn = parseFunctionName('Svc/fn')
  dispatcher.register(fn, worker, 1)
  const cyclic = []
  cyclic.push(cyclic)
  const outcomes = []
  const caller = { alive: true, settle: o => outcomes.push(o) }
  assert.doesNotThrow(() => dispatcher.call({ fn, type: 'Sync', payload: Payload.of('x'), context: { cyclic }, timeoutMs: undefined, waitForWorkerMs: undefined }, caller))
  await new Promise(resolve => setImmediate(resolve))
  assert.equal(outcomes[0]?.error?.code, 'FNBUS_INVALID_ARGUMENT')
  assert.match(outcomes[0].error.message, /cannot be encoded/)
})

test("an in-process handler's answer that cannot be encoded reaches a remote caller as the function's unhandled error", async () => {
  const dispatcher = new Dispatcher({ maxQueuedCalls: 10, defaultTimeoutMs: 1000, maxTimeoutMs: 10_000 })
  const client = fakeClient()
  const caller = session(client, dispatcher)
  const cyclic = {}
  cyclic.self = cyclic
  /** @type {import('../../dist/dispatcher/index.js').Outcome} */
  const answer = { ok: true, get payload () { return Payload.of(cyclic) } }
  const port = caller.caller(7)
  caller.inFlight = 1
  assert.doesNotThrow(() => port.settle(answer))
  await new Promise(resolve => process.nextTick(resolve))
  const [reply] = envelopesOf(client.written)
  assert.equal(reply.t, 'reply')
  assert.equal(reply.id, 7)
  assert.equal(reply.fe, 'Unhandled')
  assert.match(reply.p.toString(), /cannot be encoded/)
})

test('a peer that does not read: congested from half the bound (no invocations), cut past it', () => {
  const dispatcher = new Dispatcher({ maxQueuedCalls: 10, defaultTimeoutMs: 1000, maxTimeoutMs: 10_000 })
  const client = fakeClient()
  let buffered = 0
  Object.defineProperty(client.conn, 'writableLength', { get: () => buffered })
  let cut = false
  client.conn.destroy = () => { cut = true; return client.conn }
  const limits = []
  const peer = session(client, dispatcher, { maxBufferedBytes: 1000, onLimit: limit => limits.push(limit) })
  buffered = 400
  peer.send({ v: 1, t: 'ack', id: 1 })
  peer.flush()
  assert.equal(peer.congested, false)
  buffered = 600
  peer.send({ v: 1, t: 'ack', id: 2 })
  peer.flush()
  assert.equal(peer.congested, true)
  buffered = 1200
  peer.send({ v: 1, t: 'ack', id: 3 })
  peer.flush()
  assert.equal(cut, true)
  assert.equal(peer.alive, false)
  assert.deepEqual(limits, ['maxBufferedBytesPerClient'])
})
