// The dispatcher's function table (src/dispatcher/function-table.ts) under callers and workers that come and go:
// state freed when names go, the table bounded by maxFunctions, departures linear in a worker's registrations.
import assert from 'node:assert/strict'
import test from 'node:test'
import { Dispatcher } from '../../dist/dispatcher/index.js'
import { parseFunctionName } from '../../dist/protocol/index.js'
import { options, fakeWorker, fakeCaller, owner, request, codeOf } from '../dispatcher-fakes.js'

test('per-name state goes with the last worker; the table is bounded by maxFunctions', () => {
  const d = new Dispatcher({ ...options, maxFunctions: 3 })
  const w = fakeWorker('w')
  for (let i = 0; i < 3; i++) d.register(parseFunctionName(`Svc/f${i}`), w, 1)
  assert.throws(() => d.register(parseFunctionName('Svc/f3'), w, 1), { code: 'FNBUS_QUEUE_FULL' })
  const waiting = fakeCaller(owner())
  d.call(request({ fn: parseFunctionName('Svc/f9'), waitForWorkerMs: 1000 }), waiting)
  assert.equal(codeOf(waiting), 'FNBUS_QUEUE_FULL')
  d.workerGone(w)
  assert.equal(d.trackedFunctions, 0)
  d.register(parseFunctionName('Svc/f3'), w, 1)
  assert.equal(d.trackedFunctions, 1)
})

test("a worker's departure is linear in its registrations", () => {
  const d = new Dispatcher(options)
  const w = fakeWorker('w')
  const n = 50_000
  for (let i = 0; i < n; i++) d.register(parseFunctionName(`Svc/f${i}`), w, 1)
  const started = process.hrtime.bigint()
  d.workerGone(w)
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  assert.equal(d.trackedFunctions, 0)
  // quadratic: 1.25e9 array steps, several seconds; linear: tens of milliseconds
  assert.ok(ms < 1500, `departure took ${ms.toFixed(0)} ms`)
})
