// Runs the systems of one comparison in alternation, so a machine that drifts (this one is shared and noisy)
// weighs on every system alike, and reduces each system's runs to their medians.
import { median } from './measure.js'

/**
 * `pairs` rounds; each round measures every system once, in the order A B C … in even rounds and … C B A in odd
 * ones (A B B A A B …), which also cancels a steady drift across a round. `measure(system, round)` → a sample.
 */
export async function alternate ({ systems, pairs, measure, log, label }) {
  const runs = Object.fromEntries(systems.map(system => [system, []]))
  for (let round = 0; round < pairs; round++) {
    const order = round % 2 === 0 ? systems : [...systems].reverse()
    for (const system of order) {
      const sample = await measure(system, round)
      runs[system].push(sample)
      log(`${label} · ${system} #${round + 1}: ${describe(sample)}`)
    }
  }
  return runs
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
