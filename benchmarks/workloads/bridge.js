// Workload 8 (issue 17): the MQTT bridge with store-and-forward, fnbus against Mosquitto's own bridge.
//   - fnbus: `fnbus start` with a data directory and a bridge to a remote Mosquitto (fsync on, the default);
//   - fnbus-nofsync: the same with `fsync: false` (still survives a kill of the gateway, not a power cut);
//   - mosquitto-bridge: a local Mosquitto bridged to the remote one (`connection`, persistence on, cleansession
//     false, queues unbounded), Debian's Mosquitto as the issue measured it.
// Each run has processes of its own: the local broker (fnbus or Mosquitto), a remote Mosquitto (persistence on), and
// in this process a QoS 1 publisher into the local broker and a QoS 1 subscriber (persistent session) on the remote.
//   0. warm-up: `warmUp` messages (10,000 by default) forwarded and not counted, so that what follows is steady state;
//   1. forwarding: `forwardCount` messages published with 100 unacknowledged at a time while the link is up; the rate
//      is messages received at the remote subscriber per second, first publish to last arrival;
//   2. backlog: the remote stopped, `backlogCount` messages published (all acknowledged locally), the local broker's
//      RSS sampled meanwhile; the remote started again, the drain rate is from the first message of the backlog at
//      the subscriber to the last (the reconnection's delay is reported apart).
// Every message carries its sequence number; a run checks that all arrived, in order of first arrival.
// CPU time per forwarded message is reported too, steadier than a rate on a shared machine: the local broker's
// (`forwardCpuUs`), the remote Mosquitto's (`remoteCpuUs`) and this process's, publisher and subscriber (`clientsCpuUs`).
//   node benchmarks/workloads/bridge.js [--pairs 3] [--forward 20000] [--backlog 100000] [--warm-up 10000] [--systems fnbus,...]
//     [--base DIR] (adds base:fnbus and base:fnbus-nofsync, run from another checkout's build: alternated builds)
//     [--systems relay:aedes,relay:fnbus,relay:mosquitto,ingest:aedes,ingest:fnbus,ingest:mosquitto] (the floors:
//     each broker alone relaying to its own subscriber, or taking messages nobody subscribed to)
//     [--prof DIR] (the fnbus gateways run under --cpu-prof, profiles written to DIR; the forwarding window printed)
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, connect } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import mqtt from 'mqtt'
import { alternate, group } from '../lib/alternate.js'
import { cpuMicros } from '../lib/cpu.js'

export const SYSTEMS = {
  fnbus: 'fnbus gateway, its bridge (fsync on)',
  'fnbus-nofsync': 'fnbus gateway, its bridge (fsync: false)',
  'mosquitto-bridge': 'Mosquitto bridged to Mosquitto (persistence on, cleansession false)',
}

/**
 * Floors, not bridges (asked for by name with --systems). `relay:`: the local broker alone relays each message to a
 * subscriber of its own, with no remote broker and no bridge; `ingest:`: it only takes them (the part of a bridge's
 * work that is the local broker's whatever the bridge does; the rate is the publisher's). Relaying a QoS 1 message costs a broker what a bridge's local side
 * costs at least (a PUBLISH read and acknowledged, a PUBLISH written and its PUBACK read), so a broker's CPU a
 * message here bounds from below what a bridge built on it can spend; the bridge rows' other processes (the remote
 * Mosquitto, the clients) spend the rest of the machine.
 */
export const FLOORS = {
  'relay:aedes': 'bare aedes 1.2 relaying QoS 1 to its own subscriber (in-memory persistence)',
  'relay:fnbus': 'fnbus gateway without a bridge relaying QoS 1 to its own subscriber',
  'relay:mosquitto': 'Mosquitto 2.0.11 relaying QoS 1 to its own subscriber (persistence on)',
  'ingest:aedes': 'bare aedes 1.2 taking QoS 1 messages nobody subscribed to (PUBLISH read, PUBACK written)',
  'ingest:fnbus': 'fnbus gateway without a bridge taking QoS 1 messages nobody subscribed to',
  'ingest:mosquitto': 'Mosquitto 2.0.11 taking QoS 1 messages nobody subscribed to',
}

const BIN = fileURLToPath(new URL('../../bin/fnbus.js', import.meta.url))
const MOSQUITTO = '/usr/sbin/mosquitto'
const WINDOW = 100

