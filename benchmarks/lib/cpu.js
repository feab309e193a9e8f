// CPU time of whole processes, read from /proc/<pid>/stat: it counts a broker whether it is one of our children
// or a server of the machine (nats-server), and a figure per call is steadier than a rate on a shared machine,
// where a process waiting for a core loses throughput but not CPU time.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

let tickMicros
function microsPerTick () {
  if (tickMicros === undefined) {
    let hz = 100
    try {
      hz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {}
    tickMicros = 1e6 / hz
  }
  return tickMicros
}

/** User + system CPU time of `pid` so far, µs (null where /proc cannot tell). */
export function cpuMicros (pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // the command name may hold spaces: the fields that follow start after its closing parenthesis, at field 3
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[14 - 3]) + Number(fields[15 - 3])) * microsPerTick()
  } catch {
    return null
  }
}

/** The pid of a running process by its command name (e.g. `nats-server`), or null. */
export function pidOf (name) {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === name) return Number(entry)
    } catch {}
  }
  return null
}

/**
 * Runs `fn` and adds to its result the CPU µs each process of `pids` ({ role: pid }) spent per call, as
 * `cpu<Role>` fields (e.g. cpuBroker), over the whole run: `calls` names the result's field that counts every
 * call the run made, warm-up included.
 */
export async function withCpuPerCall (pids, fn, calls = 'totalCalls') {
  const before = Object.fromEntries(Object.entries(pids).map(([role, pid]) => [role, cpuMicros(pid)]))
  const result = await fn()
  for (const [role, pid] of Object.entries(pids)) {
    const after = cpuMicros(pid)
    const key = `cpu${role[0].toUpperCase()}${role.slice(1)}`
    result[key] = after === null || before[role] === null || !(result[calls] > 0) ? null : (after - before[role]) / result[calls]
  }
  return result
}
