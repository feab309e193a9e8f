// Workload 9 (issue 16): gateways as one bus on NATS, Sync calls. Every gateway is `fnbus start` as users run it
// (roles/cli.js: a configuration file, its own data directory, a free port, `--cluster nats://… --gateway-name NAME`).
//   1. cross-gateway: gateway a supervises nothing, gateway b supervises the echo (Link IoT Edge's callback form and
//      an async handler, as the Sync workload's CLI rows); an FCClient caller on a calls Bench/echo, which only b's
//      worker serves: every call crosses a → NATS → b → worker → b → NATS → a. Against Moleculer 0.15 with its NATS
//      transporter, a caller node and a worker node (two processes), on the same NATS server.
//   2. the same gateway in cluster mode (b: the caller on b itself, b's own worker answers, a is its peer) against
//      a standalone gateway (no --cluster) with the same functions.
//   3. memory: RSS of every gateway, function and node process, idle (all started, nothing run yet) and after the load.
//   4. async (`asyncPart`): Async accept through a clustered gateway, `fnbus start --cluster` with
//      `"cluster": { "replicas": 1 }` (no function served: the invocations stay stored in its work-queue stream), an
//      FCClient caller storing `--async-count` invocations of 64 B with `inFlight` unacknowledged (fc.invokeAsync, each
//      with the SDK's idempotency key, so a msgID), against a bare nats.js 2.x JetStream publisher (js.publish awaiting
//      each PubAck) on the same nats-server, into a stream of the gateway's stream's own config (read back from
//      JetStream: R1, file, work queue, discard new per subject, 24 h duplicate window), without and with a msgID on
//      each publish. Both streams are purged before each run (nothing drains them), so every run starts empty.
// Each comparison's systems alternate (lib/alternate.js), medians of the rounds, 64 B, serially and with `inFlight`
// calls in flight. After every cross-gateway run, a's `fnbus status --json` must show its calls sent to b grown by at
// least the run's calls (they crossed), and a must serve the echo with no worker of its own.
//
// NATS: a nats-server of the workload's own (/usr/sbin/nats-server, JetStream on, a free port, its store in the run's
// temporary folder), unless --nats names one: the machine's server on 4222 also carries other engineers' tests (their
// traffic would land in these runs), and several nats-server processes run on this machine, so only a server of our
// own has a pid whose CPU time is this run's alone.
//
//   node benchmarks/workloads/cluster.js [--pairs 5] [--warmup 500] [--duration 2000] [--in-flight 64] [--nats URL]
//                                        [--parts cross,local,async] [--async-count N] [--profile DIR] [--profile-only]
//                                        [--profile-async] [--baseline-bin OTHER_BUILD/bin/fnbus.js]  (also `node benchmarks/run.js --only cluster`)
import { execFile, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { alternate, group } from '../lib/alternate.js'
import { withCpuPerCall } from '../lib/cpu.js'
import { freePort, waitForPort } from '../lib/ports.js'
import { ProcessGroup } from '../lib/processes.js'
import { summarizeProfile } from '../lib/profile.js'
import { FUNCTIONS as CLI_FUNCTIONS } from '../roles/cli.js'
import { connect as natsConnect } from 'nats'
import { runTimeout } from './sync.js'

const BIN = fileURLToPath(new URL('../../bin/fnbus.js', import.meta.url))
const NATS_SERVER = '/usr/sbin/nats-server'
const SIZE = 64

export const SYSTEMS = {
  fnbus: 'cross-gateway: the caller on gateway a, the echo (callback form) supervised by gateway b; `fnbus start --cluster` both',
  'fnbus-async': 'the same, the echo an async handler',
  'moleculer-nats': 'Moleculer 0.15, NATS transporter: a caller node and a worker node',
  'nats-request': 'not a peer, the floor of a call over NATS: nats.js request/reply, a caller and a responder process',
}

export const LOCAL_SYSTEMS = {
  fnbus: 'the caller and the echo (callback form) on one gateway, that gateway in a cluster (`--cluster`, one peer)',
  standalone: 'the same on a gateway without `--cluster`',
}

export const ASYNC_SYSTEMS = {
  fnbus: 'fc.invokeAsync through `fnbus start --cluster` ("replicas": 1): `accepted` once JetStream acknowledged the write (a msgID from the SDK\'s idempotency key)',
  jetstream: 'bare nats.js 2.x js.publish awaiting each PubAck, a stream of the same config (R1, file, work queue)',
  'jetstream-msgid': 'the same with a unique msgID on each publish, as the gateway sends (context, not the bar\'s peer)',
  'jetstream-lean': 'not a peer: nats.js 2.x nc.publish with a reply on one inbox subscription and a msgID, PubAcks matched by token (the gateway\'s own path, without the gateway)',
}

export async function run ({ options, log, tempDir }) {
  const parts = options.clusterParts ?? ['cross', 'local', 'async']
  const nats = options.clusterNats === undefined ? await natsServer(await tempDir('cluster-nats')) : { url: options.clusterNats, pid: null, stop: async () => {} }
  log(`cluster: NATS at ${nats.url}${nats.pid === null ? '' : ` (our own nats-server, pid ${nats.pid})`}`)
  try {
    const asyncSystems = options.clusterBaselineBin === undefined ? ASYNC_SYSTEMS : { ...ASYNC_SYSTEMS, 'fnbus-baseline': `the same gateway from another build (${options.clusterBaselineBin})` }
    const out = { systems: SYSTEMS, localSystems: LOCAL_SYSTEMS, asyncSystems, groups: [], nats: { url: nats.url, own: nats.pid !== null } }
    if (parts.includes('async')) {
      const result = await asyncPart({ options, log, tempDir, nats })
      out.groups.push(...result.groups)
      out.asyncMemory = result.memory
    }
    if (parts.includes('cross') || parts.includes('local')) {
      const result = await syncParts({ options, log, tempDir, nats, parts })
      out.groups.push(...result.groups)
      out.memory = result.memory
      out.crossCalls = result.crossCalls
    }
    return out
  } finally {
    await nats.stop()
  }
}

/**
 * Async accept (part 4 above): the gateway's FCClient caller against bare JetStream publishers, alternated, each run
 * `count` invocations after `warmup` unrecorded ones into an emptied stream.
 */
async function asyncPart ({ options, log, tempDir, nats }) {
  const procs = new ProcessGroup()
  const nc = await natsConnect({ servers: nats.url })
  try {
    const jsm = await nc.jetstreamManager()
    const gateway = await procs.start('cli', 'gateway', { dataDir: await tempDir('cluster-async'), concurrency: options.inFlight, supervise: [], cluster: { servers: [nats.url], name: 'async', replicas: 1 } })
    const caller = await procs.start('fnbus', 'asyncCaller', { url: gateway.info.url })
    // the gateway makes its streams once NATS answered: its first accepted invocation says they are there
    await caller.call('ready', { timeoutMs: 30_000 }, { timeoutMs: 40_000 })
    // a before/after of two builds: the other build's gateway too, its streams under a prefix of their own
    const baseline = options.clusterBaselineBin === undefined
      ? undefined
      : await procs.start('cli', 'gateway', { dataDir: await tempDir('cluster-async-baseline'), concurrency: options.inFlight, supervise: [], cluster: { servers: [nats.url], name: 'baseline', replicas: 1, prefix: 'fnbusbaseline' }, bin: options.clusterBaselineBin })
    const baselineCaller = baseline === undefined ? undefined : await procs.start('fnbus', 'asyncCaller', { url: baseline.info.url })
    await baselineCaller?.call('ready', { timeoutMs: 30_000 }, { timeoutMs: 40_000 })
    const gatewayStream = (await jsm.streams.list().next()).find(info => info.config.name === 'FNBUS_ASYNC')
    if (gatewayStream === undefined) throw new Error('the gateway made no FNBUS_ASYNC stream')
    const { config } = gatewayStream
    if (config.num_replicas !== 1 || config.storage !== 'file' || config.retention !== 'workqueue') throw new Error(`the gateway's stream is not R1, file, work queue: ${JSON.stringify(config)}`)
    // one subject, as the gateway's one function has (its token: base64url of Bench/async)
    const subject = `bench-${process.pid}.async.QmVuY2gvYXN5bmM`
    const peerConfig = { ...config, name: `BENCH_${process.pid}_ASYNC`, subjects: [subject] }
    for (const key of ['sealed', 'metadata']) delete peerConfig[key]
    await jsm.streams.add(peerConfig)
    log(`cluster async: the gateway's stream ${config.name} (${config.storage}, R${config.num_replicas}, ${config.retention}, discard ${config.discard}${config.discard_new_per_subject ? ' per subject' : ''}, duplicate window ${config.duplicate_window / 3.6e12} h); the peer's ${peerConfig.name} the same`)
    const publishers = {
      jetstream: await procs.start('nats', 'jsPublisher', { natsUrl: nats.url, subject }),
      'jetstream-msgid': await procs.start('nats', 'jsPublisher', { natsUrl: nats.url, subject, msgId: true }),
      'jetstream-lean': await procs.start('nats', 'jsLeanPublisher', { natsUrl: nats.url, subject, msgId: true }),
    }
    const processes = {
      'gateway (fnbus start --cluster, "replicas": 1, no functions)': gateway.info.gatewayPid,
      'fnbus caller (FCClient, in a bench role process)': caller.pid,
      'JetStream publisher (nats.js, in a bench role process)': publishers.jetstream.pid,
      'nats-server (ours)': nats.pid,
    }
    const rssIdle = rssOfAll(processes)
    const count = options.asyncCount
    const warmup = Math.min(1000, Math.floor(count / 10))
    const load = { size: SIZE, concurrency: options.inFlight, count, warmup }
    const streamOf = system => system === 'fnbus' ? config.name : system === 'fnbus-baseline' ? 'FNBUSBASELINE_ASYNC' : peerConfig.name
    const systems = Object.keys(ASYNC_SYSTEMS)
    if (baseline !== undefined) systems.splice(1, 0, 'fnbus-baseline')
    const runs = await alternate({
      systems,
      pairs: options.pairs,
      label: `cluster async accept, ${count} invocations`,
      log,
      measure: async system => {
        // every run into an empty stream; the gateway reads its functions' counts every second (its maxStored check)
        await jsm.streams.purge(streamOf(system))
        await new Promise(resolve => setTimeout(resolve, 1500))
        const client = system === 'fnbus' ? caller : system === 'fnbus-baseline' ? baselineCaller : publishers[system]
        const gatewayPid = system === 'fnbus' ? gateway.info.gatewayPid : system === 'fnbus-baseline' ? baseline.info.gatewayPid : null
        const pids = { client: client.pid, gateway: gatewayPid, nats: nats.pid }
        const result = await withCpuPerCall(pids, () => client.call('run', load, { timeoutMs: 300_000 }))
        result.cpuGateway ??= 0
        const stored = (await jsm.streams.info(streamOf(system))).state.messages
        if (stored !== count + warmup) throw new Error(`${system}: ${count + warmup} acknowledged, ${stored} in the stream`)
        result.stored = stored
        return result
      },
    })
    await jsm.streams.delete(peerConfig.name).catch(() => {})
    const rssAfter = rssOfAll(processes)
    return {
      groups: [group('cluster-async-accept', `Async accept through a clustered gateway (R1), ${options.inFlight} in flight, ${SIZE} B`, load, runs)],
      memory: Object.keys(processes).map(name => ({ process: name, idle: rssIdle[name], afterLoad: rssAfter[name] })),
    }
  } finally {
    await procs.close()
    await nc.close()
  }
}

/** The Sync parts (1–3 above). */
async function syncParts ({ options, log, tempDir, nats, parts }) {
  const procs = new ProcessGroup()
  const cluster = name => ({ servers: [nats.url], name })
  try {
    // b first: a's caller waits for b's announcement (waitForWorker) rather than failing
    const b = await procs.start('cli', 'gateway', { dataDir: await tempDir('cluster-b'), concurrency: options.inFlight, supervise: ['callback', 'async'], cluster: cluster('b') })
    const a = await procs.start('cli', 'gateway', { dataDir: await tempDir('cluster-a'), concurrency: options.inFlight, supervise: [], cluster: cluster('a') })
    const standalone = await procs.start('cli', 'gateway', { dataDir: await tempDir('cluster-standalone'), concurrency: options.inFlight, supervise: ['callback', 'async'] })
    const namespace = `fnbus-bench-cluster-${process.pid}`
    const moleculerWorker = await procs.start('moleculer', 'worker', { natsUrl: nats.url, namespace })
    const subject = `fnbus-bench.${process.pid}.echo`
    const natsWorker = await procs.start('nats', 'worker', { natsUrl: nats.url, subject })
    const callers = {
      fnbus: await procs.start('fnbus', 'caller', { url: a.info.url, fn: CLI_FUNCTIONS.callback.name }),
      'fnbus-async': await procs.start('fnbus', 'caller', { url: a.info.url, fn: CLI_FUNCTIONS.async.name }),
      'moleculer-nats': await procs.start('moleculer', 'caller', { natsUrl: nats.url, namespace }),
      'nats-request': await procs.start('nats', 'caller', { natsUrl: nats.url, subject }),
    }
    const localCallers = {
      fnbus: await procs.start('fnbus', 'caller', { url: b.info.url, fn: CLI_FUNCTIONS.callback.name }),
      standalone: await procs.start('fnbus', 'caller', { url: standalone.info.url, fn: CLI_FUNCTIONS.callback.name }),
    }
    const bWorker = form => b.info.workerPids[CLI_FUNCTIONS[form].name]
    // the processes of a call's path, in order (a, b: the gateways); Moleculer has no gateways (0 µs), a standalone call no NATS
    const pids = {
      fnbus: { caller: callers.fnbus.pid, a: a.info.gatewayPid, nats: nats.pid, b: b.info.gatewayPid, worker: bWorker('callback') },
      'fnbus-async': { caller: callers['fnbus-async'].pid, a: a.info.gatewayPid, nats: nats.pid, b: b.info.gatewayPid, worker: bWorker('async') },
      'moleculer-nats': { caller: callers['moleculer-nats'].pid, nats: nats.pid, worker: moleculerWorker.pid },
      'nats-request': { caller: callers['nats-request'].pid, nats: nats.pid, worker: natsWorker.pid },
    }
    const localPids = {
      fnbus: { caller: localCallers.fnbus.pid, gateway: b.info.gatewayPid, worker: bWorker('callback'), nats: nats.pid },
      standalone: { caller: localCallers.standalone.pid, gateway: standalone.info.gatewayPid, worker: standalone.info.workerPids[CLI_FUNCTIONS.callback.name] },
    }

    // a serves the echo through b only: no worker of its own, b's gateway listed as its worker
    const initial = await joined(a.info.url, 'b')
    checkNoLocalWorker(initial)
    log(`cluster: a's members ${initial.cluster.members.map(m => `${m.name} [${m.functions.join(', ')}]`).join('; ')}`)

    const processes = {
      'gateway a (fnbus start --cluster, no functions)': a.info.gatewayPid,
      'gateway b (fnbus start --cluster, the echo functions)': b.info.gatewayPid,
      'gateway standalone (fnbus start)': standalone.info.gatewayPid,
      'b\'s echo function, callback form (fnbus run)': bWorker('callback'),
      'b\'s echo function, async form (fnbus run)': bWorker('async'),
      'fnbus caller on a (FCClient, in a bench role process)': callers.fnbus.pid,
      'Moleculer worker node (in a bench role process)': moleculerWorker.pid,
      'Moleculer caller node (in a bench role process)': callers['moleculer-nats'].pid,
      'nats-server (ours)': nats.pid,
    }
    const rssIdle = rssOfAll(processes)

    // a's calls sent to b, and its round trips to b (hand-over to answer: NATS both ways and b's part)
    const towardB = async () => {
      const member = (await status(a.info.url)).cluster.members.find(m => m.name === 'b')
      return { sent: member?.calls.sent ?? 0, count: member?.latency.count ?? 0, sumSeconds: member?.latency.sumSeconds ?? 0 }
    }
    const groups = []
    for (const concurrency of [1, options.inFlight]) {
      const label = `${SIZE} B, ${concurrency === 1 ? 'serial' : `${concurrency} in flight`}`
      const params = { size: SIZE, concurrency, warmupMs: options.warmupMs, durationMs: options.durationMs }
      const timeoutMs = runTimeout(options)
      const cross = parts.includes('cross') && await alternate({
        systems: Object.keys(callers),
        pairs: options.pairs,
        label: `cluster cross-gateway ${label}`,
        log,
        measure: async system => {
          const gateways = system.startsWith('fnbus')
          const before = gateways ? await towardB() : undefined
          const result = await withCpuPerCall(pids[system], () => callers[system].call('run', params, { timeoutMs }))
          if (!gateways) {
            result.cpuA = 0
            result.cpuB = 0
          } else {
            // every call of the run crossed to b (more, if a timed-out call was counted as sent and not completed)
            const after = await towardB()
            result.crossed = after.sent - before.sent
            // the mean of a's round trips to b over the run, µs: the rest of a call's time is the caller, its hop to a and a
            result.peerRoundTrip = after.count > before.count ? Math.round((after.sumSeconds - before.sumSeconds) / (after.count - before.count) * 1e7) / 10 : null
            if (result.crossed < result.totalCalls) throw new Error(`${system}: ${result.totalCalls} calls made, only ${result.crossed} sent to gateway b`)
          }
          return result
        },
      })
      if (cross) groups.push(group(`cluster-cross-c${concurrency}`, `cross-gateway, ${label}`, params, cross))
      const local = parts.includes('local') && await alternate({
        systems: Object.keys(localCallers),
        pairs: options.pairs,
        label: `cluster same-gateway ${label}`,
        log,
        measure: async system => {
          const result = await withCpuPerCall(localPids[system], () => localCallers[system].call('run', params, { timeoutMs }))
          // a standalone call passes no nats-server
          result.cpuNats ??= 0
          return result
        },
      })
      if (local) groups.push(group(`cluster-local-c${concurrency}`, `same gateway, cluster mode or not, ${label}`, params, local))
    }
    const rssAfter = rssOfAll(processes)
    const final = await status(a.info.url)
    checkNoLocalWorker(final)
    const member = final.cluster.members.find(m => m.name === 'b')
    const memory = Object.keys(processes).map(name => ({ process: name, idle: rssIdle[name], afterLoad: rssAfter[name] }))
    return {
      groups,
      memory,
      crossCalls: { sent: member.calls.sent, answered: member.calls.answered, unsent: member.calls.unsent },
    }
  } finally {
    await procs.close()
  }
}

/**
 * One more cross-gateway run of each concurrency under V8's CPU profiler: gateways a and b with --cpu-prof (200 µs
 * sampling), each profile cut to the measured window and summarised (lib/profile.js). Not a comparison.
 */
export async function profile ({ options, log, tempDir, profileDir }) {
  await mkdir(profileDir, { recursive: true })
  const nats = options.clusterNats === undefined ? await natsServer(await tempDir('cluster-nats')) : { url: options.clusterNats, pid: null, stop: async () => {} }
  const cluster = name => ({ servers: [nats.url], name })
  const profiles = []
  try {
    for (const concurrency of [1, options.inFlight]) {
      const dir = await mkdtemp(join(profileDir, `c${concurrency}-`))
      const execArgv = ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '200']
      const procs = new ProcessGroup()
      let measured, a, b, caller
      try {
        b = await procs.start('cli', 'gateway', { dataDir: await tempDir('cluster-prof-b'), concurrency: options.inFlight, supervise: ['callback'], cluster: cluster('b'), execArgv })
        a = await procs.start('cli', 'gateway', { dataDir: await tempDir('cluster-prof-a'), concurrency: options.inFlight, supervise: [], cluster: cluster('a'), execArgv })
        caller = await procs.start('fnbus', 'caller', { url: a.info.url, fn: CLI_FUNCTIONS.callback.name }, { execArgv })
        const durationMs = Math.max(options.durationMs, 3000)
        measured = await caller.call('run', { size: SIZE, concurrency, warmupMs: options.warmupMs, durationMs }, { timeoutMs: runTimeout({ ...options, durationMs }) })
      } finally {
        await procs.close()
      }
      const files = await readdir(dir)
      const processes = {}
      for (const [role, pid] of [['caller', caller.pid], ['gateway a', a.info.gatewayPid], ['gateway b', b.info.gatewayPid], ['worker', b.info.workerPids[CLI_FUNCTIONS.callback.name]]]) {
        const file = files.find(name => name.includes(`.${pid}.`))
        if (file !== undefined) processes[role] = summarizeProfile(join(dir, file), { startMicros: measured.window.start, endMicros: measured.window.end })
      }
      log(`cluster profile c${concurrency}: ${Math.round(measured.rate)}/s, p50 ${measured.p50} µs; busy ${Object.entries(processes).map(([role, p]) => `${role} ${p.busyPercent}%`).join(', ')}`)
      profiles.push({ concurrency, rate: measured.rate, p50: measured.p50, p99: measured.p99, processes, dir })
    }
  } finally {
    await nats.stop()
  }
  return profiles
}

