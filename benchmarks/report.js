#!/usr/bin/env node
// Writes RESULTS.md from results.json: every figure, every ratio, and the verdict on each bar of issue 6.
// run.js calls it after a run; run it by hand after changing the layout:
//
//   node benchmarks/report.js [results.json] [RESULTS.md]
import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

const BASELINE = 'fnbus'

/** The bars of issue 6. `better` says which way a ratio fnbus/peer is good; `system`: which fnbus (default `fnbus`). */
function bars (options) {
  const n = options.inFlight
  return [
    { text: `Sync invoke, ${n} in flight, 64 B: calls/s ≥ 2.0× Moleculer over NATS`, workload: 'sync', group: `sync-64-c${n}`, peer: 'moleculer-nats', metric: 'rate', target: 2.0, better: 'higher' },
    // the serial bars compare with the naive RPC through Mosquitto, the peer a user would write first
    { text: 'Sync invoke, serial, 64 B: p50 ≤ 0.75× the naive RPC\'s p50 over Mosquitto', workload: 'sync', group: 'sync-64-c1', peer: 'mosquitto-rpc', metric: 'p50', target: 0.75, better: 'lower' },
    { text: 'Sync invoke, serial, 64 B, the caller on the gateway\'s Unix socket: p50 ≤ 0.75× the naive RPC\'s p50 over Mosquitto (TCP)', workload: 'sync', group: 'sync-64-c1', system: 'fnbus-unix', peer: 'mosquitto-rpc', metric: 'p50', target: 0.75, better: 'lower' },
    // functions as isolates: a caller function and the function it calls, both threads of one gateway
    { text: 'Sync invoke, serial, 64 B, caller and worker functions as threads: p50 ≤ 0.5× the naive RPC\'s p50 over Mosquitto (TCP)', workload: 'sync', group: 'sync-64-c1', system: 'fnbus-threads', peer: 'mosquitto-rpc', metric: 'p50', target: 0.5, better: 'lower' },
    { text: `Sync invoke, ${n} in flight, 64 B, caller and worker functions as threads: calls/s ≥ 3.0× fnbus between processes over TCP`, workload: 'sync', group: `sync-64-c${n}`, system: 'fnbus-threads', peer: 'fnbus', metric: 'rate', target: 3.0, better: 'higher' },
    { text: 'In-process invoke, serial: calls/s ≥ 1.0× Moleculer\'s local call', workload: 'inprocess', group: 'inprocess-c1', peer: 'moleculer-local', metric: 'rate', target: 1.0, better: 'higher' },
    { text: `In-process invoke, ${n} in flight: calls/s ≥ 1.0× Moleculer's local call`, workload: 'inprocess', group: `inprocess-c${n}`, peer: 'moleculer-local', metric: 'rate', target: 1.0, better: 'higher' },
    { text: 'Async accepted-and-durable rate ≥ 2.0× JetStream\'s acked publish', workload: 'async', group: 'async-accept', peer: 'jetstream', metric: 'rate', target: 2.0, better: 'higher' },
    { text: 'Async backlog drain rate ≥ 1.0× JetStream\'s consume (ack each)', workload: 'async', group: 'async-drain', peer: 'jetstream', metric: 'rate', target: 1.0, better: 'higher' },
    { text: 'Events through the fnbus gateway ≥ 0.95× bare aedes', workload: 'events', group: 'events', peer: 'aedes', metric: 'rate', target: 0.95, better: 'higher' },
    { text: `Sync invoke, ${n} in flight, with the metrics plugin on: calls/s ≥ 0.95× metrics off (issue 7)`, workload: 'metrics', group: `metrics-sync-c${n}`, peer: 'metrics-off', metric: 'rate', target: 0.95, better: 'higher' },
    { text: `In-process invoke, ${n} in flight, with the metrics plugin on: calls/s ≥ 0.95× metrics off (issue 7)`, workload: 'metrics', group: `metrics-inprocess-c${n}`, peer: 'metrics-off', metric: 'rate', target: 0.95, better: 'higher' },
    // gateways as one bus on NATS (issue 16): a call from a caller on one gateway to a worker on another
    { text: `Cross-gateway Sync, ${n} in flight, 64 B: calls/s ≥ 1.0× Moleculer over NATS (issue 16)`, workload: 'cluster', group: `cluster-cross-c${n}`, peer: 'moleculer-nats', metric: 'rate', target: 1.0, better: 'higher' },
    { text: 'Cross-gateway Sync, serial, 64 B: p50 ≤ 1.5× Moleculer over NATS (issue 16)', workload: 'cluster', group: 'cluster-cross-c1', peer: 'moleculer-nats', metric: 'p50', target: 1.5, better: 'lower' },
    { text: `Same-gateway Sync, ${n} in flight, 64 B, the gateway in a cluster: calls/s ≥ 0.95× standalone (issue 16)`, workload: 'cluster', group: `cluster-local-c${n}`, peer: 'standalone', metric: 'rate', target: 0.95, better: 'higher' },
    { text: `Async accept through a clustered gateway (R1), ${n} in flight, 64 B: ≥ 1.0× a bare nats.js JetStream publisher with acks (issue 16)`, workload: 'cluster', group: 'cluster-async-accept', peer: 'jetstream', metric: 'rate', target: 1.0, better: 'higher' },
  ]
}

