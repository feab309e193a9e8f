// Workload 2: caller and function in one process, no network: `gw.invoke` → `gw.serve` against Moleculer's
// `broker.call` to a local service (no transporter). Each system runs in a process of its own, so neither
// heats or fragments the other's heap. The bar is against Moleculer as it ships, calls without a deadline; a second
// Moleculer row gives its calls the deadline every fnbus call has (fnbus' default 30 s), for context.
import { alternate, group } from '../lib/alternate.js'
import { ProcessGroup } from '../lib/processes.js'
import { runTimeout, sizeLabel } from './sync.js'

export const SYSTEMS = {
  fnbus: 'fnbus gw.invoke → gw.serve',
  'moleculer-local': 'Moleculer 0.15 broker.call, local service',
  'moleculer-local-deadline': 'the same with `requestTimeout: 30000`: a deadline per call, as fnbus calls have (not the bar\'s peer)',
}

/** fnbus' default `limits.defaultTimeoutMs`, given to the second Moleculer row as its `requestTimeout`. */
const FNBUS_DEFAULT_TIMEOUT_MS = 30_000

const SIZE = 64

export async function run ({ options, log, tempDir }) {
  const procs = new ProcessGroup()
  try {
    const runners = {
      fnbus: await procs.start('fnbus', 'inProcess', { dataDir: await tempDir('inprocess') }),
      'moleculer-local': await procs.start('moleculer', 'local'),
      'moleculer-local-deadline': await procs.start('moleculer', 'local', { requestTimeout: FNBUS_DEFAULT_TIMEOUT_MS }),
    }
    const groups = []
    for (const concurrency of [1, options.inFlight]) {
      const label = `${sizeLabel(SIZE)}, ${concurrency === 1 ? 'serial' : `${concurrency} in flight`}`
      const params = { size: SIZE, concurrency, warmupMs: options.warmupMs, durationMs: options.durationMs }
      const runs = await alternate({
        systems: Object.keys(runners),
        pairs: options.pairs,
        label: `in-process ${label}`,
        log,
        measure: system => runners[system].call('run', params, { timeoutMs: runTimeout(options) }),
      })
      groups.push(group(`inprocess-c${concurrency}`, label, params, runs))
    }
    return { systems: SYSTEMS, groups }
  } finally {
    await procs.close()
  }
}