async function freePort () {
  const server = createServer().listen(0, '127.0.0.1')
  await new Promise(resolve => server.once('listening', resolve))
  const { port } = server.address()
  await new Promise(resolve => server.close(resolve))
  return port
}

async function waitForPort (port, proc, what) {
  const until = Date.now() + 15_000
  for (;;) {
    const up = await new Promise(resolve => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (up) return
    if (proc.exitCode !== null || Date.now() > until) throw new Error(`${what} did not start on ${port}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

/** A process started with `args`, its stderr kept; `stop()` ends it with `signal` and waits. */
async function processOf (command, args, { port, what, cwd }) {
  const proc = spawn(command, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  proc.stderr.setEncoding('utf8')
  proc.stderr.on('data', chunk => { log = (log + chunk).slice(-20_000) })
  await waitForPort(port, proc, what)
  return {
    proc,
    get log () { return log },
    async stop (signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      const exited = new Promise(resolve => proc.once('exit', resolve))
      proc.kill(signal)
      await exited
    },
  }
}

async function mosquitto (dir, port, extra = []) {
  const conf = join(dir, 'mosquitto.conf')
  await writeFile(conf, [
    `listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence true', `persistence_location ${dir}/`,
    'max_queued_messages 0', 'max_queued_bytes 0', 'max_inflight_messages 0', `user ${userInfo().username}`, 'log_dest stderr', 'log_type error', 'log_type warning',
    ...extra,
  ].join('\n') + '\n')
  return await processOf(MOSQUITTO, ['-c', conf], { port, what: 'mosquitto' })
}

/** The resident set size of `pid`, bytes (0 once it is gone). */
function rssOf (pid) {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
    return Number(kb ?? 0) * 1024
  } catch {
    return 0
  }
}

/** The local broker of `system`, bridged to the remote Mosquitto on `remotePort`. */
async function localBroker (system, dir, remotePort, { bin = BIN, profDir } = {}) {
  const port = await freePort()
  if (system === 'relay:mosquitto' || system === 'ingest:mosquitto') return { ...await mosquitto(dir, port), url: `mqtt://127.0.0.1:${port}` }
  if (system === 'relay:aedes' || system === 'ingest:aedes') {
    const server = fileURLToPath(new URL('../roles/aedes-server.js', import.meta.url))
    return { ...await processOf(process.execPath, [server, String(port)], { port, what: 'aedes' }), url: `mqtt://127.0.0.1:${port}` }
  }
  if (system === 'mosquitto-bridge') {
    const broker = await mosquitto(dir, port, [
      'connection cloud', `address 127.0.0.1:${remotePort}`, 'cleansession false', 'clientid bench-bridge',
      'restart_timeout 1 10', 'topic # out 1 telemetry/ sites/7/telemetry/',
    ])
    return { ...broker, url: `mqtt://127.0.0.1:${port}` }
  }
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
    dataDir: './data',
    fsync: system !== 'fnbus-nofsync',
    log: { level: 'warn' },
    ...system === 'relay:fnbus' || system === 'ingest:fnbus' ? {} : { bridges: [{ name: 'cloud', url: `mqtt://127.0.0.1:${remotePort}`, clientId: 'bench-bridge', out: [{ from: 'telemetry/#', to: 'sites/7/telemetry/#', qos: 1 }], reconnect: { minDelayMs: 500, maxDelayMs: 10_000 } }] },
  }))
  const execArgv = profDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profDir, '--cpu-prof-interval', '100']
  const broker = await processOf(process.execPath, [...execArgv, bin, 'start', '--port', String(port)], { port, what: 'fnbus', cwd: dir })
  return { ...broker, url: `mqtt://127.0.0.1:${port}` }
}

/**
 * A QoS 1 subscriber with a persistent session on the remote broker (a clean one on a relay: it never goes offline,
 * and fnbus' like Mosquitto's default bound of 1,000 messages queued for a persistent session would drop the excess), counting sequence numbers as they arrive. */
