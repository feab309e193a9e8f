// Fuzzing a real gateway process over raw sockets: random bytes, mutated MQTT frames, random and mutated bus
// envelopes, envelopes whose fields and `ctx` hold every MessagePack type and extension (fast-check, from raw bytes),
// and a worker whose results do. The gateway stays up, keeps its memory, and a well-behaved caller keeps invoking
// throughout. FNBUS_FUZZ_SEED=n replays a run; FNBUS_FUZZ_CONNECTIONS=n runs longer.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import test from 'node:test'
import fc from 'fast-check'
import mqtt from 'mqtt'
import { FCClient } from '../../dist/index.js'
import { packr, unpackr } from '../../dist/protocol/codec.js'
import { seededRandom } from '../../scripts/seeded-random.js'
import { tempDir } from '../helpers.js'
import * as arbitrary from '../msgpack-arbitrary.js'
import { connectFrame, frame, publishFrame, str, subscribeFrame, u16, unsubscribeFrame } from '../mqtt-frames.js'
import { startCli } from './cli.js'

const SEED = Number(process.env.FNBUS_FUZZ_SEED ?? (Date.now() % 2 ** 32))
const CONNECTIONS = Number(process.env.FNBUS_FUZZ_CONNECTIONS ?? 600)

function fuzzer (random) {
  const int = (n) => Math.floor(random() * n)
  const pick = (list) => list[int(list.length)]
  const bytes = (n) => Buffer.from(Array.from({ length: n }, () => int(256)))

  const randomValue = (depth = 0) => {
    switch (int(depth > 3 ? 6 : 9)) {
      case 0: return null
      case 1: return random() < 0.5
      case 2: return int(2 ** 32) - 2 ** 31
      case 3: return random() * 1e6
      case 4: return pick(['', 'Svc/echo', 'Fuzz/x', '__proto__', 'constructor', 'call', 'reg', '\u0000', 'x'.repeat(int(300))])
      case 5: return bytes(int(64))
      case 6: return Array.from({ length: int(4) }, () => randomValue(depth + 1))
      default: return Object.fromEntries(Array.from({ length: int(5) }, () => [pick(['v', 't', 'id', 'fn', 'it', 'pk', 'p', 'to', 'ww', 'ctx', 'ik', 'iid', 'op', 'conc', '__proto__', 'x']), randomValue(depth + 1)]))
    }
  }

  // envelopes a client may send, aimed at functions no one else uses: a mutation may make any of them valid
  const envelopes = () => [
    { v: 1, t: 'hello', id: 1 },
    { v: 1, t: 'call', id: 2, fn: 'Fuzz/x', it: pick(['Sync', 'Async']), pk: 1, p: Buffer.from('x'), to: 50 },
    { v: 1, t: 'reg', id: 3, fn: 'Fuzz/x', conc: 1 },
    { v: 1, t: 'unreg', id: 4, fn: 'Fuzz/x' },
    { v: 1, t: 'result', id: int(100), pk: 1, p: Buffer.from('forged') },
    { v: 1, t: 'cancel', id: 5, iid: 'x' },
    { v: 1, t: 'queue', id: 6, op: 'ls' },
  ]

  const mutate = (buffer) => {
    const out = Buffer.from(buffer)
    switch (int(4)) {
      case 0: for (let k = 0; k < 1 + int(4); k++) out[int(out.length)] = int(256); return out
      case 1: return out.subarray(0, int(out.length))
      case 2: { const at = int(out.length); return Buffer.concat([out.subarray(0, at), bytes(1 + int(16)), out.subarray(at)]) }
      default: return Buffer.concat([out, out.subarray(int(out.length))])
    }
  }

  // envelopes with fields and ctx of every MessagePack type and extension, drawn from one seeded sample
  const typed = fc.sample(fc.array(arbitrary.envelope, { minLength: 1, maxLength: 3 }), { seed: SEED, numRuns: CONNECTIONS })
  const busMessage = () => {
    const roll = random()
    if (roll < 0.3) return packr.pack(randomValue())
    if (roll < 0.6) return mutate(Buffer.concat(Array.from({ length: 1 + int(3) }, () => packr.pack(pick(envelopes())))))
    return Buffer.concat(pick(typed))
  }

  const validFrames = () => [
    publishFrame('fuzz/topic', bytes(int(100))),
    publishFrame('$fn/up', busMessage()),
    publishFrame('$fn/in/someone-else', busMessage()),
    frame(0x32, Buffer.concat([str('fuzz/qos1'), u16(1 + int(1000)), bytes(int(50))])),
    frame(0x34, Buffer.concat([str('fuzz/qos2'), u16(1 + int(1000)), bytes(int(50))])),
    subscribeFrame(1 + int(1000), pick([['fuzz/#'], ['$fn/#'], ['#', '$SYS/#'], ['a/+/b']])),
    unsubscribeFrame(1 + int(1000), ['fuzz/#']),
    Buffer.from([0xc0, 0]), // PINGREQ
    Buffer.from([0x62, 2, 0, 1]), // PUBREL
    Buffer.from([0xe0, 0]), // DISCONNECT
  ]

  /** One connection's worth of bytes. */
  const connectionBytes = () => {
    const clientId = `fuzz-${int(1e9)}`
    switch (int(4)) {
      case 0: return bytes(1 + int(2000))
      case 1: return Buffer.concat([connectFrame({ clientId }), frame(int(256), bytes(int(300)))])
      case 2: return mutate(Buffer.concat([connectFrame({ clientId }), ...Array.from({ length: 1 + int(5) }, () => pick(validFrames()))]))
      default: return Buffer.concat([connectFrame({ clientId }), ...Array.from({ length: 1 + int(8) }, () => random() < 0.3 ? mutate(pick(validFrames())) : pick(validFrames()))])
    }
  }
  return { connectionBytes, busMessage }
}