// ── formatting ───────────────────────────────────────────────────────────────────────────────────────────────

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })

function rate (value) {
  return value == null ? '—' : `${integer.format(value)}/s`
}

function micros (value) {
  if (value == null) return '—'
  if (value >= 10_000) return `${(value / 1000).toFixed(1)} ms`
  if (value >= 100) return `${integer.format(value)} µs`
  return `${value.toFixed(1)} µs`
}

function bytes (value) {
  if (value == null) return '—'
  if (Math.abs(value) >= 2 ** 20) return `${(value / 2 ** 20).toFixed(1)} MiB`
  return `${(value / 1024).toFixed(1)} KiB`
}

function ratio (value) {
  return value == null || !Number.isFinite(value) ? '—' : `${value.toFixed(2)}×`
}

function spread (runs, key, format) {
  const values = runs.map(run => run[key]).filter(v => typeof v === 'number')
  if (values.length < 2) return ''
  return `${format(Math.min(...values))} – ${format(Math.max(...values))}`
}

function table (header, rows) {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map(row => `| ${row.join(' | ')} |`)].join('\n')
}

/** fnbus ÷ peer within each round (the same index of two systems' runs is the same round); min – max, or '' with one round. */
function roundRatios (group, peer, metric, system = BASELINE) {
  const ours = group.systems[system]?.runs ?? []
  const theirs = group.systems[peer]?.runs ?? []
  const values = []
  for (let i = 0; i < Math.min(ours.length, theirs.length); i++) {
    const a = ours[i][metric]
    const b = theirs[i][metric]
    if (typeof a === 'number' && typeof b === 'number' && b !== 0) values.push(a / b)
  }
  return values.length < 2 ? '' : `${ratio(Math.min(...values))} – ${ratio(Math.max(...values))}`
}

function ratioOf (group, peer, metric, system = BASELINE) {
  const ours = group.systems[system]?.median[metric]
  const theirs = group.systems[peer]?.median[metric]
  return ours == null || theirs == null || theirs === 0 ? null : ours / theirs
}

/** Whether other work competed for the cores: a 1-minute load average above the core count at either end of the run. */
function loaded (machine) {
  return Math.max(machine.loadAverageAtStart[0], machine.loadAverageAtEnd?.[0] ?? 0) > machine.cores
}

// ── sections ─────────────────────────────────────────────────────────────────────────────────────────────────

