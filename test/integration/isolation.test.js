// The $fn/ namespace belongs to the gateway: nobody sees or answers another client's bus traffic.
import assert from 'node:assert/strict'
import test from 'node:test'
import mqtt from 'mqtt'
import { packr, unpackr } from '../../dist/protocol/codec.js'
import { connectClient, startGateway, waitFor } from '../helpers.js'

async function rawClient (t, gw, clientId) {
  const client = await mqtt.connectAsync(gw.url, { clientId, clean: true, reconnectPeriod: 0 })
  t.after(() => client.endAsync())
  return client
}

/** A raw client's bus envelopes from its inbox, decoded. */
function inboxOf (client, clientId) {
  const seen = []
  client.on('message', (topic, payload) => {
    // the gateway may batch several envelopes into one message
    if (topic === `$fn/in/${clientId}`) seen.push(...unpackr.unpackMultiple(payload))
  })
  return seen
}

/** MQTT.js rejects a subscription the broker refused (SUBACK 0x80). */
async function refused (client, filter) {
  const err = await client.subscribeAsync(filter).then(() => null, e => e)
  return err !== null && err.name === 'ErrorWithSubackPacket'
}

test('a # or $fn/# subscriber sees none of the bus traffic', async t => {
  const gw = await startGateway(t)
  const spy = await rawClient(t, gw, 'spy')
  const grantedAll = await spy.subscribeAsync('#')
  assert.equal(grantedAll[0].qos, 0)
  assert.ok(await refused(spy, '$fn/#'), 'subscribing to the whole bus namespace is refused')
  assert.ok(await refused(spy, '$fn/in/victim'), "subscribing to another client's inbox is refused")
  assert.ok(await refused(spy, '$fn/+/victim'))
  const seen = []
  spy.on('message', topic => seen.push(topic))

  const worker = await connectClient(t, gw, { clientId: 'victim' })
  await worker.serve('Secret/fn', async event => `secret answer to ${event}`)
  const caller = await connectClient(t, gw)
  assert.equal(await caller.invoke('Secret/fn', 'q'), 'secret answer to q')
  await caller.publish('plain/event', 'visible')
  await waitFor(() => seen.includes('plain/event'), 2000, 'the ordinary event')
  assert.deepEqual(seen, ['plain/event'], 'only the ordinary event was seen')
})

test('a client may subscribe to its own inbox', async t => {
  const gw = await startGateway(t)
  const client = await rawClient(t, gw, 'me1')
  const granted = await client.subscribeAsync('$fn/in/me1')
  assert.equal(granted[0].qos, 0)
})

test('only the worker that got a call can answer it; a forged or second reply is ignored', async t => {
  const gw = await startGateway(t)
  // a raw worker, speaking the protocol by hand
  const worker = await rawClient(t, gw, 'rawworker')
  await worker.subscribeAsync('$fn/in/rawworker')
  const workerInbox = inboxOf(worker, 'rawworker')
  worker.publish('$fn/up', packr.pack({ v: 1, t: 'reg', id: 1, fn: 'Svc/target', conc: 1 }))
  await waitFor(() => workerInbox.some(e => e.t === 'ack'), 2000, 'registration ack')

  const caller = await connectClient(t, gw)
  const answer = caller.invoke('Svc/target', 'payload', { timeout: 3000 })
  const invoke = await waitFor(() => workerInbox.find(e => e.t === 'invoke'), 2000, 'the invocation')

  // an intruder that guesses the delivery id
  const intruder = await rawClient(t, gw, 'intruder')
  intruder.publish('$fn/up', packr.pack({ v: 1, t: 'result', id: invoke.id, pk: 1, p: Buffer.from('forged') }))
  await new Promise(resolve => setTimeout(resolve, 100))
  worker.publish('$fn/up', packr.pack({ v: 1, t: 'result', id: invoke.id, pk: 1, p: Buffer.from('genuine') }))
  assert.equal(await answer, 'genuine')

  // a second reply to the same delivery does not leak into the next call
  const next = caller.invoke('Svc/target', 'second', { timeout: 3000 })
  await waitFor(() => workerInbox.filter(e => e.t === 'invoke').length === 2, 2000, 'the second invocation')
  worker.publish('$fn/up', packr.pack({ v: 1, t: 'result', id: invoke.id, pk: 1, p: Buffer.from('stale') }))
  const second = workerInbox.filter(e => e.t === 'invoke')[1]
  await new Promise(resolve => setTimeout(resolve, 50))
  worker.publish('$fn/up', packr.pack({ v: 1, t: 'result', id: second.id, pk: 1, p: Buffer.from('fresh') }))
  assert.equal(await next, 'fresh')
})

