// Connections that have not logged in yet have a budget of their own (limits.maxPendingConnections), so that idle
// sockets cannot fill limits.maxConnections and keep real clients out: a newcomer takes the place of the oldest
// connection that has not sent its CONNECT yet.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, createServer } from 'node:net'
import { test } from 'node:test'
import { Aedes } from 'aedes'
import mqtt from 'mqtt'
import { attachFunctionBus } from '../../dist/index.js'
import { hashSecret } from '../../dist/security/credentials.js'
import { portOf, startGateway, waitFor } from '../helpers.js'
import { connectFrame, rawSocket, within } from '../mqtt-frames.js'

/** Opens `count` TCP connections that never send a byte; resolves once each is connected (or already closed). */
async function idleSockets (t, port, count) {
  const sockets = []
  t.after(() => { for (const socket of sockets) socket.destroy() })
  await Promise.all(Array.from({ length: count }, () => new Promise(resolve => {
    const socket = connect({ port, host: '127.0.0.1' })
    socket.on('error', () => {})
    socket.once('connect', resolve)
    socket.once('close', resolve)
    sockets.push(socket)
  })))
  return sockets
}

test('a thousand idle sockets do not keep real logins out', async t => {
  const identities = { alice: { hash: await hashSecret('alice-secret', { ln: 12, r: 8, p: 1 }) } }
  const gw = await startGateway(t, { identities })
  const shed = []
  gw.events.on('rejected', o => shed.push(o.reason))
  const idle = await idleSockets(t, gw.port, 1000)
  const logins = await Promise.all(Array.from({ length: 27 }, async (_, i) => {
    const client = mqtt.connect(gw.url, { clientId: `alice.${i}`, username: 'alice', password: 'alice-secret', reconnectPeriod: 0, connectTimeout: 4000 })
    t.after(() => client.end(true))
    return await new Promise(resolve => {
      client.once('connect', () => resolve('accepted'))
      client.once('error', err => resolve(err.message))
      client.once('close', () => resolve('closed'))
    })
  }))
  assert.deepEqual(logins, Array(27).fill('accepted'), 'every real login got in, at its first attempt')
  // limits.maxConnections (1000) would have been full; the idle ones hold at most limits.maxPendingConnections
  await waitFor(() => gw.bus.connections <= 128 + 27, 5000, 'the idle sockets within their budget')
  assert.ok(shed.filter(reason => reason === 'max_pending_connections').length >= 1000 - 128, 'the displaced idle sockets are counted')
  assert.ok(idle.filter(socket => !socket.destroyed).length <= 128)
})

test('when every pending connection is logging in, a newcomer is closed at once; a place frees when a login ends', async t => {
  // a host program whose own authenticate hook takes its time: its users stay pending while it decides
  const held = []
  const aedes = await Aedes.createBroker({ authenticate (client, username, password, callback) { held.push(callback) } })
  const bus = attachFunctionBus(aedes, { limits: { maxPendingConnections: 3 } })
  const server = createServer(bus.handle)
  const sockets = new Set()
  server.on('connection', socket => sockets.add(socket))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(async () => {
    for (const socket of sockets) socket.destroy()
    await bus.close()
    await new Promise(resolve => aedes.close(() => resolve(undefined)))
    await new Promise(resolve => server.close(() => resolve(undefined)))
  })
  const port = portOf(server)
  const logging = []
  for (let i = 0; i < 3; i++) {
    const raw = await rawSocket(t, port)
    raw.socket.write(connectFrame({ clientId: `slow-${i}` }))
    logging.push(raw)
  }
  await waitFor(() => held.length === 3, 5000, 'three logins with the host hook')
  const newcomer = await rawSocket(t, port)
  assert.ok(await within(newcomer.closed, 3000), 'no place: closed at once')
  assert.equal(logging.filter(raw => raw.socket.destroyed).length, 0, 'the logins under way were not displaced')

  held.shift()(null, true)
  await waitFor(() => logging[0].received().length >= 4, 5000, 'the first login accepted')
  const next = await rawSocket(t, port)
  next.socket.write(connectFrame({ clientId: 'next' }))
  await waitFor(() => held.length === 3, 5000, 'the freed place taken')
  assert.equal(next.socket.destroyed, false)
})

test('limits.maxPendingConnections and limits.maxPendingLoginsPerAddress are validated; connectTimeoutMs defaults to 5 s', async () => {
  const { normalizeBusOptions, DEFAULT_LIMITS } = await import('../../dist/options.js')
  assert.throws(() => normalizeBusOptions({ limits: { maxPendingConnections: 0 } }), /limits.maxPendingConnections must be an integer ≥ 1/)
  assert.throws(() => normalizeBusOptions({ limits: { maxPendingLoginsPerAddress: 1.5 } }), /limits.maxPendingLoginsPerAddress must be an integer ≥ 1/)
  assert.equal(DEFAULT_LIMITS.connectTimeoutMs, 5000)
  assert.equal(DEFAULT_LIMITS.maxPendingConnections, 128)
  assert.equal(DEFAULT_LIMITS.maxPendingLoginsPerAddress, 32)
})