function header (results) {
  const { meta } = results
  const { machine, options } = meta
  const fnbus = machine.fnbus
  const peers = machine.peers
  const lines = [
    '# fnbus benchmark results',
    '',
    '<!-- Generated by benchmarks/report.js from benchmarks/results.json. Do not edit by hand: run `npm run bench`. -->',
    '',
  ]
  if (options.pairs < 5) {
    lines.push(`> **A short run (${options.pairs} pair${options.pairs === 1 ? '' : 's'}): fewer than the five pairs the issue asks for; not for quoting.**`, '')
  }
  lines.push(
    `- **Run**: ${meta.date.slice(0, 16).replace('T', ' ')} UTC, ${meta.seconds} s in all; ${options.pairs} pairs per comparison (systems alternated, each round starting one system further on), each timed run ${options.warmupMs} ms of warm-up then ${options.durationMs} ms recorded; medians over the pairs.`,
    `- **fnbus**: ${fnbus.version}, commit ${fnbus.commit ?? 'unknown'}${fnbus.srcModified ? ' with uncommitted changes under src/' : ''} (aedes ${fnbus.aedes}, MQTT.js ${fnbus.mqtt}, msgpackr ${fnbus.msgpackr}).`,
    `- **Machine**: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB; ${machine.os}; Node ${machine.node}; load average at the start ${machine.loadAverageAtStart.join(' / ')}${machine.loadAverageAtEnd === undefined ? '' : `, at the end ${machine.loadAverageAtEnd.join(' / ')}`} (a shared machine: other work ran beside this).${loaded(machine) ? ` **The machine was loaded** (a load average above its ${machine.cores} cores): rates and latencies are noisy and lower than on an idle machine; the ratios within the run and the CPU time per call are the figures to read.` : ''}`,
    `- **Peers**: aedes ${peers.aedes}, MQTT.js ${peers.mqtt}, msgpackr ${peers.msgpackr}, Moleculer ${peers.moleculer}, nats.js ${peers.nats}, nats-server ${peers.natsServer ?? 'unknown'}, ${peers.mosquitto ?? 'Mosquitto (version unknown)'}.`,
    '',
    'Ratios are fnbus ÷ peer of the medians: above 1 fnbus does more per second; for latency and memory, below 1 fnbus',
    'takes less. A bar\'s verdict is on the ratio of the medians; beside it, the ratio within each round (fnbus\' and the',
    'peer\'s runs of the same round, seconds apart) shows how far this machine\'s noise moves it. [README.md](README.md)',
    'describes each workload.'
  )
  return lines.join('\n')
}