/**
 * The async part once more under V8's CPU profiler: the clustered gateway and its FCClient caller with --cpu-prof
 * (200 µs sampling), `--async-count` invocations accepted, each profile cut to that window. Not a comparison.
 */
export async function profileAsync ({ options, log, tempDir, profileDir }) {
  await mkdir(profileDir, { recursive: true })
  const nats = options.clusterNats === undefined ? await natsServer(await tempDir('cluster-nats')) : { url: options.clusterNats, pid: null, stop: async () => {} }
  const dir = await mkdtemp(join(profileDir, 'async-'))
  const execArgv = ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '200']
  const procs = new ProcessGroup()
  let gateway, caller
  const window = {}
  let measured
  try {
    gateway = await procs.start('cli', 'gateway', { dataDir: await tempDir('cluster-prof-async'), concurrency: options.inFlight, supervise: [], cluster: { servers: [nats.url], name: 'async', replicas: 1 }, execArgv })
    caller = await procs.start('fnbus', 'asyncCaller', { url: gateway.info.url }, { execArgv })
    await caller.call('ready', { timeoutMs: 30_000 }, { timeoutMs: 40_000 })
    const count = options.asyncCount
    const pids = { client: caller.pid, gateway: gateway.info.gatewayPid, nats: nats.pid }
    window.start = Number(process.hrtime.bigint() / 1000n)
    measured = await withCpuPerCall(pids, () => caller.call('run', { size: SIZE, concurrency: options.inFlight, count, warmup: 0 }, { timeoutMs: 300_000 }))
    window.end = Number(process.hrtime.bigint() / 1000n)
  } finally {
    await procs.close()
    await nats.stop()
  }
  const files = await readdir(dir)
  const processes = {}
  for (const [role, pid] of [['caller', caller.pid], ['gateway', gateway.info.gatewayPid]]) {
    const file = files.find(name => name.includes(`.${pid}.`))
    if (file !== undefined) processes[role] = summarizeProfile(join(dir, file), { startMicros: window.start, endMicros: window.end }, 30)
  }
  log(`cluster profile async accept: ${Math.round(measured.rate)}/s, CPU µs per invocation client ${measured.cpuClient?.toFixed(1)}, gateway ${measured.cpuGateway?.toFixed(1)}, nats ${measured.cpuNats?.toFixed(1)}; busy ${Object.entries(processes).map(([role, p]) => `${role} ${p.busyPercent}%`).join(', ')}`)
  return [{ concurrency: options.inFlight, label: 'async accept', rate: measured.rate, p50: measured.p50, p99: measured.p99, cpu: { client: measured.cpuClient, gateway: measured.cpuGateway, nats: measured.cpuNats }, processes, dir }]
}

