// A worker written by hand, as in another language (docs/protocol.md), may keep its connection alive with bus
// messages alone: MQTT's keep-alive counts every control packet [MQTT-3.1.2-23], PUBLISHes to $fn/up included.
import assert from 'node:assert/strict'
import test from 'node:test'
import mqttPacket from 'mqtt-packet'
import { packr, unpackr } from '../../dist/protocol/codec.js'
import { startGateway } from '../helpers.js'
import { connectFrame, publishFrame, rawSocket, subscribeFrame, within } from '../mqtt-frames.js'

const KEEPALIVE_S = 1
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function rawClient (t, gw, clientId) {
  const raw = await rawSocket(t, gw.port)
  raw.socket.write(connectFrame({ clientId, keepalive: KEEPALIVE_S }))
  raw.socket.write(subscribeFrame(1, [`$fn/in/${clientId}`]))
  return raw
}

/** The ids of the `welcome` envelopes among the PUBLISHes to `inbox` in what the gateway sent. */
function welcomes (bytes, inbox) {
  const ids = []
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  parser.on('packet', packet => {
    if (packet.cmd !== 'publish' || packet.topic !== inbox) return
    for (const env of unpackr.unpackMultiple(/** @type {Buffer} */ (packet.payload))) if (env.t === 'welcome') ids.push(env.id)
  })
  parser.parse(bytes)
  return ids
}

test('a connection that sends only $fn/up messages stays open past its keep-alive; a silent one is closed', async t => {
  const gw = await startGateway(t)
  const busy = await rawClient(t, gw, 'raw-busy')
  const silent = await rawClient(t, gw, 'raw-silent')
  // aedes closes a connection silent for 1.5 × keep-alive; run well past that, one hello every 300 ms
  let id = 0
  const until = Date.now() + 2600
  while (Date.now() < until) {
    busy.socket.write(publishFrame('$fn/up', packr.pack({ v: 1, t: 'hello', id: ++id, sdk: 'raw/1' })))
    await sleep(300)
  }
  assert.equal(await within(silent.closed, 1000), true, 'the silent connection was closed for its keep-alive')
  assert.equal(await within(busy.closed, 10), false, 'the connection that sent bus messages is open')
  // and it was answered all along
  busy.socket.write(publishFrame('$fn/up', packr.pack({ v: 1, t: 'hello', id: ++id, sdk: 'raw/1' })))
  await sleep(100)
  const answered = welcomes(busy.received(), '$fn/in/raw-busy')
  assert.ok(answered.includes(id), `the last hello (${id}) was answered; answered: ${answered.join(',')}`)
  assert.ok(answered.length >= id - 1, `every hello was answered (${answered.length} of ${id})`)
})