test('bus errors are answered in-band and the connection stays open', async t => {
  const gw = await startGateway(t)
  const client = await rawClient(t, gw, 'sloppy')
  await client.subscribeAsync('$fn/in/sloppy')
  const inbox = inboxOf(client, 'sloppy')
  client.publish('$fn/up', Buffer.from('not msgpack at all \xc1'))
  client.publish('$fn/up', packr.pack({ v: 1, t: 'call', id: 5, fn: 'S/f', it: 'Sync' }))
  client.publish('$fn/up', packr.pack({ v: 2, t: 'hello', id: 6 }))
  client.publish('$fn/up', packr.pack({ v: 1, t: 'welcome', id: 7, gw: 'x', maxPayload: 1, maxFrame: 2 }))
  client.publish('$fn/in/someone', packr.pack({ v: 1, t: 'hello', id: 8 }))
  client.publish('$fn/up', packr.pack({ v: 1, t: 'call', id: 9, fn: 'bad name/f', it: 'Sync', pk: 1, p: Buffer.from('x') }))
  await waitFor(() => inbox.length === 6, 2000, 'six error answers')
  assert.deepEqual(inbox.map(e => [e.t, e.id, e.code]), [
    ['error', 0, 'FNBUS_BAD_MESSAGE'],
    ['error', 5, 'FNBUS_BAD_MESSAGE'],
    ['error', 6, 'FNBUS_PROTOCOL_MISMATCH'],
    ['error', 7, 'FNBUS_BAD_MESSAGE'],
    ['error', 0, 'FNBUS_NOT_AUTHORIZED'],
    ['error', 9, 'FNBUS_INVALID_ARGUMENT'],
  ])
  assert.match(inbox[1].msg, /lacks field "pk"/)
  assert.ok(client.connected, 'still connected')
  client.publish('$fn/up', packr.pack({ v: 1, t: 'hello', id: 10 }))
  const welcome = await waitFor(() => inbox.find(e => e.t === 'welcome'), 2000, 'welcome')
  assert.equal(welcome.id, 10)
  assert.equal(welcome.maxPayload, 1024 * 1024)
})

test('several envelopes in one MQTT message are all answered', async t => {
  const gw = await startGateway(t)
  await gw.serve('Svc/echo', async e => e)
  const client = await rawClient(t, gw, 'batcher')
  await client.subscribeAsync('$fn/in/batcher')
  const inbox = inboxOf(client, 'batcher')
  const batch = Buffer.concat([1, 2, 3].map(id => packr.pack({ v: 1, t: 'call', id, fn: 'Svc/echo', it: 'Sync', pk: 1, p: Buffer.from(`m${id}`) })))
  client.publish('$fn/up', batch)
  await waitFor(() => inbox.length === 3, 2000, 'three replies')
  assert.deepEqual(inbox.map(e => [e.t, e.id, e.p.toString()]).sort(), [['reply', 1, 'm1'], ['reply', 2, 'm2'], ['reply', 3, 'm3']])
})

test('a client whose protocol version the gateway does not speak gets FNBUS_PROTOCOL_MISMATCH', async t => {
  const gw = await startGateway(t)
  const client = await rawClient(t, gw, 'future')
  await client.subscribeAsync('$fn/in/future')
  const inbox = inboxOf(client, 'future')
  client.publish('$fn/up', packr.pack({ v: 99, t: 'call', id: 1, fn: 'S/f', it: 'Sync', pk: 1, p: Buffer.alloc(0), newField: 1 }))
  const err = await waitFor(() => inbox.find(e => e.t === 'error'), 2000, 'error')
  assert.equal(err.code, 'FNBUS_PROTOCOL_MISMATCH')
  assert.match(err.msg, /version 99/)
})