function barSection (results) {
  const byId = new Map(results.workloads.map(w => [w.id, w]))
  const rows = []
  const missed = []
  let met = 0
  let measured = 0
  for (const bar of bars(results.meta.options)) {
    const group = byId.get(bar.workload)?.groups?.find(g => g.id === bar.group)
    const system = bar.system ?? BASELINE
    const value = group === undefined ? null : ratioOf(group, bar.peer, bar.metric, system)
    const format = bar.metric === 'rate' ? rate : micros
    if (value == null) {
      rows.push([bar.text, '—', '—', '—', '—', 'not measured in this run'])
      continue
    }
    measured++
    const ok = bar.better === 'higher' ? value >= bar.target : value <= bar.target
    if (ok) met++
    else missed.push(bar.text)
    rows.push([
      bar.text,
      format(group.systems[system].median[bar.metric]),
      format(group.systems[bar.peer].median[bar.metric]),
      `**${ratio(value)}** (target ${bar.better === 'higher' ? '≥' : '≤'} ${bar.target.toFixed(2)}×)`,
      roundRatios(group, bar.peer, bar.metric, system),
      ok ? 'met' : '**NOT met**',
    ])
  }
  const verdict = measured === 0
    ? 'No bar was measured in this run.'
    : `**${met} of ${measured} bars met.**${missed.length > 0 ? ` Not met: ${missed.map(text => text.split(':')[0]).join('; ')}. The [profile](#where-fnbus-spends-its-time) below shows where fnbus' time goes; [NOTES.md](NOTES.md) measures what stands between each of them and its bar (floors, costs of each guarantee).` : ''}`
  return ['## The bars of issues 6 and 7', '', table(['bar', 'fnbus', 'peer', 'fnbus ÷ peer', 'within each round (min – max)', 'verdict'], rows), '', verdict].join('\n')
}

/** The `cpu<Role>` fields of a median (lib/cpu.js), in the order the workload measured them. */
/** The CPU roles any system of the group measured, in the order they first appear (a one-process system has fewer). */
function cpuRoles (group) {
  const keys = new Set(Object.values(group.systems).flatMap(({ median }) => Object.keys(median).filter(key => key.startsWith('cpu'))))
  return [...keys].map(key => key.slice(3).toLowerCase())
}

// A role with no figure at all (undefined, not null) runs in the first role's process (functions as threads: caller,
// worker and broker are one process), whose CPU time is then the whole call's.
function cpuTotal (median, roles) {
  const parts = roles.map(role => median[`cpu${role[0].toUpperCase()}${role.slice(1)}`]).filter(part => part !== undefined)
  return parts.some(part => part == null) ? null : parts.reduce((a, b) => a + b, 0)
}

function cpuCell (median, roles) {
  const parts = roles.map(role => median[`cpu${role[0].toUpperCase()}${role.slice(1)}`])
  if (parts.every(part => part == null)) return '—'
  const total = cpuTotal(median, roles)
  if (parts.slice(1).every(part => part === undefined)) return `${total === null ? '?' : total.toFixed(0)} (one process)`
  return `${parts.map(part => part == null ? '?' : part.toFixed(0)).join(' + ')}${total === null ? '' : ` = ${total.toFixed(0)}`}`
}

/** A comparison table: one row per system, with its ratios against fnbus. */
function comparison (workload, group, { latency = true, per = 'call' } = {}) {
  const roles = cpuRoles(group)
  const cpu = roles.length > 0
  const ours = group.systems[BASELINE]?.median
  const header = [
    'system', 'rate', ...(latency ? ['p50', 'p99'] : []),
    'fnbus ÷ this (rate)', ...(latency ? ['fnbus ÷ this (p50)'] : []),
    ...(cpu ? [`CPU µs per ${per}: ${roles.join(' + ')}`, 'fnbus ÷ this (CPU)'] : []),
    'rate, each run (min – max)',
  ]
  const rows = Object.entries(group.systems).map(([system, { median, runs }]) => {
    // a run of a few systems (--systems) may leave fnbus out: its ratios are then not given
    const cpuRatio = system === BASELINE || !cpu || ours === undefined ? null : cpuTotal(ours, roles) / cpuTotal(median, roles)
    return [
      `${system === BASELINE ? '**fnbus**' : system}: ${workload.systems[system]}`,
      rate(median.rate),
      ...(latency ? [micros(median.p50), micros(median.p99)] : []),
      system === BASELINE ? '' : ratio(ratioOf(group, system, 'rate')),
      ...(latency ? [system === BASELINE ? '' : ratio(ratioOf(group, system, 'p50'))] : []),
      ...(cpu ? [cpuCell(median, roles), system === BASELINE ? '' : ratio(cpuRatio)] : []),
      spread(runs, 'rate', rate),
    ]
  })
  const errors = Object.entries(group.systems).flatMap(([system, { runs }]) => {
    const count = runs.reduce((sum, run) => sum + (run.errors ?? 0), 0)
    return count > 0 ? [`${system}: ${count} failed calls (first: ${runs.find(run => run.firstError)?.firstError})`] : []
  })
  return [`### ${group.label}`, '', table(header, rows), ...(errors.length > 0 ? ['', `Errors — ${errors.join('; ')}`] : [])].join('\n')
}

const SECTIONS = {
  sync: (w) => [
    ['Caller, worker and broker are three processes; the worker echoes the payload. Rate in calls/s. CPU: user + system',
      'time of each process over the whole run (warm-up included) per call, from /proc; the NATS peers\' broker is the',
      'machine\'s nats-server. A figure per call is steadier than a rate on a shared machine: a process waiting for a core',
      'loses throughput, not CPU time.'].join('\n'),
    ...w.groups.map(g => comparison(w, g)),
  ],
  inprocess: (w) => [
    'Caller and function in one process, 64 B. Rate in calls/s.',
    ...w.groups.map(g => comparison(w, g)),
  ],
  async: (w) => [
    ['A fresh store each run; the accept rate is stored-and-acknowledged invocations per second (latency: each call until its',
      'durable acknowledgement), the drain rate is invocations run and acknowledged per second by a worker that comes online',
      'after them. CPU per invocation; "client" is the caller in the first table, the worker in the second.'].join('\n'),
    comparison(w, w.groups[0], { per: 'invocation' }),
    comparison(w, w.groups[1], { latency: false, per: 'invocation' }),
  ],
  events: (w) => [
    'Rate: events per second received by the subscriber while the publisher sends flat out (QoS 0). CPU per event delivered.',
    ...w.groups.map(g => comparison(w, g, { latency: false, per: 'event' })),
  ],
  memory: (w) => w.groups.map(g => {
    const rows = Object.entries(g.systems).map(([system, { median, runs }]) => [
      `${system === BASELINE ? '**fnbus**' : system}: ${w.systems[system]}`,
      bytes(median.rssBefore),
      bytes(median.rssAfter),
      bytes(median.rssPerConnection),
      bytes(median.heapUsedPerConnection),
      system === BASELINE ? '' : ratio(ratioOf(g, system, 'rssPerConnection')),
      spread(runs, 'rssPerConnection', bytes),
    ])
    return [
      `Resident set size of the broker process (after a full GC) before and after ${g.params.connections} idle connections.`,
      '',
      `### ${g.label}`,
      '',
      table(['system', 'RSS before', 'RSS after', 'RSS per connection', 'JS heap per connection', 'fnbus ÷ this (per connection)', 'per connection, each run'], rows),
    ].join('\n')
  }),
  metrics: (w) => [
    ['The same fnbus with the metrics plugin on (`fnbus`: prom-client counting every invocation, /metrics scraped every',
      'second from inside the gateway process) and off, each with a gateway, worker and caller of its own, in alternation.',
      'The rate ratio is the plugin\'s cost on the hot path; the CPU columns say which process pays it. The third row is',
      'the A/A control, a second setup identical to "off": how far it lands from "off" is the noise of this machine alone.'].join('\n'),
    ...w.groups.map(g => comparison(w, g, { latency: true })),
  ],
  bridge: (w) => w.groups.map(g => {
    const rows = Object.entries(g.systems).map(([system, { median, runs }]) => [
      `${system === BASELINE ? '**fnbus**' : system}: ${w.systems[system]}`,
      rate(median.forwardRate),
      system === BASELINE ? '' : ratio(ratioOf(g, system, 'forwardRate')),
      rate(median.acceptRate),
      rate(median.drainRate),
      system === BASELINE ? '' : ratio(ratioOf(g, system, 'drainRate')),
      `${integer.format(median.reconnectMs)} ms`,
      `${bytes(median.rssBefore)} → ${bytes(median.rssPeak)}`,
      runs.every(run => run.forwardOrdered === 1 && run.drainOrdered === 1) ? 'all, in order' : 'NOT all in order',
      spread(runs, 'forwardRate', rate),
    ])
    return [
      ['Local broker and remote Mosquitto are processes of their own, publisher and remote subscriber (QoS 1, a persistent',
        `session) in the orchestrator. Forwarding: ${g.params.forwardCount} messages with 100 unacknowledged, first publish to last`,
        `arrival upstream. Backlog: the remote stopped, ${g.params.backlogCount} messages accepted locally, the remote started`,
        'again; drain from the first to the last arrival (the reconnection before it apart). RSS of the local broker.'].join('\n'),
      '',
      `### ${g.label}`,
      '',
      table(['system', 'forwarding', 'fnbus ÷ this', 'backlog accepted', 'backlog drained', 'fnbus ÷ this (drain)', 'reconnection', 'RSS idle → peak', 'delivered', 'forwarding, each run'], rows),
    ].join('\n')
  }),
  cluster: (w) => [
    ['Every gateway is `fnbus start` (its own data directory and free port); gateways a and b joined to a nats-server of',
      `the run's own${w.nats?.own ? '' : ' (here: an external one)'} with \`--cluster\` and \`--gateway-name\`. Cross-gateway: the caller on a, the echo supervised by b`,
      '(a has no worker of its own: every call crosses a → NATS → b → worker and back, checked on a\'s `fnbus status` after each',
      'run); Moleculer: a caller node and a worker node on the same nats-server. Same gateway: the caller on b, b\'s own worker',
      'answers, against a gateway without `--cluster`. nats-request, not a peer: bare nats.js request/reply on the same server,',
      'the floor of a call over NATS. CPU: every process of the path (the nats-server\'s too; a, b: the gateways); a Moleculer',
      'or NATS call has no gateways (0). Async accept: a gateway with `"cluster": { "replicas": 1 }` and no function served, an',
      'FCClient storing invocations into its emptied work-queue stream, against bare nats.js JetStream publishers into a stream',
      'of the same config on the same server (each publish awaiting its PubAck); latency: each call until its acknowledgement.'].join('\n'),
    ...w.groups.map(g => comparison({ systems: g.id.startsWith('cluster-local') ? w.localSystems : g.id.startsWith('cluster-async') ? w.asyncSystems : w.systems }, g,
      g.id.startsWith('cluster-async') ? { latency: true, per: 'invocation' } : { latency: true })),
    ['### Memory (RSS)', '', table(['process', 'idle', 'after the load'], [...(w.memory ?? []), ...(w.asyncMemory ?? [])].map(m => [m.process, bytes(m.idle), bytes(m.afterLoad)]))].join('\n'),
  ],
  profile: (w) => [
    ['One more run of fnbus alone under V8\'s CPU profiler (`--cpu-prof`, 200 µs sampling), cut to the measured window.',
      'V8 samples wall time: "busy" is the share of the window the process was not idle in its event loop (running, in a',
      'syscall, or waiting for a core on a loaded machine); one near 100% is the bottleneck. Self time in % of the window;',
      'fnbus frames are mapped to `src/` through the build\'s source maps. The rates while profiled are lower than above.'].join('\n'),
    ...w.profiles.map(p => [
      `### ${p.label}: ${rate(p.rate)}, p50 ${micros(p.p50)}, p99 ${micros(p.p99)} (while profiled)`,
      ...Object.entries(p.processes).map(([role, summary]) => [
        `**${role}**: busy ${summary.busyPercent}% — ${summary.areas.slice(0, 8).map(a => `${a.area} ${a.percent}%`).join(', ')}`,
        '',
        table(['self %', 'function', 'where'], summary.functions.slice(0, 10).map(f => [f.percent.toFixed(1), `\`${f.function}\``, f.location === '' ? f.area : `\`${f.location}\``])),
      ].join('\n')),
    ].join('\n\n')),
  ],
}

function workloadSection (workload, index) {
  const title = `## ${index}. ${workload.title}`
  if (workload.error !== undefined) return [title, '', `**This workload failed**: ${workload.error}`].join('\n')
  return [title, '', ...SECTIONS[workload.id](workload).flatMap(part => [part, ''])].join('\n').trimEnd()
}

export function render (results) {
  const sections = [header(results), barSection(results)]
  results.workloads.forEach((workload, i) => {
    // a stable anchor for the link from the verdict
    const section = workloadSection(workload, i + 1)
    sections.push(workload.id === 'profile' ? section.replace(/^## \d+\. .*$/m, '## Where fnbus spends its time') : section)
  })
  return sections.join('\n\n') + '\n'
}

export async function writeReport (jsonPath, mdPath) {
  const results = JSON.parse(await readFile(jsonPath, 'utf8'))
  await writeFile(mdPath, render(results))
  return mdPath
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const here = fileURLToPath(new URL('.', import.meta.url))
  const jsonPath = process.argv[2] ?? `${here}results.json`
  const mdPath = process.argv[3] ?? `${here}RESULTS.md`
  console.log(await writeReport(jsonPath, mdPath))
}
