// The gateway's log: every invocation traceable by requestId at debug, warnings for what an operator must see at
// info, and payloads only when asked for.
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import test from 'node:test'
import { FCClient } from '../../dist/index.js'
import { createLogger } from '../../dist/logging.js'
import { connectClient, defined, rejection, sdkOptions, startGateway, waitFor } from '../helpers.js'

/** A pino logger (the one `fnbus start` uses) writing into an array of parsed entries. */
/** @param {'debug' | 'info' | 'warn' | 'error'} [level] */
function capture (level = 'debug') {
  const entries = []
  const stream = new Writable({
    write (chunk, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') entries.push(JSON.parse(line))
      done()
    },
  })
  return { logger: createLogger(stream, { level, format: 'json' }), entries }
}

const SECRET = 'top-secret-payload'

test('debug: a Sync and an Async invocation each leave received/stored, dispatched and finished lines under one requestId; no payloads', async t => {
  const { logger, entries } = capture('debug')
  const gw = await startGateway(t, { logger })
  const worker = await connectClient(t, gw, { clientId: 'worker-1' })
  await worker.serve('Svc/echo', event => `echo ${event.length}`)
  const caller = await connectClient(t, gw, { clientId: 'caller-1' })
  assert.equal(await caller.invoke('Svc/echo', SECRET), `echo ${SECRET.length}`)
  const { invocationId } = await caller.invokeAsync('Svc/echo', SECRET)
  await waitFor(() => entries.some(e => e.requestId === invocationId && e.msg === 'invocation finished'), 5000, 'the Async delivery')

  const sync = entries.find(e => e.msg === 'invocation received' && e.caller === 'caller-1')
  assert.ok(sync, 'the Sync call was logged on arrival with its caller')
  const trace = id => entries.filter(e => e.requestId === id).map(e => e.msg)
  assert.deepEqual(trace(sync.requestId), ['invocation received', 'invocation dispatched', 'invocation finished'])
  assert.deepEqual(trace(invocationId), ['invocation stored', 'invocation dispatched', 'invocation finished'])
  for (const id of [sync.requestId, invocationId]) {
    const finished = entries.find(e => e.requestId === id && e.msg === 'invocation finished')
    assert.equal(finished.fn, 'Svc/echo')
    assert.equal(finished.worker, 'worker-1')
    assert.equal(finished.outcome, 'ok')
    assert.equal(typeof finished.durationMs, 'number')
  }
  assert.ok(entries.some(e => e.msg === 'worker-1 serves Svc/echo' && e.level === 'info'))
  assert.ok(!JSON.stringify(entries).includes(SECRET), 'the payload appears in no line')
})

test('logPayloads: the payload and the result appear in the debug lines, cut at 1 KiB', async t => {
  const { logger, entries } = capture('debug')
  const gw = await startGateway(t, { logger, logPayloads: true })
  await gw.serve('Svc/echo', event => event)
  await gw.invoke('Svc/echo', SECRET)
  await gw.invoke('Svc/echo', 'x'.repeat(5000))
  const received = entries.filter(e => e.msg === 'invocation received')
  assert.deepEqual(received[0].payload, { text: SECRET, bytes: SECRET.length, truncated: false })
  assert.equal(received[1].payload.text.length, 1024)
  assert.equal(received[1].payload.truncated, true)
  const finished = entries.find(e => e.msg === 'invocation finished')
  assert.deepEqual(finished.result, { text: SECRET, bytes: SECRET.length, truncated: false })
})

test('info: no debug lines, but a warning for each timeout, each lost worker and each dead letter', async t => {
  const { logger, entries } = capture('info')
  const gw = await startGateway(t, { logger })
  gw.bus.setFunctionOptions('Svc/failing', { async: { maxRetries: 0 } })
  await gw.serve('Svc/never', () => new Promise(() => {}))
  await gw.serve('Svc/failing', () => { throw new Error('always') })
  assert.equal((await rejection(gw.invoke('Svc/never', null, { timeout: 50 }))).code, 'FNBUS_TIMEOUT')

  const doomed = new FCClient(sdkOptions({ url: gw.url, clientId: 'doomed-worker', reconnectPeriod: 0 }))
  t.after(() => doomed.close())
  let started
  const running = new Promise(resolve => { started = resolve })
  await doomed.serve('Svc/crashing', () => { started(); return new Promise(() => {}) })
  const lost = gw.invoke('Svc/crashing')
  await running
  defined(gw.aedes.clients['doomed-worker']).conn.destroy() // the connection drops with the call in flight
  assert.equal((await rejection(lost)).code, 'FNBUS_WORKER_LOST')

  const { invocationId } = await gw.bus.invokeAsync('Svc/failing', 'x')
  await waitFor(() => entries.some(e => e.requestId === invocationId && e.level === 'warn'), 5000, 'the dead letter warning')

  assert.ok(!entries.some(e => e.level === 'debug'))
  const warnings = entries.filter(e => e.level === 'warn')
  const timeout = warnings.find(e => e.fn === 'Svc/never')
  assert.match(timeout.msg, /did not answer within its deadline/)
  assert.match(timeout.requestId, /\S/)
  const workerLost = warnings.find(e => e.worker === 'doomed-worker')
  assert.equal(workerLost.lostCalls, 1)
  assert.match(workerLost.msg, /FNBUS_WORKER_LOST/)
  const dead = warnings.find(e => e.requestId === invocationId)
  assert.equal(dead.fn, 'Svc/failing')
  assert.equal(dead.error.code, 'FNBUS_FUNCTION_ERROR')
  assert.match(dead.msg, /dead-lettered after 1 attempt/)
})