/** Sends `bytes` in random-sized chunks on a fresh connection; resolves when the gateway closed it or 50 ms passed. */
function fuzzOnce (port, bytes, random) {
  return new Promise(/** @param {(value?: unknown) => void} resolve */ resolve => {
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    socket.resume()
    const done = () => { clearTimeout(timer); socket.destroy(); resolve() }
    const timer = setTimeout(done, 50)
    socket.once('close', done)
    socket.once('connect', () => {
      let at = 0
      while (at < bytes.length) {
        const size = 1 + Math.floor(random() * 600)
        socket.write(bytes.subarray(at, at + size))
        at += size
      }
    })
  })
}

function memoryOf (pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (field) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1])
  return { rss: kb('VmRSS') * 1024, peak: kb('VmHWM') * 1024 }
}

/**
 * A raw worker serving Fuzz/r whose every result holds fuzzed fields: values and errors of any kind and content,
 * fields of any MessagePack type. Resolves with a count of the invocations it answered.
 */
async function fuzzedWorker (t, url) {
  const worker = await mqtt.connectAsync(url, { clientId: 'fuzz-worker', reconnectPeriod: 0 })
  t.after(() => worker.endAsync(true))
  await worker.subscribeAsync('$fn/in/fuzz-worker')
  const answered = { count: 0 }
  worker.on('message', (topic, payload) => {
    let envs
    try {
      envs = unpackr.unpackMultiple(payload)
    } catch {
      return
    }
    for (const env of envs) {
      if (env.t !== 'invoke') continue
      const [result] = fc.sample(arbitrary.result(env.id), { seed: SEED + env.id, numRuns: 1 })
      worker.publish('$fn/up', result)
      answered.count++
    }
  })
  worker.publish('$fn/up', packr.pack({ v: 1, t: 'reg', id: 1, fn: 'Fuzz/r', conc: 8 }))
  return { worker, answered }
}

