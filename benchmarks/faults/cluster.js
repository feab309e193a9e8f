#!/usr/bin/env node
// The cluster's fault script (issue 16): 3 NATS nodes (JetStream, R3), 3 `fnbus start --cluster` gateways, the
// workers on two of them (g1, g2), none on g3. Async invocations are accepted through all three gateways (one FCClient
// each, invocations dealt round-robin) while g2 is SIGKILLed and restarted K times and one NATS node (the leader of
// the Async stream at that moment) is SIGKILLed and restarted once; a Sync caller on g3 calls the workers on g1/g2
// throughout. Every delivery is witnessed by the function itself (test/e2e/fixtures/record.cjs, as in the short
// version of this script, test/e2e/cluster-async.test.js, appends its requestId to a file of its
// gateway's). At the end it waits until every accepted invocation was witnessed (or a timeout) and reports accepted,
// delivered, duplicates, lost (must be 0), the refusals the callers retried, and the Sync calls by outcome.
//
//   node benchmarks/faults/cluster.js [--invocations 10000] [--kills 5] [--nats-kills 1] [--seconds 60] [--json]
//
// An Async call refused during a fault (FNBUS_STORE_FAILURE while JetStream elects a leader, FNBUS_DISCONNECTED when
// its gateway dies with the call in flight, FNBUS_TIMEOUT while it is down…) is retried by its caller with the same
// idempotency key until it is accepted: only accepted invocations count, and a retry of one that was stored after
// all is answered with the same invocation id (JetStream's duplicate window). Exit status 1 when one is lost.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { FCClient } from '../../dist/index.js'
import { freePort, spawnCli } from '../../test/e2e/cli.js'
import { natsCluster } from '../../test/e2e/nats-cluster.js'

const HERE = fileURLToPath(new URL('.', import.meta.url))
const { values: args } = parseArgs({
  options: {
    invocations: { type: 'string', default: '10000' },
    kills: { type: 'string', default: '5' },
    'nats-kills': { type: 'string', default: '1' },
    // how long a killed NATS node stays down, s (longer than JetStream's elections, 4–9 s: the others elect)
    'nats-down': { type: 'string', default: '15' },
    // the accepting is paced over this long, so that the faults fall among the invocations
    seconds: { type: 'string', default: '60' },
    // Async calls in flight per caller, Sync calls in flight
    window: { type: 'string', default: '16' },
    'sync-in-flight': { type: 'string', default: '4' },
    'heartbeat-ms': { type: 'string', default: '1000' },
    // how long the witness takes per delivery, ms; the workers' concurrency on g1 and g2
    work: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '8' },
    'drain-timeout': { type: 'string', default: '180' },
    keep: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
})
const N = Number(args.invocations)
const KILLS = Number(args.kills)
const NATS_KILLS = Number(args['nats-kills'])
const NATS_DOWN_MS = Number(args['nats-down']) * 1000
const SECONDS = Number(args.seconds)
const WINDOW = Number(args.window)
const SYNC_IN_FLIGHT = Number(args['sync-in-flight'])
const DRAIN_TIMEOUT_MS = Number(args['drain-timeout']) * 1000
const RUN = `fault-${process.pid}-${Date.now().toString(36)}`
const ASYNC_FN = { serviceName: 'Fault', functionName: 'witness' }
const SYNC_FN = 'Fault/echo'

