// Workload 7: what the metrics plugin costs the hot path. The same Sync invoke with the plugin on (`fnbus`: an HTTP
// port, prom-client counting every invocation, /metrics scraped every second) and off (`metrics-off`), each on a
// gateway, worker and caller of its own, in alternation; and the in-process path (`gw.invoke` → `gw.serve`), where
// nothing else hides the plugin's cost. The bar: on ≥ 0.95× off. A third side, identical to "off", is the A/A
// control: the gap between the two "off" sides is what this machine's noise alone makes.
import { alternate, group } from '../lib/alternate.js'
import { withCpuPerCall } from '../lib/cpu.js'
import { ProcessGroup } from '../lib/processes.js'
import { runTimeout, sizeLabel } from './sync.js'

export const SYSTEMS = {
  fnbus: 'fnbus with the metrics plugin on (/metrics scraped every second)',
  'metrics-off': 'fnbus without plugins',
  // the A/A control: a second, identical setup without plugins, to show how far two equal systems differ here
  'metrics-off-again': 'fnbus without plugins, a second identical setup (A/A control)',
}

const SIZE = 64

export async function run ({ options, log, tempDir }) {
  const procs = new ProcessGroup()
  try {
    const sides = {}
    for (const [system, metrics] of [['fnbus', true], ['metrics-off', false], ['metrics-off-again', false]]) {
      const gateway = await procs.start('fnbus', 'gateway', { dataDir: await tempDir(`metrics-${system}`), metrics })
      const worker = await procs.start('fnbus', 'worker', { url: gateway.info.url, concurrency: options.inFlight })
      const caller = await procs.start('fnbus', 'caller', { url: gateway.info.url })
      const inProcess = await procs.start('fnbus', 'inProcess', { dataDir: await tempDir(`metrics-inprocess-${system}`), metrics })
      sides[system] = { caller, inProcess, pids: { broker: gateway.pid, worker: worker.pid, caller: caller.pid }, inProcessPids: { gateway: inProcess.pid } }
    }
    const systems = Object.keys(sides)
    const groups = []
    for (const concurrency of [1, options.inFlight]) {
      const label = `Sync between processes, ${sizeLabel(SIZE)}, ${concurrency === 1 ? 'serial' : `${concurrency} in flight`}`
      const params = { size: SIZE, concurrency, warmupMs: options.warmupMs, durationMs: options.durationMs }
      const runs = await alternate({
        systems,
        pairs: options.pairs,
        label: `metrics ${label}`,
        log,
        measure: system => withCpuPerCall(sides[system].pids, () => sides[system].caller.call('run', params, { timeoutMs: runTimeout(options) })),
      })
      groups.push(group(`metrics-sync-c${concurrency}`, label, params, runs))
    }
    const params = { size: SIZE, concurrency: options.inFlight, warmupMs: options.warmupMs, durationMs: options.durationMs }
    const label = `In-process, ${sizeLabel(SIZE)}, ${options.inFlight} in flight`
    const runs = await alternate({
      systems,
      pairs: options.pairs,
      label: `metrics ${label}`,
      log,
      measure: system => withCpuPerCall(sides[system].inProcessPids, () => sides[system].inProcess.call('run', params, { timeoutMs: runTimeout(options) })),
    })
    groups.push(group(`metrics-inprocess-c${options.inFlight}`, label, params, runs))
    return { systems: SYSTEMS, groups }
  } finally {
    await procs.close()
  }
}
