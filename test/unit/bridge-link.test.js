// The bridge's link (src/bridge/remote-link.ts) against stand-ins for its connections, on mock time: backoff with
// jitter and its cap, failures passed on, a connection that keeps dropping, a clean close. The connection itself
// (remote-client.ts) is tested on real sockets in bridge-remote-client.test.js.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RemoteLink } from '../../dist/bridge/remote-link.js'

/** A connection as the link uses it: started, ended, its events told by the test. */
class FakeClient {
  ended = false
  started = false
  buffered = 0
  constructor (events) { this.events = events }
  start () { this.started = true }
  publish () {}
  subscribe () {}
  async end () { this.ended = true }
  /** The events the real connection calls. */
  emit (event, ...args) {
    if (event === 'connect') this.events.connected()
    if (event === 'close') this.events.closed(...(args.length > 0 ? args : ['unreachable', 'the connection closed before the remote broker accepted it']))
  }
}

const timersMocked = new WeakSet()

function harness (t, options = {}) {
  if (!timersMocked.has(t)) t.mock.timers.enable({ apis: ['setTimeout'] })
  timersMocked.add(t)
  /** @type {FakeClient[]} */
  const clients = []
  /** @type {[string, string][]} */
  const downs = []
  let ups = 0
  const link = new RemoteLink({
    url: 'mqtt://remote',
    client: { clientId: 'x', keepaliveSec: 60, clean: false, connectTimeoutMs: 10_000, maxPacketBytes: 1 << 20 },
    minDelayMs: 100,
    maxDelayMs: 1000,
    stableMs: 5000,
    random: () => 1,
    connect: (_url, _options, events) => { const c = new FakeClient(events); clients.push(c); return c },
    onUp: () => { ups++ },
    onMessage: (_message, done) => done(),
    onDown: (failure, detail) => downs.push([failure, detail]),
    ...options,
  })
  t.after(() => link.close())
  return { link, clients, downs, ups: () => ups }
}

const turn = () => new Promise(resolve => setImmediate(resolve))

test('an unreachable broker is retried with the pause doubling up to its cap', async t => {
  const { link, clients, downs } = harness(t)
  link.start()
  await turn()
  assert.equal(link.state, 'connecting')
  const delays = []
  for (let i = 0; i < 6; i++) {
    const client = clients[i]
    assert.equal(client?.started, true)
    client?.emit('close', 'unreachable', 'connect ECONNREFUSED 127.0.0.1:1')
    delays.push(link.nextDelayMs)
    assert.equal(link.state, 'waiting')
    // not before its pause…
    t.mock.timers.tick(link.nextDelayMs === 100 ? 0 : 1)
    await turn()
    t.mock.timers.tick(1000)
    await turn()
  }
  assert.equal(clients.length, 7)
  assert.deepEqual(delays, [200, 400, 800, 1000, 1000, 1000])
  assert.equal(downs.length, 6)
  assert.deepEqual(downs[0], ['unreachable', 'connect ECONNREFUSED 127.0.0.1:1'])
  assert.equal(link.failures, 6)
})

test('jitter: the pause is between half and all of the backoff', async t => {
  let random = 0
  const { link, clients } = harness(t, { random: () => random })
  link.start()
  await turn()
  clients[0]?.emit('close')
  // random 0: half of 100 ms
  t.mock.timers.tick(49)
  await turn()
  assert.equal(clients.length, 1)
  t.mock.timers.tick(1)
  await turn()
  assert.equal(clients.length, 2)
  random = 1
  clients[1]?.emit('close')
  t.mock.timers.tick(199)
  await turn()
  assert.equal(clients.length, 2)
  t.mock.timers.tick(1)
  await turn()
  assert.equal(clients.length, 3)
})

test('failures are passed on as the connection names them', async t => {
  const { link, clients, downs } = harness(t)
  link.start()
  const cases = [['refused_bad_credentials', 'bad user name or password'], ['refused_identifier', 'client id'], ['timeout', 'no CONNACK'], ['protocol', 'a malformed PUBLISH']]
  for (const [kind, detail] of cases) {
    await turn()
    clients.at(-1)?.emit('close', kind, detail)
    assert.equal(link.lastFailure, kind)
    assert.equal(link.lastError, detail)
    t.mock.timers.tick(1000)
  }
  assert.deepEqual(downs.map(([kind]) => kind), cases.map(([kind]) => kind))
})

test('a connection that keeps dropping right after it is made is reported as such; a lasting one resets the backoff', async t => {
  const { link, clients, downs, ups } = harness(t)
  link.start()
  for (let i = 0; i < 3; i++) {
    await turn()
    const client = clients.at(-1)
    client?.emit('connect')
    assert.equal(link.connected, true)
    client?.emit('close', 'dropped', 'the remote broker closed the connection')
    t.mock.timers.tick(1000)
  }
  assert.equal(ups(), 3)
  assert.equal(link.connects, 3)
  assert.deepEqual(downs.map(([kind]) => kind), ['dropped', 'dropped', 'keeps_dropping'])
  assert.match(downs[2]?.[1] ?? '', /dropped 3 times in a row within 5000 ms of connecting \(is the client id in use elsewhere\?\)/)
  // short connections do not reset the backoff: 100 → 200 → 400 → 800
  assert.equal(link.nextDelayMs, 800)

  const steady = harness(t, { stableMs: 0 })
  steady.link.start()
  await turn()
  steady.clients[0]?.emit('close')
  t.mock.timers.tick(1000)
  await turn()
  steady.clients[1]?.emit('connect')
  steady.clients[1]?.emit('close', 'dropped', 'the remote broker closed the connection')
  // the connection lasted (stableMs 0): the next pause starts from the first again
  assert.equal(steady.link.nextDelayMs, 200)
  assert.equal(steady.downs[1]?.[0], 'dropped')
})

test('close: no more attempts, the client ended; events of an old client are ignored', async t => {
  const { link, clients, downs } = harness(t)
  link.start()
  await turn()
  const first = clients[0]
  first?.emit('connect')
  await link.close()
  assert.equal(link.state, 'closed')
  assert.equal(first?.ended, true)
  first?.emit('close')
  t.mock.timers.tick(10_000)
  await turn()
  assert.equal(clients.length, 1)
  assert.equal(downs.length, 0)
  // started after close: nothing
  link.start()
  await turn()
  assert.equal(clients.length, 1)
})
