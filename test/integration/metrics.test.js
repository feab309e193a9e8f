// The metrics plugin: Prometheus text at GET /metrics whose values follow real invocations and connections.
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import test from 'node:test'
import mqtt from 'mqtt'
import metricsPlugin from '../../dist/plugins/metrics/index.js'
import { createGateway } from '../../dist/index.js'
import { connectClient, defined, rejection, startGateway, waitFor } from '../helpers.js'

/** Parses the text exposition into samples: { name, labels, value }. */
function parseMetrics (text) {
  const samples = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    assert.ok(match, `a well-formed sample line: ${line}`)
    const labels = {}
    for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key] = value
    samples.push({ name: match[1], labels, value: Number(match[3]) })
  }
  return samples
}

async function scrape (gw) {
  const response = await fetch(`${gw.httpUrl}/metrics`)
  assert.equal(response.status, 200)
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
  return parseMetrics(await response.text())
}

/** The value of the sample named `name` whose labels include `labels`; 0 when there is none yet. */
function value (samples, name, labels = {}) {
  const found = samples.filter(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  assert.ok(found.length <= 1, `one ${name} sample matches ${JSON.stringify(labels)}, found ${found.length}`)
  return found[0]?.value ?? 0
}

async function gatewayWithMetrics (t, options = {}) {
  return await startGateway(t, { http: { port: 0 }, plugins: { metrics: { processMetrics: false } }, ...options })
}

test('GET /metrics: Sync outcomes ok, handled and timeout counted per function, with latency histograms', async t => {
  const gw = await gatewayWithMetrics(t)
  const worker = await connectClient(t, gw)
  await worker.serve('Metrics/fn', (event, _context, callback) => {
    if (event === 'handled') return callback(new Error('bad input'))
    if (event === 'hang') return // never answers: the call times out
    callback(null, event)
  })
  const caller = await connectClient(t, gw)
  const before = await scrape(gw)
  assert.equal(value(before, 'fnbus_invocations_total', { function: 'Metrics/fn' }), 0)

  await caller.invoke('Metrics/fn', 'one')
  await caller.invoke('Metrics/fn', 'two')
  assert.equal((await rejection(caller.invoke('Metrics/fn', 'handled'))).handled, true)
  assert.equal((await rejection(caller.invoke('Metrics/fn', 'hang', { timeout: 100 }))).code, 'FNBUS_TIMEOUT')
  assert.equal((await rejection(caller.invoke('Metrics/none', 'x'))).code, 'FNBUS_FUNCTION_NOT_FOUND')

  // the caller may give up on the hanging call a moment before the gateway's own deadline fires
  const timedOut = samples => value(samples, 'fnbus_invocations_total', { function: 'Metrics/fn', outcome: 'FNBUS_TIMEOUT' })
  await waitFor(async () => timedOut(await scrape(gw)) === 1, 2000, 'the gateway to time the call out')
  const after = await scrape(gw)
  const count = outcome => value(after, 'fnbus_invocations_total', { function: 'Metrics/fn', type: 'Sync', outcome })
  assert.equal(count('ok'), 2)
  assert.equal(count('handled'), 1)
  assert.equal(count('FNBUS_TIMEOUT'), 1)
  assert.equal(value(after, 'fnbus_invocations_total', { function: 'Metrics/none', outcome: 'FNBUS_FUNCTION_NOT_FOUND' }), 1)
  assert.equal(value(after, 'fnbus_invocation_duration_seconds_count', { function: 'Metrics/fn', type: 'Sync' }), 4)
  // the timed-out call alone took ≥ 100 ms
  assert.ok(value(after, 'fnbus_invocation_duration_seconds_sum', { function: 'Metrics/fn', type: 'Sync' }) >= 0.1)
  assert.equal(value(after, 'fnbus_invocation_duration_seconds_bucket', { function: 'Metrics/fn', type: 'Sync', le: '+Inf' }), 4)
  assert.ok(value(after, 'fnbus_invocation_duration_seconds_bucket', { function: 'Metrics/fn', type: 'Sync', le: '0.05' }) >= 3, 'the fast calls fall in the low buckets')
  assert.equal(value(after, 'fnbus_workers', { function: 'Metrics/fn' }), 1)
  assert.equal(value(after, 'fnbus_connected_clients', { kind: 'mqtt' }), 2)
  assert.equal(value(after, 'fnbus_connected_clients', { kind: 'bus' }), 2)
  assert.equal(value(after, 'fnbus_ready'), 1)
})

test('in flight and waiting calls are gauges read at scrape time', async t => {
  const gw = await gatewayWithMetrics(t)
  const release = []
  await gw.serve('Metrics/slow', () => new Promise(resolve => release.push(resolve)), { concurrency: 1 })
  const first = gw.invoke('Metrics/slow', 1)
  const second = gw.invoke('Metrics/slow', 2)
  await waitFor(() => release.length === 1, 2000, 'the first call to start')
  const busy = await scrape(gw)
  assert.equal(value(busy, 'fnbus_in_flight', { function: 'Metrics/slow' }), 1)
  assert.equal(value(busy, 'fnbus_waiting_calls', { function: 'Metrics/slow' }), 1)
  release[0]('done')
  await waitFor(() => release.length === 2, 2000, 'the second call to start')
  release[1]('done')
  await Promise.all([first, second])
  const idle = await scrape(gw)
  assert.equal(value(idle, 'fnbus_in_flight', { function: 'Metrics/slow' }), 0)
  assert.equal(value(idle, 'fnbus_waiting_calls', { function: 'Metrics/slow' }), 0)
})

test('Async: stored counts by state, accepted, retries, dead letters and delivery outcomes', async t => {
  const gw = await gatewayWithMetrics(t)
  gw.bus.setFunctionOptions('Metrics/job', { async: { maxRetries: 1, retryDelayMs: 10 } })
  const caller = await connectClient(t, gw)
  await caller.invokeAsync('Metrics/job', 'ok')
  await caller.invokeAsync('Metrics/job', 'fail')
  const waiting = await scrape(gw)
  assert.equal(value(waiting, 'fnbus_async_accepted_total', { function: 'Metrics/job' }), 2)
  assert.equal(value(waiting, 'fnbus_async_invocations', { function: 'Metrics/job', state: 'pending' }), 2)
  assert.equal(value(waiting, 'fnbus_async_invocations', { function: 'Metrics/job', state: 'dead' }), 0)

  await gw.serve('Metrics/job', async event => { if (event === 'fail') throw new Error('always fails') })
  await waitFor(() => gw.bus.queueStats('Metrics/job')[0]?.dead === 1, 5000, 'the dead letter')
  await waitFor(() => gw.bus.queueStats('Metrics/job')[0]?.pending === 0, 5000, 'the queue to empty')
  const done = await scrape(gw)
  assert.equal(value(done, 'fnbus_invocations_total', { function: 'Metrics/job', type: 'Async', outcome: 'ok' }), 1)
  assert.equal(value(done, 'fnbus_invocations_total', { function: 'Metrics/job', type: 'Async', outcome: 'unhandled' }), 2, 'the first attempt and its retry')
  assert.equal(value(done, 'fnbus_async_retries_total', { function: 'Metrics/job' }), 1)
  assert.equal(value(done, 'fnbus_async_dead_letters_total', { function: 'Metrics/job' }), 1)
  assert.equal(value(done, 'fnbus_async_invocations', { function: 'Metrics/job', state: 'pending' }), 0)
  assert.equal(value(done, 'fnbus_async_invocations', { function: 'Metrics/job', state: 'dead' }), 1)

  // the dead letter shows in the status too, with its error
  const status = await gw.status()
  assert.equal(status.deadLetters.length, 1)
  assert.equal(status.deadLetters[0].function, 'Metrics/job')
  assert.equal(status.deadLetters[0].error?.code, 'FNBUS_FUNCTION_ERROR')
  assert.match(String(status.deadLetters[0].error?.message), /always fails/)
})

test('event messages in and out, rejected connections and dropped frames by reason', async t => {
  const gw = await gatewayWithMetrics(t, { limits: { maxPayloadBytes: 1024, maxFrameBytes: 4096 } })
  const subscriber = await connectClient(t, gw)
  const got = []
  await subscriber.subscribe('metrics/#', topic => got.push(topic))
  const publisher = await connectClient(t, gw)
  await publisher.publish('metrics/a', 'x')
  await publisher.publish('metrics/b', 'y')
  await publisher.publish('elsewhere/c', 'z') // nobody subscribes: in, not out
  await waitFor(() => got.length === 2, 2000, 'the events')

  // an MQTT 5 CONNECT: aedes speaks 3.1.1 and refuses it with CONNACK 1
  const v5 = mqtt.connect(gw.url, { protocolVersion: 5, reconnectPeriod: 0 })
  await new Promise(resolve => { v5.once('error', resolve); v5.once('close', () => resolve(undefined)) })
  v5.end(true)
  // a CONNECT declaring more than maxFrameBytes
  const socket = connect(gw.port, '127.0.0.1')
  await new Promise(resolve => socket.once('connect', resolve))
  socket.write(Buffer.from([0x10, 0xff, 0xff, 0x7f]))
  await new Promise(resolve => socket.once('close', () => resolve(undefined)))
  // a bus message that is not MessagePack: refused in-band
  const raw = mqtt.connect(gw.url, { reconnectPeriod: 0 })
  await new Promise(resolve => raw.once('connect', resolve))
  await raw.publishAsync('$fn/up', Buffer.from([0xc1]))
  await raw.endAsync()

  await waitFor(async () => value(await scrape(gw), 'fnbus_dropped_frames_total', { reason: 'FNBUS_BAD_MESSAGE' }) === 1, 2000, 'the refused envelope to be counted')
  const samples = await scrape(gw)
  assert.equal(value(samples, 'fnbus_event_messages_total', { direction: 'in' }), 3)
  assert.equal(value(samples, 'fnbus_event_messages_total', { direction: 'out' }), 2)
  assert.equal(value(samples, 'fnbus_rejected_connections_total', { reason: 'unacceptable_protocol_version' }), 1)
  assert.equal(value(samples, 'fnbus_dropped_frames_total', { reason: 'frame_too_large' }), 1)
})

test('function labels are bounded: names past maxFunctions count as _other', async t => {
  const gw = await startGateway(t, { http: { port: 0 }, plugins: { metrics: { processMetrics: false, maxFunctions: 2 } } })
  for (const name of ['A/one', 'A/two', 'A/three', 'A/four']) await rejection(gw.invoke(name, 'x'))
  const samples = await scrape(gw)
  const functions = new Set(samples.filter(s => s.name === 'fnbus_invocations_total').map(s => s.labels.function))
  assert.deepEqual([...functions].sort(), ['A/one', 'A/two', '_other'])
  assert.equal(value(samples, 'fnbus_invocations_total', { function: '_other' }), 2)
})

test('process metrics are on by default under the names stock Node.js dashboards expect (process_, nodejs_); processMetricsPrefix prefixes them; a bad option is a config error naming it', async t => {
  const gw = await startGateway(t, { http: { port: 0 }, plugins: ['metrics'] })
  const samples = await scrape(gw)
  assert.ok(samples.some(s => s.name === 'process_resident_memory_bytes'))
  assert.ok(samples.some(s => s.name === 'nodejs_heap_size_used_bytes'))
  const prefixed = await startGateway(t, { http: { port: 0 }, plugins: { metrics: { processMetricsPrefix: 'fnbus_' } } })
  assert.ok((await scrape(prefixed)).some(s => s.name === 'fnbus_process_resident_memory_bytes'))
  const err = await rejection(createGateway({ port: 0, memory: true, http: { port: 0 }, plugins: { metrics: { maxFunctions: 0 } } }))
  assert.equal(err.code, 'FNBUS_CONFIG_INVALID')
  assert.match(err.message, /plugins\.metrics: maxFunctions must be/)
})

test('fnbus_build_info names the versions; every served function has its Async samples, zero while its queue is empty', async t => {
  const gw = await gatewayWithMetrics(t)
  await gw.serve('Metrics/idle', async () => 'ok')
  const samples = await scrape(gw)
  const info = defined(samples.find(s => s.name === 'fnbus_build_info'))
  assert.equal(info.value, 1)
  assert.match(info.labels.version, /^\d+\.\d+\.\d+/)
  assert.equal(info.labels.nodejs, process.versions.node)
  for (const state of ['pending', 'in_flight', 'dead']) {
    const sample = samples.find(s => s.name === 'fnbus_async_invocations' && s.labels.function === 'Metrics/idle' && s.labels.state === state)
    assert.equal(sample?.value, 0, `a ${state} sample of 0`)
  }
})

test('without an HTTP port the figures are still kept, for code in the process (plugin.metrics())', async t => {
  const plugin = metricsPlugin()
  const gw = await startGateway(t, { plugins: [plugin], pluginConfig: { metrics: { processMetrics: false } } })
  await gw.serve('Metrics/local', async () => 'ok')
  await gw.invoke('Metrics/local')
  const samples = parseMetrics(await plugin.metrics())
  assert.equal(value(samples, 'fnbus_invocations_total', { function: 'Metrics/local', outcome: 'ok' }), 1)
})

test('calls the bus refuses before dispatch count too: the policy, an oversize payload, a full Async queue', async t => {
  const gw = await gatewayWithMetrics(t, {
    limits: { maxPayloadBytes: 1024 },
    policy: [{ identity: 'reader', allow: { invoke: ['Metrics/open'] } }],
  })
  gw.bus.setFunctionOptions('Metrics/full', { async: { maxStored: 1 } })
  await gw.serve('Metrics/open', async () => 'ok')
  assert.equal((await rejection(gw.invoke('Metrics/closed', 'x', { identity: 'reader' }))).code, 'FNBUS_NOT_AUTHORIZED')
  assert.equal((await rejection(gw.bus.invokeAsync('Metrics/open', 'x'.repeat(2000)))).code, 'FNBUS_PAYLOAD_TOO_LARGE')
  await gw.bus.invokeAsync('Metrics/full', 1)
  assert.equal((await rejection(gw.bus.invokeAsync('Metrics/full', 2))).code, 'FNBUS_QUEUE_FULL')
  assert.equal(await gw.invoke('Metrics/open', 'x', { identity: 'reader' }), 'ok')

  const samples = await scrape(gw)
  const count = (fn, type, outcome) => value(samples, 'fnbus_invocations_total', { function: fn, type, outcome })
  assert.equal(count('Metrics/closed', 'Sync', 'FNBUS_NOT_AUTHORIZED'), 1)
  assert.equal(count('Metrics/open', 'Async', 'FNBUS_PAYLOAD_TOO_LARGE'), 1)
  assert.equal(count('Metrics/full', 'Async', 'FNBUS_QUEUE_FULL'), 1)
  assert.equal(count('Metrics/open', 'Sync', 'ok'), 1)
  // refusals are counted, not timed: the histogram has the one call that ran
  assert.equal(value(samples, 'fnbus_invocation_duration_seconds_count', { function: 'Metrics/open', type: 'Sync' }), 1)
})