async function subscriber (url, filter = 'sites/7/telemetry/#', clean = false) {
  const client = await mqtt.connectAsync(url, { clientId: 'bench-cloud-app', clean, reconnectPeriod: 100, protocolVersion: 4 })
  await client.subscribeAsync(filter, { qos: 1 })
  const state = { seen: new Set(), firstOrder: [], lastAt: 0, firstAt: 0, floor: 0, wake: undefined }
  client.on('message', (_topic, payload) => {
    const seq = payload.readUInt32BE(0)
    // a message of an earlier phase again (at least once: the remote redelivers what its restart left unacknowledged)
    if (seq < state.floor || state.seen.has(seq)) return
    state.seen.add(seq)
    state.firstOrder.push(seq)
    state.lastAt = performance.now()
    if (state.firstAt === 0) state.firstAt = state.lastAt
    state.wake?.()
  })
  return {
    client,
    state,
    /** Counts again from `floor` on. */
    reset (floor) { state.seen.clear(); state.firstOrder = []; state.firstAt = 0; state.lastAt = 0; state.floor = floor },
    async until (count, timeoutMs) {
      const end = performance.now() + timeoutMs
      while (state.seen.size < count) {
        if (performance.now() > end) throw new Error(`only ${state.seen.size} of ${count} arrived`)
        await new Promise(resolve => { state.wake = resolve; setTimeout(resolve, 200) })
      }
    },
  }
}

async function publish (client, from, count, size) {
  let next = from
  const end = from + count
  await Promise.all(Array.from({ length: WINDOW }, async () => {
    while (next < end) {
      const payload = Buffer.alloc(size, 'x')
      payload.writeUInt32BE(next++, 0)
      await client.publishAsync('telemetry/line-1', payload, { qos: 1 })
    }
  }))
}

function inOrder (order, from, count) {
  if (order.length !== count) return false
  for (let i = 0; i < count; i++) if (order[i] !== from + i) return false
  return true
}

/** An `ingest:` floor: `forwardCount` QoS 1 messages into the broker alone, nobody subscribed. */
async function ingest (system, { forwardCount, warmUp, size, tempDir, profDir }) {
  const local = await localBroker(system, await tempDir('bridge-local'), 1, { profDir })
  const pub = await mqtt.connectAsync(local.url, { protocolVersion: 4, reconnectPeriod: 0 })
  try {
    await publish(pub, 0, warmUp, size)
    const cpuBefore = cpuMicros(local.proc.pid)
    const selfCpuBefore = process.cpuUsage()
    const windowStart = Number(process.hrtime.bigint() / 1000n)
    const started = performance.now()
    await publish(pub, 0, forwardCount, size)
    if (profDir !== undefined) console.error(`profile window of ${system} (pid ${local.proc.pid}): ${windowStart} ${Number(process.hrtime.bigint() / 1000n)}`)
    const rate = forwardCount / ((performance.now() - started) / 1000)
    const selfCpu = process.cpuUsage(selfCpuBefore)
    return { rate, forwardRate: rate, forwardCpuUs: (cpuMicros(local.proc.pid) - cpuBefore) / forwardCount, clientsCpuUs: (selfCpu.user + selfCpu.system) / forwardCount }
  } finally {
    await pub.endAsync(true)
    await local.stop()
  }
}