test(`fuzzed frames and envelopes (seed ${SEED}): the gateway stays up and a caller keeps invoking`, async t => {
  const cwd = await tempDir(t)
  // Fuzz/r's stored invocations are tried once; their results and failures are published as events
  await writeFile(join(cwd, 'fnbus.config.json'), JSON.stringify({
    functions: [{ service: 'Fuzz', function: 'r', timeoutMs: 1000, async: { maxRetries: 0, onSuccess: 'fuzz/ok', onFailure: 'fuzz/failed' } }],
  }))
  const gateway = await startCli(t, ['--memory'], { cwd })
  const worker = new FCClient({ url: gateway.url })
  t.after(() => worker.close())
  await worker.serve('Svc/echo', async event => event)
  const caller = new FCClient({ url: gateway.url })
  t.after(() => caller.close())
  await caller.ready()

  // a well-formed MQTT client whose bus messages are fuzzed: every one is answered in-band, it stays connected
  const random = seededRandom(SEED)
  const { connectionBytes, busMessage } = fuzzer(random)
  const busFuzzer = await mqtt.connectAsync(gateway.url, { clientId: 'bus-fuzzer', reconnectPeriod: 0 })
  t.after(() => busFuzzer.endAsync(true))
  await busFuzzer.subscribeAsync('$fn/in/bus-fuzzer')
  let busAnswers = 0
  busFuzzer.on('message', () => { busAnswers++ })
  const { answered } = await fuzzedWorker(t, gateway.url)
  // calls whose answers are the fuzzed worker's: Sync (the answer reaches this SDK caller) and stored Async ones
  const resultCaller = new FCClient({ url: gateway.url })
  t.after(() => resultCaller.close())
  await resultCaller.ready()
  const resultCalls = []

  let stop = false
  let calls = 0
  const failures = []
  const calling = (async () => {
    while (!stop) {
      try {
        const value = `call ${calls}`
        assert.equal(await caller.invoke('Svc/echo', value, { timeout: 5000 }), value)
        calls++
      } catch (err) {
        failures.push(err)
        if (failures.length > 10) return
      }
    }
  })()

  const started = Date.now()
  const BATCH = 20
  for (let sent = 0; sent < CONNECTIONS; sent += BATCH) {
    await Promise.all(Array.from({ length: BATCH }, () => fuzzOnce(gateway.port, connectionBytes(), random)))
    for (let k = 0; k < 5; k++) busFuzzer.publish('$fn/up', busMessage())
    // whatever the worker answers, the SDK caller gets a value or a coded error
    resultCalls.push(resultCaller.invoke('Fuzz/r', sent, { timeout: 3000 }).then(() => 'value', err => err.code ?? `uncoded: ${err.message}`))
    resultCalls.push(resultCaller.invokeAsync('Fuzz/r', sent).then(() => 'stored', err => err.code ?? `uncoded: ${err.message}`))
  }
  stop = true
  await calling
  const outcomes = await Promise.all(resultCalls)
  t.diagnostic(`seed ${SEED}: ${CONNECTIONS} fuzzed connections and ${CONNECTIONS / 4} fuzzed bus messages in ${Date.now() - started} ms; ${calls} calls answered meanwhile; ${busAnswers} in-band answers; ${answered.count} fuzzed results`)
  // the gateway's own account first: a crash names its cause there
  const lastWords = () => gateway.stderr.split('\n').filter(line => !line.includes('"connection cut by the frame guard"')).join('\n').slice(-3000)
  assert.equal(gateway.child.exitCode, null, `seed ${SEED}: the gateway is still running; its exit code ${gateway.child.exitCode}, stdout ${gateway.stdout.slice(-500)}, stderr:\n${lastWords()}`)
  assert.doesNotMatch(gateway.stderr, /uncaught|unexpected error|TypeError|RangeError/i, `seed ${SEED}: stderr:\n${gateway.stderr.slice(-2000)}`)
  assert.deepEqual(failures.map(err => `${err.code}: ${err.message}`), [], `seed ${SEED}: the well-behaved caller never failed`)
  assert.ok(calls > 50, `seed ${SEED}: the caller kept invoking (${calls} calls)`)
  assert.deepEqual(outcomes.filter(o => o.startsWith('uncoded')), [], `seed ${SEED}: every answer to a fuzzed result is a value or a coded error`)
  assert.ok(answered.count > 0, 'the fuzzed worker answered')
  assert.ok(busFuzzer.connected, `seed ${SEED}: bad envelopes are answered in-band, never by cutting the connection`)
  assert.ok(busAnswers > 0)
  const fresh = new FCClient({ url: gateway.url })
  t.after(() => fresh.close())
  assert.equal(await fresh.invoke('Svc/echo', 'after the fuzz'), 'after the fuzz')
})

test('frames declaring 256 MB cost the gateway process less than a few MB', async t => {
  const gateway = await startCli(t, ['--memory'], { cwd: await tempDir(t) })
  const worker = new FCClient({ url: gateway.url })
  t.after(() => worker.close())
  await worker.serve('Svc/echo', async event => event)
  const caller = new FCClient({ url: gateway.url })
  t.after(() => caller.close())
  for (let i = 0; i < 200; i++) await caller.invoke('Svc/echo', 'warm-up')
  const pid = gateway.child.pid
  const before = memoryOf(pid)

  const BOMBS = 10
  for (let i = 0; i < BOMBS; i++) {
    await new Promise(resolve => {
      const socket = connect(gateway.port, '127.0.0.1')
      socket.on('error', () => {})
      // reading is how a socket learns of the gateway's reset once everything it wrote is in the kernel
      socket.resume()
      socket.once('close', resolve)
      socket.once('connect', () => {
        socket.write(connectFrame({ clientId: `bomb-${i}` }))
        // PUBLISH declaring a remaining length of 268,435,455 bytes, then the first MB of it
        socket.write(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]))
        socket.write(Buffer.alloc(1024 * 1024, 0x61))
      })
    })
  }
  const after = memoryOf(pid)
  const peakGrowth = after.peak - before.peak
  const rssGrowth = after.rss - before.rss
  t.diagnostic(`${BOMBS} frames declaring 256 MB (1 MB of each sent): gateway peak RSS +${(peakGrowth / 1048576).toFixed(2)} MB, RSS +${(rssGrowth / 1048576).toFixed(2)} MB (from ${(before.rss / 1048576).toFixed(1)} MB)`)
  assert.ok(peakGrowth < 4 * 1048576, `peak RSS grew by ${peakGrowth} bytes`)
  assert.equal(await caller.invoke('Svc/echo', 'still here'), 'still here')
})
