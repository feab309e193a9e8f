// The wire contract as a peer in another language meets it, through a real gateway and raw MQTT clients writing
// hand-made MessagePack: what an invoker context may hold, how long an idempotency key may be, the range of request
// ids, and integers that stay integers both ways.
import assert from 'node:assert/strict'
import test from 'node:test'
import mqtt from 'mqtt'
import { pack, unpackr } from '../../dist/protocol/index.js'
import { connectClient, defined, startGateway, waitFor } from '../helpers.js'
import { runCli } from '../e2e/cli.js'

/** A raw MQTT client on the bus: what it receives, decoded, and a way to send hand-made bytes. */
async function rawBus (t, gw, clientId) {
  const client = await mqtt.connectAsync(gw.url, { clientId, reconnectPeriod: 0 })
  t.after(() => client.endAsync(true))
  await client.subscribeAsync(`$fn/in/${clientId}`)
  const inbox = []
  const frames = []
  client.on('message', (topic, payload) => {
    frames.push(Buffer.from(payload))
    inbox.push(...unpackr.unpackMultiple(payload))
  })
  return {
    client,
    inbox,
    frames,
    send: bytes => client.publish('$fn/up', bytes),
    answer: (id, what = `the answer to request ${id}`) => waitFor(() => inbox.find(env => env.id === id && env.t !== 'invoke'), 10_000, what),
  }
}

/**
 * A map written field by field, each value either a JavaScript value (packed) or MessagePack bytes as they are.
 * `form`: `fixmap` and `map16` are read by the gateway's own fast reader; `map32` is left to msgpackr (the two paths
 * must apply the same rules).
 */
function mapBytes (fields, form = 'fixmap') {
  const entries = Object.entries(fields)
  const n = entries.length
  const header = form === 'fixmap' ? Buffer.from([0x80 | n]) : form === 'map16' ? Buffer.from([0xde, 0, n]) : Buffer.from([0xdf, 0, 0, 0, n])
  return Buffer.concat([header, ...entries.flatMap(([key, value]) => [pack(key), Buffer.isBuffer(value) && RAW.has(value) ? value : pack(value)])])
}

/** The values mapBytes writes as they are. */
const RAW = new WeakSet()

/**
 * MessagePack bytes to put in a map as they are.
 * @param {number[] | Buffer} bytes
 */
function raw (bytes) {
  const buffer = Buffer.from(bytes)
  RAW.add(buffer)
  return buffer
}

const BIGINT_OVER_64_BITS = raw([0x81, 0xa1, 0x62, 0xc7, 9, 0x42, 1, 0, 0, 0, 0, 0, 0, 0, 0]) // {b: 2^64} as msgpackr's BigInt extension
const SELF_REFERENCING_ARRAY = raw([0x81, 0xa1, 0x61, 0xd6, 0x69, 0, 0, 0, 1, 0x91, 0xd6, 0x70, 0, 0, 0, 1]) // {a: [a]}, structured-clone references
const NESTED_3000_DEEP = raw(Buffer.concat([Buffer.from([0x81, 0xa1, 0x61]), Buffer.alloc(3000, 0x91), Buffer.from([0xc0])]))
const CONTEXT_900_KB = raw(pack({ s: 'x'.repeat(900_000) }))

