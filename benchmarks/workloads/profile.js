// Where fnbus spends its time: its processes run once more under V8's CPU profiler (node --cpu-prof), in the
// configurations the issue's bars are about, and each profile is cut to the measured window and summarised
// (lib/profile.js). Not a comparison: fnbus only.
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { ProcessGroup } from '../lib/processes.js'
import { summarizeProfile } from '../lib/profile.js'
import { runTimeout } from './sync.js'

const SIZE = 64
// Sampling every 200 µs instead of V8's 1 ms: a few seconds then give enough samples to rank functions.
const INTERVAL_MICROS = 200

export async function run ({ options, log, tempDir }) {
  // long enough for a profile worth reading, whatever --quick says
  const durationMs = Math.max(options.durationMs, 3000)
  const scenarios = [
    { id: 'sync-c1', label: `Sync invoke, ${SIZE} B, serial`, kind: 'sync', concurrency: 1 },
    { id: `sync-c${options.inFlight}`, label: `Sync invoke, ${SIZE} B, ${options.inFlight} in flight`, kind: 'sync', concurrency: options.inFlight },
    { id: 'async-accept', label: `Async accept, ${SIZE} B, ${options.inFlight} in flight`, kind: 'async', concurrency: options.inFlight },
  ]
  const profiles = []
  for (const scenario of scenarios) {
    const profileDir = await mkdtemp(join(await tempDir('profile'), 'cpu-'))
    const execArgv = ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-interval', String(INTERVAL_MICROS)]
    const procs = new ProcessGroup()
    const roles = []
    let measured
    try {
      const gateway = await procs.start('fnbus', 'gateway', {
        dataDir: await tempDir('profile-data'),
        functions: { 'Bench/async': { async: { maxStored: 10_000_000 } } },
      }, { execArgv })
      roles.push(['gateway', gateway])
      if (scenario.kind === 'sync') {
        roles.push(['worker', await procs.start('fnbus', 'worker', { url: gateway.info.url, concurrency: options.inFlight }, { execArgv })])
        const caller = await procs.start('fnbus', 'caller', { url: gateway.info.url }, { execArgv })
        roles.push(['caller', caller])
        measured = await caller.call('run', { size: SIZE, concurrency: scenario.concurrency, warmupMs: options.warmupMs, durationMs }, { timeoutMs: runTimeout({ ...options, durationMs }) })
      } else {
        const caller = await procs.start('fnbus', 'asyncCaller', { url: gateway.info.url }, { execArgv })
        roles.push(['caller', caller])
        // a fixed duration's worth of invocations at the rate of a first, short run
        const probe = await caller.call('run', { size: SIZE, concurrency: scenario.concurrency, count: 2000 }, { timeoutMs: 120_000 })
        const count = Math.max(2000, Math.round(probe.rate * durationMs / 1000))
        const startMicros = Number(process.hrtime.bigint() / 1000n)
        measured = await caller.call('run', { size: SIZE, concurrency: scenario.concurrency, count }, { timeoutMs: 300_000 })
        measured.window = { start: startMicros, end: Number(process.hrtime.bigint() / 1000n) }
      }
    } finally {
      // the profiles are written as the processes exit
      await procs.close()
    }
    const files = await readdir(profileDir)
    const processes = {}
    for (const [role, proc] of roles) {
      const file = files.find(name => name.includes(`.${proc.pid}.`))
      if (file === undefined) continue
      processes[role] = summarizeProfile(join(profileDir, file), { startMicros: measured.window.start, endMicros: measured.window.end })
    }
    await rm(profileDir, { recursive: true, force: true })
    log(`profile ${scenario.label}: ${Math.round(measured.rate)}/s; busy ${Object.entries(processes).map(([role, p]) => `${role} ${p.busyPercent}%`).join(', ')}`)
    profiles.push({ id: scenario.id, label: scenario.label, rate: measured.rate, p50: measured.p50, p99: measured.p99, processes })
  }
  return { profiles }
}
