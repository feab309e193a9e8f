// A subscriber that stops reading costs the gateway a bounded buffer and loses its own messages; it never holds back
// the others (aedes would stall every delivery for its 60 s drain timeout), measured on a real gateway process.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import test from 'node:test'
import mqtt from 'mqtt'
import { waitFor } from '../helpers.js'
import { connectFrame, publishFrame, rawSocket, subscribeFrame } from '../mqtt-frames.js'
import { startCli } from './cli.js'

/** The process's resident memory now and at its peak, from /proc. */
function memoryOf (pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = name => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rss: kb('VmRSS') * 1024, peak: kb('VmHWM') * 1024 }
}

const MESSAGES = 3000
const PAYLOAD = Buffer.alloc(64 * 1024, 0x2a)

test('a # subscriber that never reads: a bystander subscriber gets all 3,000 messages at once, the gateway RSS stays bounded', async t => {
  const gateway = await startCli(t, ['--memory', '--log-level', 'warn'])
  const frozen = await rawSocket(t, gateway.port)
  frozen.socket.write(Buffer.concat([connectFrame({ clientId: 'frozen' }), subscribeFrame(1, ['#'])]))
  // CONNACK (4 bytes) and SUBACK (5 bytes), then it reads no more
  await waitFor(() => frozen.received().length >= 9, 5000, 'the frozen subscriber\'s SUBACK')
  frozen.socket.pause()

  const reader = await mqtt.connectAsync(gateway.url, { clientId: 'reader', reconnectPeriod: 0 })
  t.after(() => reader.endAsync(true))
  await reader.subscribeAsync('load/#')
  let received = 0
  reader.on('message', () => { received++ })
  const publisher = await mqtt.connectAsync(gateway.url, { clientId: 'publisher', reconnectPeriod: 0 })
  t.after(() => publisher.endAsync(true))

  const before = memoryOf(gateway.child.pid)
  const started = performance.now()
  for (let i = 0; i < MESSAGES; i++) {
    // the reader shares this process with the publisher: keep it within 40 messages (2.5 MiB) of the publisher, as a
    // subscriber that keeps up is; past limits.maxEventBufferBytes it would lose messages itself
    if (i - received > 40) await waitFor(() => i - received <= 40, 20_000, `the reader to keep up (message ${i})`)
    await publisher.publishAsync('load/x', PAYLOAD)
  }
  await waitFor(() => received === MESSAGES, 30_000, `all ${MESSAGES} messages at the reader`)
  const seconds = (performance.now() - started) / 1000
  const after = memoryOf(gateway.child.pid)
  const peakGrowth = after.peak - before.rss
  t.diagnostic(`${MESSAGES} × 64 KiB past a frozen # subscriber: the reader had them all after ${seconds.toFixed(2)} s; ` +
    `gateway RSS ${(before.rss / 1048576).toFixed(1)} MB → peak ${(after.peak / 1048576).toFixed(1)} MB (+${(peakGrowth / 1048576).toFixed(1)} MB) for ${(MESSAGES * PAYLOAD.length / 1048576).toFixed(0)} MB published`)
  assert.ok(seconds < 20, `the reader waited ${seconds.toFixed(1)} s`)
  // limits.maxEventBufferBytes (8 MiB) waits for the frozen subscriber; the rest is the traffic in transit
  // relaying the same traffic to the reader alone grows the peak by ~51 MB here; without the bound the frozen
  // subscriber's buffer takes the whole 188 MB (+199 MB measured)
  assert.ok(peakGrowth < 96 * 1048576, `gateway peak RSS grew ${(peakGrowth / 1048576).toFixed(1)} MB`)
})

test('a subscriber leaving during a burst of 50,000 PUBLISHes does not crash the gateway', async t => {
  // aedes' router queued messages past a hundred in flight; with their subscriber gone, each queued message completed
  // inside the completion of the one before, and the stack overflowed: the gateway exited 1
  const gateway = await startCli(t, ['--memory', '--log-level', 'warn'])
  const leaving = await rawSocket(t, gateway.port)
  leaving.socket.write(Buffer.concat([connectFrame({ clientId: 'leaving' }), subscribeFrame(1, ['burst'])]))
  await waitFor(() => leaving.received().length >= 9, 5000, 'the SUBACK')
  const publisher = await rawSocket(t, gateway.port)
  publisher.socket.write(connectFrame({ clientId: 'burster' }))
  await waitFor(() => publisher.received().length >= 4, 5000, 'the CONNACK')
  const one = publishFrame('burst', 'x')
  publisher.socket.write(Buffer.concat(Array.from({ length: 50_000 }, () => one)))
  leaving.socket.destroy()

  const bystander = await mqtt.connectAsync(gateway.url, { clientId: 'bystander', reconnectPeriod: 0 })
  t.after(() => bystander.endAsync(true))
  await bystander.subscribeAsync('after')
  const got = new Promise(resolve => bystander.once('message', (topic, payload) => resolve(payload.toString())))
  await bystander.publishAsync('after', 'still here')
  assert.equal(await got, 'still here')
  assert.equal(gateway.child.exitCode, null, gateway.stderr)
})