const log = (/** @type {string} */ line) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${line}\n`)
const sleep = (/** @type {number} */ ms) => new Promise(resolve => setTimeout(resolve, ms))
const t0 = performance.now()

/** What test/e2e's helpers expect of node:test's context: cleanups, run at the end here. */
const cleanups = /** @type {(() => unknown)[]} */ ([])
const t = /** @type {any} */ ({ after: (/** @type {() => unknown} */ fn) => { cleanups.push(fn) } })
async function cleanUp () {
  for (const fn of cleanups.splice(0).reverse()) await Promise.resolve().then(fn).catch(() => {})
}
process.once('SIGINT', () => { void cleanUp().then(() => process.exit(130)) })

const dir = await mkdtemp(join(tmpdir(), 'fnbus-fault-'))
if (!args.keep) cleanups.push(() => rm(dir, { recursive: true, force: true }))

/** counts by key */
const tally = () => /** @type {Record<string, number>} */ ({})
const bump = (/** @type {Record<string, number>} */ counts, /** @type {string} */ key) => { counts[key] = (counts[key] ?? 0) + 1 }
const codeOf = (/** @type {any} */ err) => String(err?.code ?? err?.name ?? 'ERROR')

/** When each code was seen, as spells (seen again within 2 s: the same spell), with one message each. */
function spells () {
  /** @type {Record<string, { from: number, to: number, count: number, messages: Record<string, number> }[]>} */
  const byCode = {}
  return {
    byCode,
    add (/** @type {string} */ code, /** @type {string} */ message) {
      const now = Math.round(performance.now() - t0)
      const list = byCode[code] ??= []
      let last = list.at(-1)
      if (last === undefined || now - last.to > 2000) list.push(last = { from: now, to: now, count: 0, messages: {} })
      last.to = now
      last.count++
      // the distinct messages of a spell (a few), each with how often
      const text = message.slice(0, 240)
      if (last.messages[text] !== undefined || Object.keys(last.messages).length < 4) last.messages[text] = (last.messages[text] ?? 0) + 1
    },
  }
}

let exitCode = 0
try {
  exitCode = await main()
} catch (err) {
  process.stderr.write(`fault script failed: ${/** @type {Error} */ (err).stack}\n`)
  exitCode = 2
} finally {
  await cleanUp()
}
process.exit(exitCode)

async function main () {
  const nats = await natsCluster(t, join(dir, 'nats'), { nodes: 3 })
  log(`NATS: ${nats.servers.join(', ')}`)
  const env = { FNBUS_CLUSTER_USER: nats.credentials.user, FNBUS_CLUSTER_PASSWORD: nats.credentials.password }

  /** A gateway: its config in a directory of its own, its port kept across restarts. */
  const gateway = async (/** @type {string} */ name, /** @type {boolean} */ workers) => {
    const gwDir = join(dir, name)
    const { mkdir } = await import('node:fs/promises')
    await mkdir(gwDir, { recursive: true })
    const witnessFile = join(gwDir, 'witnessed.txt')
    const functions = workers
      ? [
          { service: 'Fault', function: 'witness', module: join(HERE, '../../test/e2e/fixtures/record.cjs'), isolation: 'thread', concurrency: Number(args.concurrency), timeoutMs: 2000, env: { RECORD_FILE: witnessFile } },
          { service: 'Fault', function: 'echo', module: join(HERE, 'echo.cjs'), isolation: 'thread', concurrency: 8, env: { GATEWAY_NAME: name } },
        ]
      : []
    await writeFile(join(gwDir, 'fnbus.config.json'), JSON.stringify({
      memory: true,
      functions,
      cluster: { servers: nats.servers, name, heartbeatMs: Number(args['heartbeat-ms']) },
    }))
    const port = await freePort()
    const gw = {
      name,
      workers,
      witnessFile,
      port,
      url: `mqtt://127.0.0.1:${port}`,
      /** @type {ReturnType<typeof spawnCli> | undefined} */
      run: undefined,
      incarnation: 0,
      /** stderr of the incarnations before this one */
      async start () {
        this.incarnation++
        const run = spawnCli(t, ['start', '--port', String(port)], { cwd: gwDir, env })
        this.run = run
        // every incarnation's log is kept, for the report's evidence
        const logFile = join(gwDir, `stderr-${this.incarnation}.log`)
        run.exited.then(() => writeFile(logFile, run.stderr)).catch(() => {})
        cleanups.push(() => writeFile(logFile, run.stderr).catch(() => {}))
        await run.waitFor(/fnbus gateway listening on (\S+)\n/, { stream: 'stdout', timeoutMs: 30_000 })
        await run.waitFor('Async invocations are stored in JetStream', { timeoutMs: 60_000 })
        if (workers) await run.waitFor('"msg":"serving Fault/witness', { timeoutMs: 30_000 })
      },
      kill () {
        this.run?.child.kill('SIGKILL')
        return this.run?.exited
      },
    }
    return gw
  }

  const g1 = await gateway('g1', true)
  const g2 = await gateway('g2', true)
  const g3 = await gateway('g3', false)
  await Promise.all([g1.start(), g2.start(), g3.start()])
  log('gateways g1, g2 (workers), g3 (none) are up')

  // the callers: one Async client per gateway (reconnecting by itself to a gateway restarted on the same port), a
  // Sync client on g3
  const clients = [g1, g2, g3].map(gw => new FCClient({ url: gw.url, timeout: 10_000, reconnectPeriod: 200 }))
  const syncClient = new FCClient({ url: g3.url, timeout: 10_000 })
  cleanups.push(() => Promise.all([...clients, syncClient].map(c => c.close().catch(() => {}))))
  await Promise.all([...clients, syncClient].map(c => c.ready()))
  // g3 has heard of both workers' gateways
  await syncClient.invoke(SYNC_FN, 'hello', { waitForWorker: 10_000 })

  // --- the Sync loop: from g3 to the workers on g1/g2, throughout
  const sync = { ok: 0, failed: tally(), byGateway: tally(), spells: spells() }
  let syncRunning = true
  const syncLanes = Array.from({ length: SYNC_IN_FLIGHT }, async (_, lane) => {
    for (let n = 0; syncRunning; n++) {
      try {
        const answer = /** @type {{ gateway: string }} */ (await syncClient.invoke(SYNC_FN, `${lane}-${n}`, { timeout: 5000, waitForWorker: 5000 }))
        sync.ok++
        bump(sync.byGateway, answer.gateway)
      } catch (err) {
        const code = codeOf(err)
        bump(sync.failed, code)
        sync.spells.add(code, String(/** @type {Error} */ (err).message))
        await sleep(50)
      }
    }
  })

  // --- the faults, spaced over the accepting: g2 killed K times, one NATS node once (between two of g2's)
  /** @type {{ at: number, what: string, downMs?: number, backMs?: number }[]} */
  const faults = []
  const acceptStart = performance.now()
  const plan = []
  for (let k = 0; k < KILLS; k++) plan.push({ at: SECONDS * 1000 * (k + 0.5) / KILLS, kind: 'gateway' })
  for (let k = 0; k < NATS_KILLS; k++) plan.push({ at: SECONDS * 1000 * ((k + 1) / (NATS_KILLS + 1) + 0.5 / Math.max(KILLS, 1)), kind: 'nats' })
  plan.sort((a, b) => a.at - b.at)
  /** @type {Promise<void>[]} */
  const restarts = []
  const chaos = (async () => {
    for (const step of plan) {
      const wait = acceptStart + step.at - performance.now()
      if (wait > 0) await sleep(wait)
      const at = Math.round(performance.now() - t0)
      if (step.kind === 'gateway') {
        await g2.kill()
        log(`g2 SIGKILLed (incarnation ${g2.incarnation})`)
        await sleep(1000)
        const began = performance.now()
        await g2.start()
        const backMs = Math.round(performance.now() - began)
        log(`g2 restarted and serving after ${backMs} ms`)
        faults.push({ at, what: 'SIGKILL g2', downMs: 1000, backMs })
        faults.sort((a, b) => a.at - b.at)
      } else {
        const leader = await streamLeader(nats).catch(() => undefined)
        const node = nats.nodes.find(n => n.name === leader) ?? nats.nodes[0]
        await node.kill()
        log(`NATS node ${node.name} SIGKILLed (the Async stream's leader: ${leader ?? 'unknown'})`)
        // restarted in the background: g2's kills keep their schedule meanwhile
        restarts.push(sleep(NATS_DOWN_MS).then(async () => {
          const began = performance.now()
          await node.start()
          log(`NATS node ${node.name} restarted`)
          faults.push({ at, what: `SIGKILL NATS ${node.name}${node.name === leader ? ' (stream leader)' : ''}`, downMs: NATS_DOWN_MS, backMs: Math.round(performance.now() - began) })
        }))
      }
    }
  })()

  // --- the Async callers: invocation i through gateway i % 3, paced over --seconds, retried until accepted
  const accepted = new Map() // invocationId -> key index
  const keys = new Map() // key index -> invocationId
  const refused = tally()
  const refusedBy = [tally(), tally(), tally()]
  const refusedSpells = spells()
  let retriedInvocations = 0
  let idsTwice = 0
  const spacing = SECONDS * 1000 / N
  const acceptOne = async (/** @type {number} */ i) => {
    const c = i % 3
    const due = acceptStart + i * spacing
    const wait = due - performance.now()
    if (wait > 0) await sleep(wait)
    for (let attempt = 0; ; attempt++) {
      try {
        const result = /** @type {{ invocationId: string }} */ (await clients[c].invokeFunction({
          ...ASYNC_FN, invocationType: 'Async', payload: args.work, idempotencyKey: `${RUN}-${i}`, timeout: 10_000,
        }))
        if (accepted.has(result.invocationId)) idsTwice++
        accepted.set(result.invocationId, i)
        keys.set(i, result.invocationId)
        return
      } catch (err) {
        const code = codeOf(err)
        bump(refused, code)
        bump(refusedBy[c], code)
        refusedSpells.add(code, `via g${c + 1}: ${String(/** @type {Error} */ (err).message)}`)
        if (attempt === 0) retriedInvocations++
        await sleep(Math.min(100 * 2 ** attempt, 1000))
      }
    }
  }
  const queues = [0, 1, 2].map(c => Array.from({ length: Math.ceil((N - c) / 3) }, (_, j) => c + 3 * j))
  await Promise.all(queues.map(queue => Promise.all(Array.from({ length: WINDOW }, async () => {
    for (let i = queue.shift(); i !== undefined; i = queue.shift()) await acceptOne(i)
  }))))
  const acceptMs = performance.now() - acceptStart
  log(`${accepted.size} accepted in ${(acceptMs / 1000).toFixed(1)} s`)
  await chaos
  await Promise.all(restarts)
  faults.sort((a, b) => a.at - b.at)

  // --- the drain: every accepted invocation witnessed, or the timeout
  const drainStart = performance.now()
  /** @type {Map<string, number>} */
  let seen = new Map()
  /** @type {Record<string, number>} */
  let byGateway = {}
  for (;;) {
    seen = new Map()
    byGateway = {}
    for (const gw of [g1, g2]) {
      const text = await readFile(gw.witnessFile, 'utf8').catch(() => '')
      for (const id of text.split('\n')) {
        if (id === '') continue
        seen.set(id, (seen.get(id) ?? 0) + 1)
        byGateway[gw.name] = (byGateway[gw.name] ?? 0) + 1
      }
    }
    let missing = 0
    for (const id of accepted.keys()) if (!seen.has(id)) missing++
    if (missing === 0 || performance.now() - drainStart > DRAIN_TIMEOUT_MS) break
    await sleep(500)
  }
  const drainMs = performance.now() - drainStart
  syncRunning = false
  await Promise.all(syncLanes)

  const lostIds = [...accepted.keys()].filter(id => !seen.has(id))
  const delivered = [...accepted.keys()].filter(id => seen.has(id)).length
  const duplicated = [...seen.values()].filter(n => n > 1)
  const unknown = [...seen.keys()].filter(id => !accepted.has(id))
  const gatewaysAlive = [g1, g3].every(gw => gw.run?.child.exitCode === null && gw.run?.child.signalCode === null)
  const report = {
    when: new Date().toISOString(),
    setup: {
      natsNodes: 3, replicas: 3, gateways: 3, workersOn: ['g1', 'g2'], invocations: N, kills: KILLS, natsKills: NATS_KILLS,
      paceSeconds: SECONDS, asyncWindowPerCaller: WINDOW, syncInFlight: SYNC_IN_FLIGHT, heartbeatMs: Number(args['heartbeat-ms']),
      witnessMs: Number(args.work), concurrency: Number(args.concurrency),
    },
    async: {
      accepted: accepted.size,
      keysAccepted: keys.size,
      idsAnsweredTwice: idsTwice,
      delivered,
      deliveries: [...seen.values()].reduce((a, b) => a + b, 0),
      duplicates: duplicated.length,
      extraDeliveries: duplicated.reduce((a, n) => a + n - 1, 0),
      lost: lostIds.length,
      lostIds: lostIds.slice(0, 50),
      deliveredNotAccepted: unknown.length,
      byGateway,
      refusedAndRetried: refused,
      invocationsRetried: retriedInvocations,
      refusalSpells: refusedSpells.byCode,
      refusedByCaller: { g1: refusedBy[0], g2: refusedBy[1], g3: refusedBy[2] },
    },
    sync: { ok: sync.ok, failed: sync.failed, byGateway: sync.byGateway, failureSpells: sync.spells.byCode },
    faults,
    durations: {
      acceptSeconds: round(acceptMs / 1000),
      drainAfterAcceptSeconds: round(drainMs / 1000),
      totalSeconds: round((performance.now() - t0) / 1000),
    },
    gatewaysAlive,
  }
  if (args.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n')
  else printReport(report)
  if (args.keep) log(`logs and witness files kept in ${dir}`)
  if (!gatewaysAlive) log('g1 or g3 exited during the run: see their logs')
  return lostIds.length > 0 || !gatewaysAlive ? 1 : 0
}