/** a's status as `fnbus status --json` prints it (the CLI users run, over the bus). */
async function status (url) {
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [BIN, 'status', '--json', '--url', url], { maxBuffer: 16 * 1024 * 1024 })
    return JSON.parse(stdout)
  } catch (err) {
    // exit status 1: not ready, its JSON printed all the same
    if (typeof err.stdout === 'string' && err.stdout.startsWith('{')) return JSON.parse(err.stdout)
    throw err
  }
}

/** a's status once it is connected and hears `peer` announce the echo functions (it joins in the background). */
async function joined (url, peer) {
  const until = Date.now() + 30_000
  for (;;) {
    const st = await status(url)
    const member = st.cluster?.members?.find(m => m.name === peer)
    if (st.cluster?.state === 'connected' && member?.functions.includes(CLI_FUNCTIONS.callback.name) && member.functions.includes(CLI_FUNCTIONS.async.name)) return st
    if (Date.now() > until) throw new Error(`gateway a did not hear ${peer}'s functions within 30 s: ${JSON.stringify(st.cluster)}`)
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

/** Gateway a must reach the echo only through its peer: no supervised instance, every worker another gateway. */
function checkNoLocalWorker (st) {
  if (st.cluster?.state !== 'connected') throw new Error(`gateway a is not connected to the cluster: ${JSON.stringify(st.cluster)}`)
  for (const name of [CLI_FUNCTIONS.callback.name, CLI_FUNCTIONS.async.name]) {
    const fn = st.functions.find(f => f.name === name)
    const local = (fn?.workers ?? []).filter(w => !w.label.startsWith('gw:'))
    if ((fn?.instances ?? []).length > 0 || local.length > 0) throw new Error(`gateway a serves ${name} itself: ${JSON.stringify(fn)}`)
  }
}

function rssOf (pid) {
  if (pid == null) return null
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
    return kb === undefined ? null : Number(kb) * 1024
  } catch {
    return null
  }
}

function rssOfAll (processes) {
  return Object.fromEntries(Object.entries(processes).map(([name, pid]) => [name, rssOf(pid)]))
}

/** A nats-server of our own: loopback, a free port, JetStream with its store in `dir`. */
export async function natsServer (dir) {
  const port = await freePort()
  const proc = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], { stdio: ['ignore', 'ignore', 'pipe'] })
  let logText = ''
  proc.stderr.setEncoding('utf8')
  proc.stderr.on('data', chunk => { logText = (logText + chunk).slice(-20_000) })
  const exited = new Promise(resolve => proc.once('exit', resolve))
  process.once('exit', () => proc.kill('SIGKILL'))
  try {
    await waitForPort(port, proc, 'nats-server')
  } catch (err) {
    proc.kill('SIGKILL')
    err.message += `\n${logText}`
    throw err
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    pid: proc.pid,
    async stop () {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      proc.kill('SIGTERM')
      await exited
    },
  }
}

