import type { ClusterStatus, GatewayStatus } from '../../plugins.js'
import { connectClient } from '../connect.js'
import { toJson } from '../output.js'
import { ExitCode, HELP_OPTION, stringOption, CONNECTION_OPTIONS, type CommandSpec, type Io, type ParsedArgs } from '../spec.js'

export const statusCommand: CommandSpec = {
  name: 'status',
  summary: 'Show what a running gateway runs, what fails and what waits.',
  description: [
    'Asks the gateway (over the bus, at --url) for its status and prints:',
    '  the gateway: version, uptime, health (broker, store, supervised functions), connections;',
    '  one row per function: workers, calls in flight and waiting, stored Async invocations',
    '  (pending, in flight, dead), supervised instances ready out of configured, restarts;',
    '  each worker with its calls in flight out of its concurrency; the first dead letters with their errors.',
    'Exit status 0 when the gateway is ready, 1 when it is not (or cannot be reached).',
  ].join('\n'),
  arguments: [],
  options: {
    json: { type: 'boolean', description: 'Print the whole status object as JSON.' },
    ...CONNECTION_OPTIONS,
    ...HELP_OPTION,
  },
  run: status,
}

async function status ({ values }: ParsedArgs, io: Io): Promise<number> {
  const client = await connectClient(stringOption(values, 'url'), stringOption(values, 'ca'), { username: stringOption(values, 'username') })
  let result: GatewayStatus
  try {
    result = await client.status()
  } finally {
    await client.close()
  }
  // a bus attached to an application's own aedes answers with its own, smaller view: shown as it is
  const full = typeof result?.health?.ready === 'boolean'
  io.stdout.write(values.json === true || !full ? toJson(result) + '\n' : formatStatus(result))
  return !full || result.health.ready ? ExitCode.Ok : ExitCode.Failure
}

/** The human view of a status: a header, a table of functions, the dead letters. */
export function formatStatus (status: GatewayStatus): string {
  const health = status.health
  const down: string[] = (['broker', 'store', 'functions'] as const).filter(part => !health[part])
  // outside a cluster the gateway's status has no cluster part
  if (health.cluster === false) down.push('cluster')
  const lines = [
    `gateway  ${status.url}  fnbus ${status.version}  up ${formatDuration(status.uptimeMs)}  ${health.ready ? 'ready' : `NOT READY (${down.join(', ')} down)`}`,
    `clients  ${status.connections.clients} connected, ${status.connections.busClients} on the bus, ${status.connections.workers} workers` +
      (status.httpUrl === undefined || status.httpUrl === null ? '' : `  http ${status.httpUrl}`) +
      // an older gateway's status has none
      (status.direct === undefined || status.direct.calls === 0 ? '' : `  direct ${status.direct.calls} calls, ${status.direct.leases} leases`),
    '',
  ]
  if (status.functions.length === 0) {
    lines.push('no functions (none registered, configured or with stored invocations)')
  } else {
    const header = ['FUNCTION', 'WORKERS', 'IN FLIGHT', 'WAITING', 'PENDING', 'ASYNC RUNNING', 'DEAD', 'INSTANCES', 'RESTARTS']
    const rows = status.functions.map(fn => {
      const ready = fn.instances.filter(i => i.ready).length
      const restarts = fn.instances.reduce((sum, i) => sum + i.restarts, 0)
      return [
        fn.name,
        String(fn.workers.length),
        String(fn.inFlight),
        String(fn.queued),
        String(fn.async.pending),
        String(fn.async.inFlight),
        String(fn.async.dead),
        fn.instances.length === 0 ? '-' : `${ready}/${fn.instances.length}`,
        fn.instances.length === 0 ? '-' : String(restarts),
      ]
    })
    lines.push(...table([header, ...rows]))
    const workers = status.functions.flatMap(fn => fn.workers.map(w => [fn.name, w.label, `${w.inFlight}/${w.concurrency}`]))
    if (workers.length > 0) lines.push('', ...table([['WORKER OF', 'CLIENT', 'IN FLIGHT/CONCURRENCY'], ...workers], 2))
    const instances = status.functions.flatMap(fn => fn.instances.map(i => [
      i.label,
      // a thread in a host process of its own names it
      (i.isolation ?? 'process') + (i.host === undefined || i.host === null ? '' : `@${i.host}`),
      i.pid === undefined || i.pid === null ? '-' : i.threadId === undefined || i.threadId === null ? String(i.pid) : `${i.pid}/${i.threadId}`,
      i.ready ? 'up' : 'down',
      i.heapUsedBytes === undefined || i.heapUsedBytes === null ? '-' : `${megabytes(i.heapUsedBytes)}/${megabytes(i.heapLimitBytes)}`,
      i.rssBytes === undefined || i.rssBytes === null ? '-' : megabytes(i.rssBytes),
      String(i.restarts),
    ]))
    if (instances.length > 0) lines.push('', ...table([['INSTANCE', 'ISOLATION', 'PID[/THREAD]', 'STATE', 'HEAP MB', 'RSS MB', 'RESTARTS'], ...instances], 4))
    // an instance that keeps failing says why, where the operator looks first
    const unknown = status.functions.filter(fn => fn.unknown === true)
    if (unknown.length > 0) {
      lines.push('', 'WAITING FOR A WORKER NOTHING PROVIDES (no configuration names them, no worker has served them)',
        ...unknown.map(fn => `${fn.name}  ${fn.async.pending} stored`))
    }
    const failing = status.functions.flatMap(fn => fn.instances.filter(i => !i.ready && i.lastFailure !== undefined))
    if (failing.length > 0) lines.push('', 'NOT STARTING', ...failing.map(i => `${i.label}  restarts=${i.restarts}  ${i.lastFailure as string}`))
  }
  if (status.cluster !== undefined && status.cluster !== null) lines.push('', ...formatCluster(status.cluster))
  if (status.deadLetters.length > 0) {
    lines.push('', 'DEAD LETTERS (oldest first)')
    for (const d of status.deadLetters) {
      const error = d.error === undefined || d.error === null ? '' : `  ${d.error.code}: ${d.error.message}`
      lines.push(`${d.invocationId}  ${d.function}  attempts=${d.attempts}  died=${new Date(d.diedAt).toISOString()}${error}`)
    }
  }
  return lines.join('\n') + '\n'
}