async function measure (system, { forwardCount, backlogCount, warmUp, size, tempDir, base, profDir }) {
  if (system.startsWith('ingest:')) return await ingest(system, { forwardCount, warmUp, size, tempDir, profDir })
  const remoteDir = await tempDir('bridge-remote')
  const remotePort = await freePort()
  let remote = await mosquitto(remoteDir, remotePort)
  const onBase = system.startsWith('base:')
  const local = await localBroker(onBase ? system.slice('base:'.length) : system, await tempDir('bridge-local'), remotePort,
    { bin: onBase ? join(base, 'bin/fnbus.js') : BIN, profDir })
  const relay = system.startsWith('relay:')
  const sub = relay ? await subscriber(local.url, 'telemetry/#', true) : await subscriber(`mqtt://127.0.0.1:${remotePort}`)
  const pub = await mqtt.connectAsync(local.url, { protocolVersion: 4, reconnectPeriod: 0 })
  try {
    // the link is up once a first message crosses it
    await publish(pub, 0, 1, size)
    await sub.until(1, 30_000)
    // then `warmUp` messages, not counted: a process's first thousands of messages run code not compiled yet and
    // measure the JIT, not the steady state a gateway runs in (20,000 forwarded cold cost fnbus 63.5 µs a message,
    // 60,000 cost 36.75 µs)
    sub.reset(1)
    await publish(pub, 1, warmUp, size)
    await sub.until(warmUp, 120_000)
    const first = 1 + warmUp
    sub.reset(first)

    const cpuBefore = cpuMicros(local.proc.pid)
    const remoteCpuBefore = cpuMicros(remote.proc.pid)
    const selfCpuBefore = process.cpuUsage()
    const windowStart = Number(process.hrtime.bigint() / 1000n)
    let started = performance.now()
    await publish(pub, first, forwardCount, size)
    await sub.until(forwardCount, 120_000)
    const forwardCpuUs = (cpuMicros(local.proc.pid) - cpuBefore) / forwardCount
    const remoteCpuUs = (cpuMicros(remote.proc.pid) - remoteCpuBefore) / forwardCount
    const selfCpu = process.cpuUsage(selfCpuBefore)
    const clientsCpuUs = (selfCpu.user + selfCpu.system) / forwardCount
    if (profDir !== undefined) console.error(`profile window of ${system} (pid ${local.proc.pid}): ${windowStart} ${Number(process.hrtime.bigint() / 1000n)}`)
    const forwardRate = forwardCount / ((sub.state.lastAt - started) / 1000)
    const forwardOrdered = inOrder(sub.state.firstOrder, first, forwardCount)
    const from = first + forwardCount
    sub.reset(from)
    if (relay) return { rate: forwardRate, forwardRate, forwardCpuUs, remoteCpuUs, clientsCpuUs, forwardOrdered: forwardOrdered ? 1 : 0 }

    await remote.stop()
    let rssPeak = 0
    const pid = local.proc.pid
    const rssBefore = rssOf(pid)
    const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, rssOf(pid)) }, 100)
    started = performance.now()
    await publish(pub, from, backlogCount, size)
    const acceptRate = backlogCount / ((performance.now() - started) / 1000)
    rssPeak = Math.max(rssPeak, rssOf(pid))
    const rssQueued = rssOf(pid)
    remote = await mosquitto(remoteDir, remotePort)
    const restarted = performance.now()
    await sub.until(backlogCount, 600_000)
    clearInterval(sampler)
    const drainRate = backlogCount / ((sub.state.lastAt - sub.state.firstAt) / 1000)
    return {
      rate: forwardRate,
      forwardRate,
      forwardCpuUs,
      remoteCpuUs,
      clientsCpuUs,
      forwardOrdered: forwardOrdered ? 1 : 0,
      acceptRate,
      drainRate,
      reconnectMs: Math.round(sub.state.firstAt - restarted),
      drainOrdered: inOrder(sub.state.firstOrder, from, backlogCount) ? 1 : 0,
      rssBefore,
      rssQueued,
      rssPeak: Math.max(rssPeak, rssOf(pid)),
    }
  } catch (err) {
    err.message += `\n--- local broker's log:\n${local.log}\n--- remote broker's log:\n${remote.log}`
    throw err
  } finally {
    await pub.endAsync(true)
    await sub.client.endAsync(true)
    await local.stop()
    await remote.stop()
  }
}

export async function run ({ options, log, tempDir }) {
  const params = { forwardCount: options.bridgeForward ?? 20_000, backlogCount: options.bridgeBacklog ?? 100_000, warmUp: options.bridgeWarmUp ?? 10_000, size: 64 }
  const systems = options.systems ?? [...Object.keys(SYSTEMS), ...options.base === undefined ? [] : ['base:fnbus', 'base:fnbus-nofsync']]
  const runs = await alternate({
    systems,
    pairs: options.pairs,
    label: 'bridge',
    log,
    measure: system => measure(system, { ...params, tempDir, base: options.base, profDir: options.profDir }),
  })
  return { systems: { ...SYSTEMS, ...FLOORS }, groups: [group('bridge', `QoS 1, ${params.size} B: forwarding ${params.forwardCount}, backlog ${params.backlogCount} after an outage`, params, runs)] }
}

// standalone: node benchmarks/workloads/bridge.js
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { pairs: { type: 'string', default: '3' }, forward: { type: 'string', default: '20000' }, backlog: { type: 'string', default: '100000' }, 'warm-up': { type: 'string', default: '10000' }, systems: { type: 'string' }, base: { type: 'string' }, prof: { type: 'string' } } })
  const root = await mkdtemp(join(tmpdir(), 'fnbus-bench-bridge-'))
  try {
    const result = await run({
      options: { pairs: Number(values.pairs), bridgeForward: Number(values.forward), bridgeBacklog: Number(values.backlog), bridgeWarmUp: Number(values['warm-up']), systems: values.systems?.split(','), base: values.base, profDir: values.prof },
      log: message => console.error(message),
      tempDir: prefix => mkdtemp(join(root, `${prefix}-`)),
    })
    console.log(JSON.stringify(result.groups[0].systems, null, 2))
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}