test('an invoker context that is not JSON-like data, or is too large, is refused when the call arrives, and the gateway keeps serving', async t => {
  const gw = await startGateway(t)
  await gw.serve('Svc/ping', async () => 'pong')
  // the one worker of Svc/busy is held by a call that times out: what a refused call would have waited behind
  /** @type {((value?: unknown) => void) | undefined} */
  let release
  await gw.serve('Svc/busy', () => new Promise(resolve => { release = resolve }), { concurrency: 1 })
  t.after(() => release?.('done'))
  const bystander = await connectClient(t, gw)
  const bus = await rawBus(t, gw, 'ctx-attacker')
  bus.send(mapBytes({ v: 1, t: 'call', id: 1, fn: 'Svc/busy', it: 'Sync', to: 300, pk: 1, p: Buffer.from('first') }))

  /** @type {[string, Buffer, string][]} */
  const cases = [
    ['a BigInt extension beyond 64 bits', BIGINT_OVER_64_BITS, 'FNBUS_BAD_MESSAGE'],
    ['a self-referencing array', SELF_REFERENCING_ARRAY, 'FNBUS_BAD_MESSAGE'],
    ['arrays nested 3000 deep', NESTED_3000_DEEP, 'FNBUS_BAD_MESSAGE'],
    ['a timestamp extension', raw(pack({ d: new Date(0) })), 'FNBUS_BAD_MESSAGE'],
    ['bytes', raw(pack({ b: Buffer.from('x') })), 'FNBUS_BAD_MESSAGE'],
    ['900 KB', CONTEXT_900_KB, 'FNBUS_PAYLOAD_TOO_LARGE'],
  ]
  let id = 10
  /** @type {[number, string, string][]} */
  const expected = []
  for (const [what, ctx, code] of cases) {
    for (const it of ['Sync', 'Async']) {
      for (const form of ['fixmap', 'map32']) {
        bus.send(mapBytes({ v: 1, t: 'call', id: ++id, fn: 'Svc/busy', it, to: 5000, pk: 1, p: Buffer.from('x'), ctx }, form))
        expected.push([id, `${what}, ${it}, ${form}`, code])
      }
    }
  }
  for (const [requestId, what, code] of expected) {
    const answer = await bus.answer(requestId, what)
    assert.equal(answer.t, 'error', `${what}: refused`)
    assert.equal(answer.code, code, `${what}: ${answer.msg}`)
  }
  assert.match(bus.inbox.find(env => env.id === 11).msg, /ctx holds a bigint/)
  assert.equal((await bus.answer(1, 'the call that held the worker')).code, 'FNBUS_TIMEOUT')
  // nothing was queued behind the timed-out call, and nothing stored
  assert.equal(gw.bus.queueStats().find(q => q.fn === 'Svc/busy')?.pending ?? 0, 0)
  assert.equal(await bystander.invoke('Svc/ping'), 'pong')
  assert.ok(bus.client.connected, 'answered in-band, never by cutting the connection')

  // a context within the rule, at the limit's edge, still goes through
  const ctx = { user: 'alice', n: [1, 2.5, -3, 5_000_000_000], ok: true, none: null, deep: { a: { b: { c: 'é' } } } }
  defined(release)('done')
  bus.send(mapBytes({ v: 1, t: 'call', id: 99, fn: 'Svc/ping', it: 'Sync', pk: 1, p: Buffer.from('x'), ctx }))
  assert.equal((await bus.answer(99)).t, 'reply')
})

test('limits.maxContextBytes bounds the context of every call, and the SDK and in-process callers obey the same rule', async t => {
  const gw = await startGateway(t, { limits: { maxContextBytes: 1000 } })
  const seen = []
  await gw.serve('Svc/ctx', async (event, context) => { seen.push(context.invokerContext); return 'ok' })
  const client = await connectClient(t, gw)
  assert.equal(await client.invoke('Svc/ctx', 'x', { context: { s: 'y'.repeat(900) } }), 'ok')
  await assert.rejects(client.invoke('Svc/ctx', 'x', { context: { s: 'y'.repeat(1000) } }), { code: 'FNBUS_PAYLOAD_TOO_LARGE' })
  await assert.rejects(client.invokeAsync('Svc/ctx', 'x', { context: { s: 'y'.repeat(1000) } }), { code: 'FNBUS_PAYLOAD_TOO_LARGE' })
  await assert.rejects(gw.invoke('Svc/ctx', 'x', { context: { s: 'y'.repeat(1000) } }), { code: 'FNBUS_PAYLOAD_TOO_LARGE' })
  await assert.rejects(gw.bus.invokeAsync('Svc/ctx', 'x', { context: { s: 'y'.repeat(1000) } }), { code: 'FNBUS_PAYLOAD_TOO_LARGE' })
  const cyclic = {}
  cyclic.self = cyclic
  let deep = {}
  for (let i = 0; i < 40; i++) deep = { deep }
  // values a context may not hold, and values that are no map
  for (const context of /** @type {Record<string, unknown>[]} */ ([{ big: 2n ** 70n }, { small: 1n }, cyclic, deep, { when: new Date() }, { bytes: Buffer.from('x') }, { nan: NaN }, { f: () => 1 }, ['not', 'a', 'map'], new Map()])) {
    await assert.rejects(client.invoke('Svc/ctx', 'x', { context }), { code: 'FNBUS_INVALID_ARGUMENT' }, 'SDK')
    await assert.rejects(client.invokeAsync('Svc/ctx', 'x', { context }), { code: 'FNBUS_INVALID_ARGUMENT' }, 'SDK Async')
    await assert.rejects(gw.invoke('Svc/ctx', 'x', { context }), { code: 'FNBUS_INVALID_ARGUMENT' }, 'in process')
    await assert.rejects(gw.bus.invokeAsync('Svc/ctx', 'x', { context }), { code: 'FNBUS_INVALID_ARGUMENT' }, 'in process Async')
  }
  assert.equal(seen.length, 1, 'only the context within the rule reached the function')
  assert.equal(await client.invoke('Svc/ctx', 'x'), 'ok', 'the client is still fine')
})

