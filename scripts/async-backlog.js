#!/usr/bin/env node
// Backlog drain: stores COUNT small Async invocations in a real gateway process while no worker is online, then
// drains them through a worker process (`fnbus run`), and reports the accept rate, the drain rate and the
// gateway's peak resident memory, which must stay bounded: the backlog is read from disk a window at a time.
//
//   node scripts/async-backlog.js [--count 1000000] [--in-flight 256] [--concurrency 64]
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { FCClient } from '../dist/index.js'
import { cli, freePort, root, sleep, startGatewayProcess } from './processes.js'
const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000000' },
    'in-flight': { type: 'string', default: '256' },
    concurrency: { type: 'string', default: '64' },
  },
})
const count = Number(values.count)
const inFlight = Number(values['in-flight'])

async function rssMb (pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  return match === null ? 0 : Number(match[1]) / 1024
}

const dataDir = await mkdtemp(join(tmpdir(), 'fnbus-backlog-'))
const port = await freePort()
const url = `mqtt://127.0.0.1:${port}`
// the default bound of stored invocations per function (100,000) would refuse most of the backlog
const config = join(dataDir, 'backlog.config.json')
await writeFile(config, JSON.stringify({ functions: [{ service: 'Backlog', function: 'noop', async: { maxStored: count } }] }))
const { child: gateway, exited } = await startGatewayProcess({ port, dataDir: join(dataDir, 'data'), config })
let worker
try {
  let peak = 0
  const sampler = setInterval(async () => { peak = Math.max(peak, await rssMb(gateway.pid)) }, 250)

  const client = new FCClient({ url, timeout: 120_000 })
  await client.ready()
  const payload = 'x'.repeat(64)
  let sent = 0
  let started = Date.now()
  const lane = async () => {
    while (sent < count) {
      sent++
      await client.invokeAsync('Backlog/noop', payload)
    }
  }
  await Promise.all(Array.from({ length: inFlight }, lane))
  const acceptSeconds = (Date.now() - started) / 1000
  const acceptPeak = peak
  console.log(`stored ${count} invocations in ${acceptSeconds.toFixed(1)} s: ${Math.round(count / acceptSeconds)}/s accepted and durable (gateway peak RSS ${acceptPeak.toFixed(0)} MB)`)

  peak = await rssMb(gateway.pid)
  started = Date.now()
  worker = spawn(process.execPath, [cli, 'run', join(root, 'scripts', 'noop-function.cjs'), '--service', 'Backlog', '--function', 'noop', '--concurrency', values.concurrency],
    { stdio: 'inherit', env: { ...process.env, FNBUS_URL: url } })
  for (;;) {
    await sleep(500)
    const [counts] = await client.queueCounts('Backlog/noop')
    if (counts === undefined || counts.pending === 0) break
  }
  const drainSeconds = (Date.now() - started) / 1000
  clearInterval(sampler)
  console.log(`drained ${count} invocations in ${drainSeconds.toFixed(1)} s: ${Math.round(count / drainSeconds)}/s (gateway peak RSS while draining ${peak.toFixed(0)} MB)`)
  await client.close()
} finally {
  worker?.kill('SIGTERM')
  gateway.kill('SIGTERM')
  await exited
  await rm(dataDir, { recursive: true, force: true })
}