/** The NATS server that leads the Async stream now. */
async function streamLeader (/** @type {{ servers: string[], credentials: { user?: string, password?: string } }} */ nats) {
  const nc = await connect({ servers: nats.servers, user: nats.credentials.user, pass: nats.credentials.password, timeout: 2000 })
  try {
    const jsm = await jetstreamManager(nc, { timeout: 2000 })
    return (await jsm.streams.info('FNBUS_ASYNC')).cluster?.leader
  } finally {
    await nc.close()
  }
}

function round (/** @type {number} */ x) {
  return Math.round(x * 10) / 10
}

function printReport (/** @type {any} */ r) {
  const codes = (/** @type {Record<string, number>} */ counts) => Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'
  const lines = [
    '',
    `fault script: 3 NATS nodes (R3), 3 gateways (workers on g1, g2), ${r.setup.invocations} Async invocations paced over ${r.setup.paceSeconds} s, g2 SIGKILLed ${r.setup.kills}x, a NATS node ${r.setup.natsKills}x`,
    '',
    '| | |',
    '|---|---|',
    `| accepted | ${r.async.accepted} |`,
    `| delivered (unique) | ${r.async.delivered} (by gateway: ${codes(r.async.byGateway)}) |`,
    `| duplicates | ${r.async.duplicates} (${r.async.extraDeliveries} extra deliveries) |`,
    `| lost | ${r.async.lost} |`,
    `| refused and retried (same key) | ${codes(r.async.refusedAndRetried)} (attempts; ${r.async.invocationsRetried} invocations; via g1: ${codes(r.async.refusedByCaller.g1)}; g2: ${codes(r.async.refusedByCaller.g2)}; g3: ${codes(r.async.refusedByCaller.g3)}) |`,
    `| Sync ok | ${r.sync.ok} (by gateway: ${codes(r.sync.byGateway)}) |`,
    `| Sync failed | ${codes(r.sync.failed)} |`,
    `| accepting / drain after / total | ${r.durations.acceptSeconds} s / ${r.durations.drainAfterAcceptSeconds} s / ${r.durations.totalSeconds} s |`,
    '',
    'faults: ' + r.faults.map((/** @type {any} */ f) => `${(f.at / 1000).toFixed(1)} s ${f.what} (down ${f.downMs} ms, serving again ${f.backMs} ms after its restart)`).join('; '),
  ]
  const spellLines = (/** @type {string} */ what, /** @type {Record<string, any[]>} */ byCode) => {
    for (const [code, list] of Object.entries(byCode)) {
      for (const x of list) lines.push(`${what} ${code}: ${x.count} from ${(x.from / 1000).toFixed(1)} s to ${(x.to / 1000).toFixed(1)} s: ${Object.entries(x.messages).map(([m, n]) => `${n}x "${m}"`).join('; ')}`)
    }
  }
  spellLines('refused', r.async.refusalSpells)
  spellLines('Sync failed', r.sync.failureSpells)
  if (r.async.lost > 0) lines.push(`lost ids (first 50): ${r.async.lostIds.join(' ')}`)
  if (r.async.deliveredNotAccepted > 0) lines.push(`delivered but never accepted: ${r.async.deliveredNotAccepted}`)
  process.stdout.write(lines.join('\n') + '\n')
}