test('idempotency keys: 1 to 256 printable ASCII characters; a 300 KB key and 50 Async calls with 900 KB contexts store nothing', async t => {
  const gw = await startGateway(t)
  const bus = await rawBus(t, gw, 'key-attacker')
  const call = (id, fields) => mapBytes({ v: 1, t: 'call', id, fn: 'Nobody/serves', it: 'Async', pk: 1, p: Buffer.from('x'), ...fields })
  bus.send(call(1, { ik: 'k'.repeat(300_000) }))
  bus.send(call(2, { ik: 'k'.repeat(257) }))
  bus.send(call(3, { ik: 'a key with spaces' }))
  bus.send(call(4, { ik: 'clé' }))
  bus.send(call(5, { ik: '' }))
  for (const id of [1, 2, 3, 4, 5]) {
    const answer = await bus.answer(id)
    assert.equal(answer.code, 'FNBUS_BAD_MESSAGE', `key ${id}: ${answer.msg}`)
    assert.ok(answer.msg.length < 400, 'the message does not quote a long key whole')
  }
  for (let i = 0; i < 50; i++) bus.send(call(100 + i, { ctx: CONTEXT_900_KB }))
  for (let i = 0; i < 50; i++) assert.equal((await bus.answer(100 + i)).code, 'FNBUS_PAYLOAD_TOO_LARGE')
  assert.deepEqual(gw.bus.queueStats().filter(q => q.fn === 'Nobody/serves' && q.pending > 0), [], 'nothing stored')

  bus.send(call(6, { ik: '~'.repeat(256) }))
  bus.send(call(7, { ik: 'auto.AbCdEfGhIjKlMnOp.000000000001' }))
  assert.equal((await bus.answer(6)).t, 'accepted')
  assert.equal((await bus.answer(7)).t, 'accepted')

  const client = await connectClient(t, gw)
  for (const key of ['k'.repeat(257), 'with space', 'é', '']) {
    await assert.rejects(client.invokeAsync('Nobody/serves', 'x', { idempotencyKey: key }), { code: 'FNBUS_INVALID_ARGUMENT' }, key.slice(0, 20))
    await assert.rejects(gw.bus.invokeAsync('Nobody/serves', 'x', { idempotencyKey: key }), { code: 'FNBUS_INVALID_ARGUMENT' }, key.slice(0, 20))
  }
  // the SDK's own keys follow the rule
  assert.ok((await client.invokeAsync('Nobody/serves', 'x')).invocationId)
})

