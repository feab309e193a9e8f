// The login queue's turns (sources served one after the other, a bound per source, abandoned checks dropped), the
// key it queues addresses under, and the owners of client ids.
import assert from 'node:assert/strict'
import test from 'node:test'
import { LoginAbandoned, LoginQueue, LoginQueueFull, sourceOf } from '../../dist/security/login-queue.js'
import { ClientIdOwners } from '../../dist/security/client-ids.js'

/** A task that ends when `release()` is called, recording its name when it starts. */
function gate (started, name) {
  let release
  const done = new Promise(resolve => { release = resolve })
  return { task: () => { started.push(name); return done }, release: () => release(name) }
}

test('sources are served in turn, two checks at a time, each source with its own bound', async () => {
  const queue = new LoginQueue(2, 3)
  const started = []
  const gates = {}
  const run = (source, name) => {
    gates[name] = gate(started, name)
    return queue.run(source, gates[name].task)
  }
  const a = ['a1', 'a2', 'a3', 'a4', 'a5'].map(name => run('A', name))
  const b = run('B', 'b1')
  // a1 and a2 run; a3, a4, a5 wait (3, the bound); a sixth from A is refused at once, B still gets in line
  await assert.rejects(run('A', 'a6'), err => err instanceof LoginQueueFull && err.source === 'A' && err.limit === 3)
  assert.deepEqual(started, ['a1', 'a2'])
  assert.equal(queue.waiting, 4)
  gates.a1.release()
  await a[0]
  await new Promise(resolve => setImmediate(resolve))
  assert.deepEqual(started, ['a1', 'a2', 'a3'], 'A was first in line')
  gates.a2.release()
  await a[1]
  await new Promise(resolve => setImmediate(resolve))
  assert.deepEqual(started, ['a1', 'a2', 'a3', 'b1'], 'then B, before the rest of A')
  for (const name of ['a3', 'b1', 'a4', 'a5']) gates[name].release()
  assert.deepEqual(await Promise.all([...a, b]), ['a1', 'a2', 'a3', 'a4', 'a5', 'b1'])
})

test('a check whose connection left before its turn is dropped, and gives its place back', async () => {
  const queue = new LoginQueue(1, 2)
  const started = []
  const first = gate(started, 'first')
  const running = queue.run('A', first.task)
  let gone = false
  const leaving = queue.run('A', gate(started, 'leaving').task, () => gone)
  const staying = gate(started, 'staying')
  const kept = queue.run('A', staying.task)
  gone = true
  // A is at its bound, but the check of a connection that left makes room
  const another = gate(started, 'another')
  const late = queue.run('A', another.task)
  await assert.rejects(leaving, LoginAbandoned)
  first.release()
  await running
  await new Promise(resolve => setImmediate(resolve))
  assert.deepEqual(started, ['first', 'staying'])
  staying.release()
  another.release()
  assert.deepEqual(await Promise.all([kept, late]), ['staying', 'another'])
  await assert.rejects(queue.run('A', async () => 'never', () => true), LoginAbandoned)
})

test('a failing check frees its turn', async () => {
  const queue = new LoginQueue(1, 5)
  await assert.rejects(queue.run('A', async () => { throw new Error('scrypt failed') }), /scrypt failed/)
  assert.equal(await queue.run('A', async () => 'next'), 'next')
})

test('sources: IPv4 as it is (mapped too), IPv6 by its /64, no address as one source', () => {
  assert.equal(sourceOf('192.0.2.7'), '192.0.2.7')
  assert.equal(sourceOf('::ffff:192.0.2.7'), '192.0.2.7')
  assert.equal(sourceOf('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64')
  assert.equal(sourceOf('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64')
  assert.equal(sourceOf('2001:db8::1'), '2001:db8:0:0::/64')
  assert.equal(sourceOf('::1'), '0:0:0:0::/64')
  assert.equal(sourceOf('fe80::1%eth0'), 'fe80:0:0:0::/64')
  assert.equal(sourceOf(undefined), 'local')
})

test('client ids: held while claimed, kept by a persistent session (in its store), freed by a clean one', async () => {
  const records = new Map([['restored', 'carol']])
  const store = {
    entries: () => records.entries(),
    put: async (id, owner) => { records.set(id, owner) },
    delete: async id => { records.delete(id) },
  }
  const owners = new ClientIdOwners(store)
  await owners.open()
  assert.equal(owners.ownerOf('restored'), 'carol', 'read back from the store')
  assert.equal(owners.ownerOf('free'), undefined)

  const first = owners.claim('device', 'alice')
  const second = owners.claim('device', 'alice') // alice takes over her own session
  assert.equal(owners.ownerOf('device'), 'alice')
  first.release()
  first.release() // idempotent
  assert.equal(owners.ownerOf('device'), 'alice', 'the second connection still holds it')
  await second.keep(true)
  assert.equal(records.get('device'), 'alice')
  second.release()
  assert.equal(owners.ownerOf('device'), 'alice', 'the persistent session keeps it')

  const clean = owners.claim('device', 'alice')
  await clean.keep(false)
  assert.equal(records.has('device'), false, 'a clean session ended the persistent one')
  clean.release()
  assert.equal(owners.ownerOf('device'), undefined)
})
