// The bus's envelope handlers without a broker or a socket: one switch takes the envelope types a client may send and
// refuses every other one in-band; each handler answers through the session.
import assert from 'node:assert/strict'
import { PassThrough } from 'node:stream'
import test from 'node:test'
import { BusContext } from '../../dist/broker/context.js'
import { handleBusMessage, handleEnvelope } from '../../dist/broker/handlers/index.js'
import { GatewayEvents } from '../../dist/observations.js'
import { normalizeBusOptions } from '../../dist/options.js'
import { decodeMessage, encodeMessage, envelope, UP_TOPIC } from '../../dist/protocol/index.js'
/** @import { Client } from 'aedes' */
/** @import { Envelope } from '../../dist/protocol/index.js' */
/** @import { Thrown } from '../helpers.js' */

const silent = { debug () {}, info () {}, warn () {}, error () {} }

/** A bus context over no broker, and a client whose written frames are kept. */
function harness (t, options = {}) {
  const ctx = new BusContext(/** @type {any} */ ({}), normalizeBusOptions({ logger: silent, ...options }), new GatewayEvents(() => {}))
  t.after(() => ctx.async.close())
  const conn = new PassThrough()
  const written = []
  conn.write = (chunk) => { written.push(chunk); return true }
  const client = /** @type {Client} */ (/** @type {unknown} */ ({ id: 'peer', conn, closed: false }))
  /** Envelopes written to the client so far, once the tick's batch has left. */
  const answers = async () => {
    await new Promise(resolve => setImmediate(resolve))
    return written.flatMap(frame => {
      let i = 1
      while (frame[i] & 0x80) i++
      i++
      return decodeMessage(frame.subarray(i + 2 + frame.readUInt16BE(i)))
    })
  }
  return { ctx, client, answers, send: envs => handleBusMessage(ctx, client, publish(UP_TOPIC, encodeMessage(envs))) }
}

/**
 * A QoS 0 PUBLISH packet as aedes hands it to the bus.
 * @param {string} topic
 * @param {Buffer} payload
 * @returns {import('aedes').PublishPacket}
 */
function publish (topic, payload) {
  return { cmd: 'publish', qos: 0, dup: false, retain: false, topic, payload }
}

test('hello is answered with the gateway version and the limits the SDK checks payloads against', async (t) => {
  const { send, answers } = harness(t, { limits: { maxPayloadBytes: 4096 } })
  send([envelope({ t: 'hello', id: 3 })])
  const [welcome] = await answers()
  assert.equal(welcome.t, 'welcome')
  assert.equal(welcome.id, 3)
  assert.equal(welcome.maxPayload, 4096)
  assert.equal(typeof welcome.gw, 'string')
})

test('an envelope type only the gateway sends is refused in-band with FNBUS_BAD_MESSAGE, naming the type', async (t) => {
  const { ctx, client, answers } = harness(t)
  const session = ctx.sessionOf(client)
  /** @type {[number, Envelope['t']][]} */
  const gatewayOnly = [[4, 'welcome'], [5, 'invoke'], [6, 'reply'], [7, 'accepted'], [8, 'ack']]
  for (const [id, t] of gatewayOnly) {
    // @ts-expect-error an envelope of a type only the gateway sends, with none of its fields: refused before they are read
    assert.throws(() => handleEnvelope(ctx, session, { v: 2, t, id }), (/** @type {Thrown} */ err) => err.code === 'FNBUS_BAD_MESSAGE' && err.requestId === id && err.message.includes(t))
  }
  // through the message path the refusal is an error envelope, and the envelopes after it are still handled
  handleBusMessage(ctx, client, publish(UP_TOPIC, encodeMessage([envelope({ t: 'ack', id: 4 }), envelope({ t: 'hello', id: 1 })])))
  const [error, welcome] = await answers()
  assert.deepEqual([error.t, error.id, error.code], ['error', 4, 'FNBUS_BAD_MESSAGE'])
  assert.deepEqual([welcome.t, welcome.id], ['welcome', 1])
})

test('a bus message on another $fn/ topic than the up topic is refused with FNBUS_NOT_AUTHORIZED', async (t) => {
  const { ctx, client, answers } = harness(t)
  handleBusMessage(ctx, client, publish('$fn/elsewhere', encodeMessage([envelope({ t: 'hello', id: 1 })])))
  const [error] = await answers()
  assert.equal(error.t, 'error')
  assert.equal(error.code, 'FNBUS_NOT_AUTHORIZED')
})

test('a call to a function nobody serves is answered FNBUS_FUNCTION_NOT_FOUND, and the session is free again', async (t) => {
  const { ctx, client, send, answers } = harness(t)
  send([envelope({ t: 'call', id: 9, fn: 'Svc/missing', it: 'Sync', pk: 0, p: Buffer.alloc(0) })])
  const [error] = await answers()
  assert.equal(error.t, 'error')
  assert.equal(error.id, 9)
  assert.equal(error.code, 'FNBUS_FUNCTION_NOT_FOUND')
  assert.equal(ctx.sessionOf(client).inFlight, 0)
})

test('reg and unreg are acknowledged, and the registration is what the dispatcher sees', async (t) => {
  const { ctx, send, answers } = harness(t)
  send([envelope({ t: 'reg', id: 1, fn: 'Svc/fn', conc: 2 })])
  assert.deepEqual(ctx.dispatcher.stats().map(f => f.name), ['Svc/fn'])
  send([envelope({ t: 'unreg', id: 2, fn: 'Svc/fn' })])
  assert.deepEqual((await answers()).map(a => [a.t, a.id]), [['ack', 1], ['ack', 2]])
})

test('under a policy, status is refused to an identity without a manage grant', async (t) => {
  const policy = [{ identity: '$anonymous', allow: { invoke: ['*'] } }]
  const { send, answers } = harness(t, { policy })
  send([envelope({ t: 'status', id: 2 })])
  const [error] = await answers()
  assert.equal(error.code, 'FNBUS_NOT_AUTHORIZED')
  assert.equal(error.id, 2)
})