test('request ids are 1..2^32-1; an id out of range is refused with that id echoed whenever it was read as a number', async t => {
  const gw = await startGateway(t)
  await gw.serve('Svc/ping', async () => 'pong')
  const bus = await rawBus(t, gw, 'id-tester')
  const ping = id => mapBytes({ v: 1, t: 'call', id, fn: 'Svc/ping', it: 'Sync', pk: 1, p: Buffer.from('x') })
  bus.send(ping(2 ** 32 - 1))
  const top = await bus.answer(2 ** 32 - 1)
  assert.equal(top.t, 'reply', 'the largest id is answered')

  bus.send(ping(2 ** 32))
  const over = await bus.answer(2 ** 32)
  assert.equal(over.code, 'FNBUS_BAD_MESSAGE', 'an id beyond 32 bits is refused, with that id')
  assert.match(over.msg, /"id" \(an integer from 1 to 4294967295/)

  bus.send(mapBytes({ v: 1, t: 'hello', id: 2 ** 40 }))
  assert.equal((await bus.answer(2 ** 40)).code, 'FNBUS_BAD_MESSAGE')

  // 0 and ids that are not safe integers cannot name a request: refused with id 0
  const before = bus.inbox.length
  bus.send(ping(0))
  bus.send(mapBytes({ v: 1, t: 'call', id: raw([0xcf, 0x00, 0x20, 0, 0, 0, 0, 0, 1]), fn: 'Svc/ping', it: 'Sync', pk: 1, p: Buffer.from('x') })) // 2^53 + 1
  bus.send(ping(-5))
  await waitFor(() => bus.inbox.length >= before + 3, 5000, 'three answers')
  const answers = bus.inbox.slice(before)
  assert.deepEqual(answers.map(env => [env.t, env.id, env.code]), [
    ['error', 0, 'FNBUS_BAD_MESSAGE'], ['error', 0, 'FNBUS_BAD_MESSAGE'], ['error', 0, 'FNBUS_BAD_MESSAGE'],
  ])
  assert.match(answers[0].msg, /"id"/)
})

/** Where a field's value starts in a message holding one envelope (fixstr keys). */
function valueAt (frame, key) {
  const needle = Buffer.concat([Buffer.from([0xa0 | key.length]), Buffer.from(key)])
  const at = frame.indexOf(needle)
  assert.ok(at >= 0, `${key} in the frame`)
  return at + needle.length
}

test('integers travel as MessagePack integers (dl, startedAt) and come back as numbers up to 2^53, BigInt beyond', async t => {
  const gw = await startGateway(t)
  const worker = await rawBus(t, gw, 'raw-worker')
  worker.send(mapBytes({ v: 1, t: 'reg', id: 1, fn: 'Raw/clock', conc: 4 }))
  assert.equal((await worker.answer(1)).t, 'ack')
  const epochMs = 1_732_000_000_123
  // each result's payload: one MessagePack value (kind 2) as another language's library writes it
  const results = {
    epoch: Buffer.from([0xcf, ...bigEndian64(BigInt(epochMs))]),
    negative: Buffer.from([0xd3, ...bigEndian64(BigInt.asUintN(64, -BigInt(epochMs)))]),
    huge: Buffer.from([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
    map: Buffer.from([0x81, 0xa2, 0x74, 0x73, 0xcf, ...bigEndian64(BigInt(epochMs))]),
  }
  worker.client.on('message', (topic, payload) => {
    for (const env of unpackr.unpackMultiple(payload)) {
      if (env.t !== 'invoke') continue
      const p = results[env.p.toString()]
      worker.send(mapBytes({ v: 1, t: 'result', id: env.id, pk: 2, p }))
    }
  })
  const caller = await connectClient(t, gw)
  assert.equal(await caller.invoke('Raw/clock', 'epoch'), epochMs, 'a uint64 epoch-ms arrives as a number')
  assert.equal(await caller.invoke('Raw/clock', 'negative'), -epochMs)
  assert.deepEqual(await caller.invoke('Raw/clock', 'map'), { ts: epochMs })
  assert.equal(await caller.invoke('Raw/clock', 'huge'), 2n ** 64n - 1n, 'beyond 2^53: a BigInt, exact')
  assert.equal(await gw.invoke('Raw/clock', 'epoch'), epochMs, 'in process too')

  // what the worker received: dl as a uint64, not a float64
  const invoke = worker.frames.find(frame => frame.includes(Buffer.from('invoke')))
  assert.equal(invoke[valueAt(invoke, 'dl')], 0xcf, 'dl is a MessagePack uint64')
  // a status answer's startedAt too
  worker.send(mapBytes({ v: 1, t: 'status', id: 2 }))
  const status = await worker.answer(2)
  assert.equal(status.t, 'reply')
  assert.equal(status.p[valueAt(status.p, 'startedAt')], 0xcf, 'startedAt is a MessagePack uint64')
  assert.equal(typeof unpackr.unpack(status.p).startedAt, 'number')

  // the command line prints a BigInt as its decimal digits (JSON has no 64-bit integers)
  await gw.serve('Svc/big', async () => ({ big: 2n ** 64n - 1n, ts: epochMs }))
  const cli = await runCli(t, ['invoke', 'Svc/big'], { env: { FNBUS_URL: gw.url } })
  assert.equal(cli.code, 0, cli.stderr)
  assert.equal(cli.stdout, `{"big":"18446744073709551615","ts":${epochMs}}\n`)
})

function bigEndian64 (n) {
  const buffer = Buffer.alloc(8)
  buffer.writeBigUInt64BE(n)
  return [...buffer]
}
