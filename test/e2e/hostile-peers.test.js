// A gateway process under peers that misbehave on purpose or by bug: it stays up, keeps serving a bystander, and
// its resident memory stays within the bounds `limits` documents. Each case reproduces an attack that stopped or
// swelled the gateway before.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'node:test'
import mqtt from 'mqtt'
import { Packr } from 'msgpackr'
import { FCClient } from '../../dist/index.js'
import { decodeMessage } from '../../dist/protocol/index.js'
import { packr } from '../../dist/protocol/codec.js'
import { tempDir, waitFor } from '../helpers.js'
import { rawSocket, connectFrame, publishFrame, subscribeFrame } from '../mqtt-frames.js'
import { startCli } from './cli.js'

const MiB = 1024 * 1024

/** The gateway process's resident memory, from the kernel. */
function rss (pid) {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(match?.[1]) * 1024
}

async function gatewayWith (t, config = {}) {
  const dir = await tempDir(t)
  const file = join(dir, 'fnbus.config.json')
  await writeFile(file, JSON.stringify(config))
  const gateway = await startCli(t, ['--memory', '--config', file], { cwd: dir })
  t.after(() => gateway.child.kill('SIGKILL'))
  return gateway
}

function client (t, gateway, options = {}) {
  const fc = new FCClient({ url: gateway.url, ...options })
  t.after(() => fc.close())
  return fc
}

/** A bystander's call completes, quickly: the gateway is up and its event loop free. */
async function assertServing (t, gateway) {
  const bystander = client(t, gateway)
  await bystander.ready()
  const started = Date.now()
  assert.equal(await bystander.invoke('Bystander/echo', 'still here', { timeout: 5000 }), 'still here')
  const ms = Date.now() - started
  assert.ok(ms < 1000, `the bystander's call took ${ms} ms`)
  assert.equal(gateway.child.exitCode, null, 'the gateway process is running')
}

async function echoWorker (t, gateway) {
  const worker = client(t, gateway)
  await worker.serve('Bystander/echo', async event => event)
  return worker
}

/** A raw MQTT.js client speaking the bus by hand: what a worker in another language, or an attacker, sends. */
async function rawBusClient (t, gateway, clientId) {
  const conn = mqtt.connect(gateway.url, { clientId, reconnectPeriod: 0 })
  t.after(() => conn.end(true))
  await new Promise((resolve, reject) => { conn.once('connect', resolve); conn.once('error', reject) })
  const inbox = []
  conn.on('message', (_topic, payload) => inbox.push(...decodeMessage(payload)))
  await conn.subscribeAsync(`$fn/in/${clientId}`)
  return { conn, inbox, send: bytes => conn.publish('$fn/up', bytes) }
}

test('a queued call whose invoker context cannot be encoded again does not stop the gateway when a timer hands it on', async t => {
  const gateway = await gatewayWith(t)
  await echoWorker(t, gateway)
  const worker = client(t, gateway)
  await worker.serve('Slow/fn', () => new Promise(() => {}), { concurrency: 1 })
  const raw = await rawBusClient(t, gateway, 'ctx-attacker')
  const cyclic = []
  cyclic.push(cyclic)
  const structured = new Packr({ structuredClone: true, useRecords: false })
  const bigExt = new Packr({ useBigIntExtension: true, useRecords: false })
  // arrays nested 3,000 deep, as raw MessagePack bytes
  const deep = Buffer.concat([Buffer.alloc(3000, 0x91), Buffer.from([0xc0])])
  // the first call takes the one slot and times out; the others wait behind it
  raw.send(packr.pack({ v: 1, t: 'call', id: 1, fn: 'Slow/fn', it: 'Sync', to: 300, pk: 1, p: Buffer.from('x') }))
  raw.send(structured.pack({ v: 1, t: 'call', id: 2, fn: 'Slow/fn', it: 'Sync', to: 5000, ctx: { loop: cyclic }, pk: 1, p: Buffer.from('x') }))
  raw.send(bigExt.pack({ v: 1, t: 'call', id: 3, fn: 'Slow/fn', it: 'Sync', to: 5000, ctx: { big: 2n ** 70n }, pk: 1, p: Buffer.from('x') }))
  // a map with a `ctx` of 3,000 nested arrays: fixmap of 8 entries, ctx last
  const head = packr.pack({ v: 1, t: 'call', id: 4, fn: 'Slow/fn', it: 'Sync', to: 5000, pk: 1, p: Buffer.from('x') })
  raw.send(Buffer.concat([Buffer.from([head[0] + 1]), head.subarray(1), packr.pack('ctx'), Buffer.from([0x81]), packr.pack('deep'), deep]))
  await waitFor(() => raw.inbox.some(e => e.id === 1), 5000, 'the first call to time out')
  assert.equal(raw.inbox.find(e => e.id === 1).code, 'FNBUS_TIMEOUT')
  await new Promise(resolve => setTimeout(resolve, 300))
  assert.equal(gateway.child.exitCode, null, `the gateway is up\n${gateway.stderr}`)
  // each bad call was refused (at arrival, or at the latest when it was to be handed on), none left waiting for nothing
  await waitFor(() => [2, 3, 4].every(id => raw.inbox.some(e => e.id === id)), 8000, 'an answer to every bad call')
  for (const id of [2, 3, 4]) {
    const answer = raw.inbox.find(e => e.id === id)
    assert.equal(answer.t, 'error', `call ${id}: ${JSON.stringify(answer)}`)
    assert.match(answer.code, /^FNBUS_(BAD_MESSAGE|INVALID_ARGUMENT|PAYLOAD_TOO_LARGE|TIMEOUT)$/)
  }
  await assertServing(t, gateway)
})

