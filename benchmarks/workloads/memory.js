// Workload 5: what idle connections cost the broker process. A fresh broker per run (run with --expose-gc, so
// each reading follows a full GC), its resident set size read before and after N idle clients connected
// from two client processes:
//   fnbus: N FCClients, each serving a function of its own (`fc.serve`) — N idle workers;
//   aedes: N MQTT.js connections to a bare aedes broker, each subscribed to a topic of its own.
import { rm } from 'node:fs/promises'
import { alternate, group } from '../lib/alternate.js'
import { ProcessGroup } from '../lib/processes.js'
import { sleep } from '../lib/measure.js'

export const SYSTEMS = {
  fnbus: 'fnbus gateway, idle workers (FCClient + fc.serve)',
  aedes: 'bare aedes, idle MQTT.js connections with one subscription each',
}

// The clients are opened from this many processes (1,000 clients in one would measure that process' limits).
const CLIENT_PROCESSES = 2
// Time for the broker to finish the work the connections caused (registrations, timers) before it is read.
const SETTLE_MS = 1000

export async function run ({ options, log, tempDir }) {
  const count = options.idle
  const measure = async system => {
    const procs = new ProcessGroup()
    const dataDir = system === 'fnbus' ? await tempDir('memory') : undefined
    try {
      const broker = system === 'fnbus'
        ? await procs.start('fnbus', 'gateway', { dataDir }, { execArgv: ['--expose-gc'] })
        : await procs.start('aedes', 'broker', {}, { execArgv: ['--expose-gc'] })
      await sleep(SETTLE_MS)
      const before = await broker.memory()
      const per = Math.ceil(count / CLIENT_PROCESSES)
      let connected = 0
      for (let p = 0; p < CLIENT_PROCESSES; p++) {
        const share = Math.min(per, count - p * per)
        const opts = { url: broker.info.url, count: share, first: p * per }
        const clients = system === 'fnbus'
          ? await procs.start('fnbus', 'idleWorkers', opts, { timeoutMs: 180_000 })
          : await procs.start('mqtt', 'idleConnections', opts, { timeoutMs: 180_000 })
        connected += clients.info.connected
      }
      await sleep(SETTLE_MS)
      const after = await broker.memory()
      return {
        connections: connected,
        rssBefore: before.rss,
        rssAfter: after.rss,
        rssPerConnection: (after.rss - before.rss) / connected,
        heapUsedPerConnection: (after.heapUsed - before.heapUsed) / connected,
      }
    } finally {
      await procs.close()
      if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true })
    }
  }
  const runs = await alternate({ systems: Object.keys(SYSTEMS), pairs: options.pairs, label: `memory, ${count} idle connections`, log, measure })
  return { systems: SYSTEMS, groups: [group('memory', `${count} idle connections`, { connections: count }, runs)] }
}
