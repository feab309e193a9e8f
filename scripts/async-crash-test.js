#!/usr/bin/env node
// Crash test of durable Async invocations: a real gateway process is SIGKILLed at random moments while it accepts
// invocations (no worker online) and while it drains them to a worker process; it is restarted each time. At the
// end every accepted invocation must have been delivered: lost = 0. Duplicates (at-least-once) are reported.
//
//   node scripts/async-crash-test.js [--invocations N] [--kills N] [--seed S]
//
// The test suite runs a small version (test/e2e/async-crash.test.js).
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { FCClient } from '../dist/index.js'
import { cli, freePort, root, sleep, startGatewayProcess } from './processes.js'
import { seededRandom } from './seeded-random.js'
const sink = join(root, 'test', 'fixtures', 'crash-sink.cjs')
const FUNCTION = 'Crash/sink'

/**
 * @param {{ invocations?: number, kills?: number, seed?: number, log?: (line: string) => void }} [options]
 */
export async function runCrashTest ({ invocations = 2000, kills = 4, seed = Date.now() % 1_000_000, log = () => {} } = {}) {
  const rand = seededRandom(seed)
  const dataDir = await mkdtemp(join(tmpdir(), 'fnbus-crash-'))
  const deliveredLog = join(dataDir, '..', `${dataDir.split('/').pop()}-delivered.log`)
  const port = await freePort()
  const url = `mqtt://127.0.0.1:${port}`
  const config = join(root, 'test', 'fixtures', 'empty.config.json')
  const startGateway = () => startGatewayProcess({ port, dataDir, config, onStderr: line => log(`gateway: ${line}`) })
  let gateway = await startGateway()
  let killCount = 0
  const killAndRestart = async () => {
    gateway.child.kill('SIGKILL')
    await gateway.exited
    killCount++
    log(`kill ${killCount}: gateway SIGKILLed`)
    gateway = await startGateway()
  }

  const accepted = new Set()
  const producer = new FCClient({ url, reconnectPeriod: 20, timeout: 60_000 })
  producer.on('warning', () => {})
  let worker
  try {
    // Phase 1: accept with no worker online, killing the gateway at random moments.
    const acceptKills = Math.ceil(kills / 2)
    const killAt = Array.from({ length: acceptKills }, () => Math.floor(rand() * invocations)).sort((a, b) => a - b)
    let next = 0
    let inFlight = 0
    const pending = new Set()
    for (let i = 0; i < invocations; i++) {
      while (inFlight >= 64) await Promise.race(pending)
      if (killAt[0] !== undefined && i >= killAt[0]) {
        killAt.shift()
        await killAndRestart()
      }
      inFlight++
      const call = producer.invokeAsync(FUNCTION, next++).then(
        ({ invocationId }) => { accepted.add(invocationId) },
        err => log(`not accepted (${err.code}): not counted`)
      ).finally(() => { inFlight--; pending.delete(call) })
      pending.add(call)
    }
    await Promise.all(pending)
    log(`accepted ${accepted.size} of ${invocations}`)

    // Phase 2: drain to a worker process, killing the gateway at random moments.
    worker = spawn(process.execPath, [cli, 'run', sink, '--service', 'Crash', '--function', 'sink', '--concurrency', '16'],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, FNBUS_URL: url, CRASH_DELIVERED_LOG: deliveredLog } })
    worker.stderr.on('data', chunk => log(`worker: ${String(chunk).trim()}`))
    const delivered = async () => new Set((await readFile(deliveredLog, 'utf8').catch(() => '')).split('\n').filter(Boolean))
    for (let k = acceptKills; k < kills; k++) {
      await sleep(50 + Math.floor(rand() * 400))
      await killAndRestart()
    }
    const deadline = Date.now() + 60_000 + invocations * 5
    for (;;) {
      const seen = await delivered()
      if ([...accepted].every(id => seen.has(id)) || Date.now() > deadline) break
      await sleep(100)
    }
    const lines = (await readFile(deliveredLog, 'utf8').catch(() => '')).split('\n').filter(Boolean)
    const unique = new Set(lines)
    const lost = [...accepted].filter(id => !unique.has(id))
    return { seed, invocations, accepted: accepted.size, delivered: unique.size, lost: lost.length, duplicates: lines.length - unique.size, kills: killCount }
  } finally {
    await producer.close().catch(() => {})
    worker?.kill('SIGKILL')
    gateway.child.kill('SIGKILL')
    await gateway.exited
    await rm(dataDir, { recursive: true, force: true })
    await rm(deliveredLog, { force: true })
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { invocations: { type: 'string', default: '10000' }, kills: { type: 'string', default: '20' }, seed: { type: 'string' }, verbose: { type: 'boolean', default: false } } })
  const options = { invocations: Number(values.invocations), kills: Number(values.kills), log: values.verbose ? line => console.error(line) : () => {} }
  if (values.seed !== undefined) options.seed = Number(values.seed)
  console.error(`crash test: ${options.invocations} invocations, ${options.kills} kills, seed ${options.seed ?? '(random)'}`)
  const result = await runCrashTest(options)
  console.log(JSON.stringify(result))
  process.exitCode = result.lost === 0 ? 0 : 1
}