test('onSuccess events of results JSON cannot hold (a BigInt, a cycle) are built safely; the gateway stays up', async t => {
  const gateway = await gatewayWith(t, {
    functions: [{ service: 'Odd', function: 'results', async: { onSuccess: 'results/odd' } }],
  })
  await echoWorker(t, gateway)
  const events = []
  const listener = client(t, gateway)
  await listener.subscribe('results/#', (_topic, payload) => events.push(JSON.parse(payload.toString())))
  // a worker in another language: answers `big` with a MessagePack uint64, `cycle` with msgpackr's structured clone
  const raw = await rawBusClient(t, gateway, 'odd-worker')
  const cyclic = []
  cyclic.push(cyclic)
  const answers = {
    big: Buffer.from([0xcf, 0x00, 0x20, 0, 0, 0, 0, 0, 0x01]), // 2^53 + 1
    cycle: new Packr({ structuredClone: true, useRecords: false }).pack({ loop: cyclic }),
  }
  raw.conn.on('message', (_topic, payload) => {
    for (const env of decodeMessage(payload)) {
      if (env.t !== 'invoke') continue
      raw.send(packr.pack({ v: 1, t: 'result', id: env.id, pk: 2, p: answers[/** @type {'big' | 'cycle'} */ (String(env.p))] }))
    }
  })
  raw.send(packr.pack({ v: 1, t: 'reg', id: 1, fn: 'Odd/results', conc: 4 }))
  await waitFor(() => raw.inbox.some(e => e.t === 'ack'), 5000, 'the registration')
  const caller = client(t, gateway)
  const big = await caller.invokeAsync('Odd/results', 'big')
  const cycle = await caller.invokeAsync('Odd/results', 'cycle')
  await waitFor(() => events.length >= 2, 8000, 'both onSuccess events')
  const byId = Object.fromEntries(events.map(e => [e.invocationId, e]))
  assert.equal(byId[big.invocationId].payload, '9007199254740993', 'a BigInt is written as its decimal string')
  const odd = byId[cycle.invocationId]
  assert.equal(odd.payloadEncoding, 'base64')
  assert.equal(odd.payloadError.code, 'FNBUS_BAD_MESSAGE')
  assert.deepEqual(Buffer.from(odd.payload, 'base64'), answers.cycle, 'the bytes the worker sent, untouched')
  await assertServing(t, gateway)
})