/** The cluster: this gateway's state, then each other gateway with what it serves and the calls between them. */
function formatCluster (cluster: ClusterStatus): string[] {
  const state = cluster.state === 'connected'
    ? `connected to ${cluster.server ?? '?'}`
    : `${cluster.state.toUpperCase()}${cluster.lastError === undefined || cluster.lastError === null ? '' : ` (${cluster.lastError})`}`
  const lines = [`cluster  ${cluster.name}  ${state}  ${cluster.members.length} other gateway${cluster.members.length === 1 ? '' : 's'}` +
    (cluster.dropped > 0 ? `  ${cluster.dropped} messages dropped` : '')]
  if (cluster.members.length > 0) {
    lines.push(...table([
      ['GATEWAY', 'FUNCTIONS', 'CALLS TO IT', 'ANSWERED', 'CALLS FROM IT', 'LAST SEEN'],
      ...cluster.members.map(m => [m.name, m.functions.length === 0 ? '-' : m.functions.join(' '), String(m.calls.sent), String(m.calls.answered), String(m.calls.served), `${m.lastSeenMs} ms`]),
    ], 2))
  }
  return lines
}

function megabytes (bytes: number | undefined): string {
  return bytes === undefined || bytes === null ? '?' : (bytes / (1024 * 1024)).toFixed(1)
}

/** Columns padded to their widest cell: the first `textColumns` left-aligned, the rest (figures) right-aligned. */
function table (rows: readonly (readonly string[])[], textColumns = 1): string[] {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map(row => (row[i] ?? '').length)))
  return rows.map(row => row.map((cell, i) => i < textColumns ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)).join('  ').trimEnd())
}

export function formatDuration (ms: number): string {
  const seconds = Math.floor(ms / 1000)
  if (seconds < 60) return `${seconds}s`
  const minutes = Math.floor(seconds / 60)
  if (minutes < 60) return `${minutes}m${String(seconds % 60).padStart(2, '0')}s`
  const hours = Math.floor(minutes / 60)
  if (hours < 48) return `${hours}h${String(minutes % 60).padStart(2, '0')}m`
  return `${Math.floor(hours / 24)}d${String(hours % 24).padStart(2, '0')}h`
}
