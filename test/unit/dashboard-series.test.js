// The dashboard's invoke series: one-second buckets in a fixed ring, latency quantiles from a log histogram.
import assert from 'node:assert/strict'
import test from 'node:test'
import { InvocationSeries } from '../../dist/plugins/dashboard/series.js'
import { defined } from '../helpers.js'
/** @import { InvocationObservation } from '../../dist/index.js' */

/**
 * @param {string} fn
 * @param {number} durationMs
 * @param {InvocationObservation['outcome']} [outcome]
 * @returns {InvocationObservation}
 */
const call = (fn, durationMs, outcome = 'ok') => ({ requestId: 'r', function: fn, service: fn.split('/')[0], type: 'Sync', outcome, durationMs })
const T0 = 1_700_000_000_000 // a whole second

test('counts, errors and quantiles per second; the current second is left out of the chart', () => {
  const series = new InvocationSeries(60, 10)
  for (let i = 1; i <= 100; i++) series.record(call('A/f', i), T0 + 10)
  series.record(call('A/f', 5, 'FNBUS_TIMEOUT'), T0 + 999)
  series.record(call('B/g', 1, 'handled'), T0 + 1500)

  const during = series.snapshot(T0 + 500)
  assert.equal(during.points.length, 59)
  assert.equal(during.points.at(-1)?.t, T0 - 1000, 'the unfinished second is not drawn')

  const after = series.snapshot(T0 + 2000)
  const second = defined(after.points.find(p => p.t === T0))
  assert.equal(second.count, 101)
  assert.equal(second.errors, 1)
  // the histogram's buckets grow by half: a quantile is within 50% above the true value
  assert.ok((second.p50 ?? NaN) >= 50 && (second.p50 ?? NaN) <= 75, `p50 ${second.p50}`)
  assert.ok((second.p95 ?? NaN) >= 95 && (second.p95 ?? NaN) <= 143, `p95 ${second.p95}`)
  const next = defined(after.points.find(p => p.t === T0 + 1000))
  assert.deepEqual([next.count, next.errors], [1, 1])
  assert.ok((next.p50 ?? NaN) >= 1 && (next.p50 ?? NaN) <= 1.5, `p50 ${next.p50}`)
  assert.equal(after.points.find(p => p.t === T0 - 1000)?.p50, null, 'an empty second has no latency')

  assert.equal(after.functions['A/f'].total, 101)
  assert.equal(after.functions['A/f'].totalErrors, 1)
  assert.equal(after.functions['A/f'].rate, 101 / 10)
  assert.equal(after.functions['B/g'].errorRate, 1 / 10)
})

test('old seconds leave the ring; totals stay', () => {
  const series = new InvocationSeries(10, 5)
  series.record(call('A/f', 1), T0)
  const muchLater = series.snapshot(T0 + 60_000)
  assert.equal(muchLater.points.reduce((sum, p) => sum + p.count, 0), 0)
  assert.equal(muchLater.functions['A/f'].rate, 0)
  assert.equal(muchLater.functions['A/f'].p50, null)
  assert.equal(muchLater.functions['A/f'].total, 1)
  // a second that reuses the slot of an old one starts empty
  series.record(call('A/f', 2), T0 + 10_000)
  assert.equal(series.snapshot(T0 + 11_000).points.find(p => p.t === T0 + 10_000)?.count, 1)
})