// standalone: node benchmarks/workloads/cluster.js
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      pairs: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '500' },
      duration: { type: 'string', default: '2000' },
      'in-flight': { type: 'string', default: '64' },
      nats: { type: 'string' },
      profile: { type: 'string' },
      'profile-only': { type: 'boolean', default: false },
      'profile-async': { type: 'boolean', default: false },
      'baseline-bin': { type: 'string' },
      json: { type: 'string' },
      parts: { type: 'string', default: 'cross,local,async' },
      'async-count': { type: 'string', default: '60000' },
    },
  })
  const root = await mkdtemp(join(tmpdir(), 'fnbus-bench-cluster-'))
  const options = { pairs: Number(values.pairs), warmupMs: Number(values.warmup), durationMs: Number(values.duration), inFlight: Number(values['in-flight']), clusterNats: values.nats, clusterParts: values.parts.split(','), asyncCount: Number(values['async-count']), clusterBaselineBin: values['baseline-bin'] }
  const began = Date.now()
  const context = { options, log: message => console.error(`[${((Date.now() - began) / 1000).toFixed(0).padStart(4)} s] ${message}`), tempDir: prefix => mkdtemp(join(root, `${prefix}-`)) }
  try {
    const out = {}
    if (!values['profile-only']) {
      const result = await run(context)
      Object.assign(out, result)
      console.log(JSON.stringify({ ...result, groups: result.groups.map(g => ({ ...g, systems: Object.fromEntries(Object.entries(g.systems).map(([s, v]) => [s, v.median])) })) }, null, 2))
    }
    if (values.profile !== undefined) {
      out.profiles = await (values['profile-async'] ? profileAsync : profile)({ ...context, profileDir: values.profile })
      for (const p of out.profiles) {
        console.log(`\n## ${p.label ?? 'cross-gateway'}, ${p.concurrency === 1 ? 'serial' : `${p.concurrency} in flight`}: ${Math.round(p.rate)}/s, p50 ${p.p50} µs${p.cpu === undefined ? '' : `, CPU µs per call ${JSON.stringify(p.cpu)}`} (profiled; files in ${p.dir})`)
        for (const [role, s] of Object.entries(p.processes)) {
          console.log(`\n${role}: busy ${s.busyPercent}% — ${s.areas.slice(0, 12).map(x => `${x.area} ${x.percent}%`).join(', ')}`)
          for (const f of s.functions.slice(0, values['profile-async'] ? 30 : 15)) console.log(`  ${f.percent.toFixed(1).padStart(5)}  ${f.function}  ${f.location || f.area}`)
        }
      }
    }
    if (values.json !== undefined) await import('node:fs/promises').then(fs => fs.writeFile(values.json, JSON.stringify(out, null, 2) + '\n'))
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}
