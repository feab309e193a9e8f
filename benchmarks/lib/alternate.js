// Runs the systems of one comparison in alternation, so a machine that drifts (this one is shared and noisy)
// weighs on every system alike, and reduces each system's runs to their medians.
import { median } from './measure.js'

/**
 * `pairs` rounds; each round measures every system once. Two systems go A B, B A, A B … (a steady drift across a
 * round weighs on both alike). Three or more start each round one system further on (A B C, B C A, C A B …): no
 * system runs twice in a row, so a noisy spell of a few seconds on this shared machine does not fall on two of one
 * system's runs at once (with A B C … C B A, the first and the last system ran back to back at every turn), and
 * over the rounds every system takes every place in the order. `measure(system, round)` → a sample; a system's
 * runs are kept in round order, so the same index of two systems is the same round.
 */
export async function alternate ({ systems, pairs, measure, log, label }) {
  const runs = Object.fromEntries(systems.map(system => [system, []]))
  for (let round = 0; round < pairs; round++) {
    for (const system of roundOrder(systems, round)) {
      const sample = await measure(system, round)
      runs[system].push(sample)
      log(`${label} · ${system} #${round + 1}: ${describe(sample)}`)
    }
  }
  return runs
}

/** The order of the systems in `round` (see `alternate`). */
export function roundOrder (systems, round) {
  if (systems.length <= 2) return round % 2 === 0 ? systems : [...systems].reverse()
  const start = round % systems.length
  return [...systems.slice(start), ...systems.slice(0, start)]
}

/** The median of every numeric field over a system's runs. */
export function medians (runs) {
  const keys = new Set(runs.flatMap(run => Object.keys(run).filter(key => typeof run[key] === 'number')))
  return Object.fromEntries([...keys].map(key => [key, median(runs.map(run => run[key]))]))
}

/** A comparison: every system's runs and medians. */
export function group (id, label, params, runs) {
  return {
    id,
    label,
    params,
    systems: Object.fromEntries(Object.entries(runs).map(([system, systemRuns]) => [system, { median: medians(systemRuns), runs: systemRuns }])),
  }
}

function describe (sample) {
  // a sample of several measurements (the async workload's accept and drain) describes each
  const nested = Object.entries(sample).filter(([, value]) => value !== null && typeof value === 'object' && 'rate' in value)
  if (nested.length > 0) return nested.map(([key, value]) => `${key} ${describe(value)}`).join('; ')
  const parts = []
  if (sample.rate !== undefined) parts.push(`${Math.round(sample.rate)}/s`)
  if (sample.p50 != null) parts.push(`p50 ${sample.p50} µs`)
  if (sample.p99 != null) parts.push(`p99 ${sample.p99} µs`)
  if (sample.rssPerConnection !== undefined) parts.push(`${(sample.rssPerConnection / 1024).toFixed(1)} KiB RSS per connection`)
  if (sample.errors) parts.push(`${sample.errors} errors`)
  return parts.join(', ')
}