test('a client that sends calls and never reads the answers is cut at its buffer bound; the gateway does not swell', async t => {
  const gateway = await gatewayWith(t, { limits: { maxBufferedBytesPerClient: 16 * MiB } })
  await echoWorker(t, gateway)
  const worker = client(t, gateway)
  const answer = Buffer.alloc(MiB, 7)
  await worker.serve('Big/answer', async () => answer, { concurrency: 64 })
  await new Promise(resolve => setTimeout(resolve, 200))
  const before = rss(gateway.child.pid)
  const raw = await rawSocket(t, gateway.port)
  raw.socket.write(connectFrame({ clientId: 'never-reads' }))
  await waitFor(() => raw.received().length >= 4, 3000, 'CONNACK')
  raw.socket.pause() // from here on it reads nothing
  const calls = []
  for (let id = 1; id <= 1000; id++) calls.push(packr.pack({ v: 1, t: 'call', id, fn: 'Big/answer', it: 'Sync', pk: 1, p: Buffer.from('x') }))
  for (let i = 0; i < calls.length; i += 50) raw.socket.write(publishFrame('$fn/up', Buffer.concat(calls.slice(i, i + 50))))
  let peak = 0
  const watch = setInterval(() => { peak = Math.max(peak, rss(gateway.child.pid)) }, 20)
  t.after(() => clearInterval(watch))
  await gateway.waitFor(/connection cut: it does not read what the gateway writes to it/, { timeoutMs: 20_000 })
  await new Promise(resolve => setTimeout(resolve, 500))
  clearInterval(watch)
  const grown = peak - before
  t.diagnostic(`gateway RSS grew by ${(grown / MiB).toFixed(1)} MiB at its peak`)
  // before the bound: +1 GB. Now: the bound (16 MiB) plus answers in flight and allocator slack
  assert.ok(grown < 200 * MiB, `the gateway grew by ${(grown / MiB).toFixed(0)} MiB`)
  await assertServing(t, gateway)
})

test('a registration flood is bounded per connection, and the departure of a worker with many registrations is quick', async t => {
  const gateway = await gatewayWith(t)
  await echoWorker(t, gateway)
  const raw = await rawBusClient(t, gateway, 'reg-flood')
  const regs = []
  for (let id = 1; id <= 5000; id++) regs.push(packr.pack({ v: 1, t: 'reg', id, fn: `Flood/f${id}`, conc: 1 }))
  for (let i = 0; i < regs.length; i += 500) raw.send(Buffer.concat(regs.slice(i, i + 500)))
  await waitFor(() => raw.inbox.length >= 5000, 20_000, 'an answer to every registration')
  const refused = raw.inbox.filter(e => e.t === 'error')
  assert.equal(raw.inbox.filter(e => e.t === 'ack').length, 1024, 'limits.maxRegistrationsPerClient (1024 by default)')
  assert.equal(refused.length, 5000 - 1024)
  assert.match(refused[0].msg, /maxRegistrationsPerClient/)
  raw.conn.end(true)
  await assertServing(t, gateway)
})

test("calls waiting for a worker that never comes are dropped with the caller's connection", async t => {
  const gateway = await gatewayWith(t)
  await echoWorker(t, gateway)
  await new Promise(resolve => setTimeout(resolve, 200))
  const before = rss(gateway.child.pid)
  const raw = await rawSocket(t, gateway.port)
  raw.socket.write(connectFrame({ clientId: 'waits-then-leaves' }))
  raw.socket.write(subscribeFrame(1, ['$fn/in/waits-then-leaves']))
  const payload = Buffer.alloc(MiB - 1024, 1)
  for (let id = 1; id <= 100; id++) {
    raw.socket.write(publishFrame('$fn/up', packr.pack({ v: 1, t: 'call', id, fn: `Nobody/f${id % 7}`, it: 'Sync', ww: 600_000, to: 600_000, pk: 0, p: payload })))
  }
  // past 16 MiB of waiting payloads the connection's calls are refused: it holds no more than that
  await waitFor(() => raw.received().includes('maxQueuedBytesPerClient'), 10_000, 'the per-connection bound')
  const held = rss(gateway.child.pid) - before
  t.diagnostic(`waiting calls hold ${(held / MiB).toFixed(1)} MiB of the gateway's RSS`)
  assert.ok(held < 120 * MiB, `waiting calls hold ${(held / MiB).toFixed(0)} MiB`)
  raw.socket.destroy()
  await assertServing(t, gateway)
  const status = await client(t, gateway).status()
  assert.deepEqual(status.functions.filter(f => f.name.startsWith('Nobody/')), [], 'nothing waits for the departed caller')
})
