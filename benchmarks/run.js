#!/usr/bin/env node
// fnbus against its peers, in one run on one machine (issue 6). Runs the workloads in turn, each system of a
// comparison in alternation, writes results.json and regenerates RESULTS.md from it.
//
//   node benchmarks/run.js [--pairs 5] [--warmup 500] [--duration 2000] [--only sync,events] [--quick] …
//   (`npm run bench` from the repository root installs the bench dependencies and builds fnbus first)
import { mkdtempSync, rmSync } from 'node:fs'
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { machine } from './lib/machine.js'
import { writeReport } from './report.js'

const here = fileURLToPath(new URL('.', import.meta.url))

const WORKLOADS = {
  sync: 'Sync invoke between processes',
  inprocess: 'In-process invoke',
  async: 'Async: durable accept and backlog drain',
  events: 'Event publish → subscribe',
  memory: 'Gateway memory with idle workers',
  profile: 'Where fnbus spends its time (CPU profile)',
  metrics: 'What the metrics plugin costs',
  bridge: 'MQTT bridge: forwarding and backlog drain against Mosquitto\'s bridge',
  cluster: 'Gateways as one bus on NATS: cross-gateway Sync against Moleculer, cluster mode against standalone, Async accept against JetStream',
}

const USAGE = `usage: node benchmarks/run.js [options]

  --pairs N          rounds of alternation per comparison (default 5; 1 with --quick)
  --warmup MS        unrecorded warm-up of each timed run (default 500; 250 with --quick)
  --duration MS      recorded part of each timed run (default 2000; 1000 with --quick)
  --sizes LIST       Sync payload sizes in bytes (default 64,1024,65536)
  --in-flight N      calls in flight in the concurrent runs (default 64)
  --async-count N    Async invocations stored, then drained, per run (default 60000; 5000 with --quick)
  --idle N           idle connections in the memory workload (default 1000)
  --only LIST        workloads to run, of: ${Object.keys(WORKLOADS).join(', ')} (default: all)
  --systems LIST     in the Sync workload, only these systems (e.g. fnbus,fnbus-embedded,mosquitto-rpc; default: all)
  --quick            a short run to check that everything works (not for quoting)
  --nats URL         NATS server with JetStream (default nats://127.0.0.1:4222)
  --mosquitto URL    Mosquitto (default mqtt://127.0.0.1:1883)
  --out DIR          where results.json and RESULTS.md go (default: benchmarks/)
  --help`

function parseOptions (argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      pairs: { type: 'string' },
      warmup: { type: 'string' },
      duration: { type: 'string' },
      sizes: { type: 'string', default: '64,1024,65536' },
      'in-flight': { type: 'string', default: '64' },
      'async-count': { type: 'string' },
      idle: { type: 'string', default: '1000' },
      only: { type: 'string', default: Object.keys(WORKLOADS).join(',') },
      systems: { type: 'string' },
      quick: { type: 'boolean', default: false },
      nats: { type: 'string', default: 'nats://127.0.0.1:4222' },
      mosquitto: { type: 'string', default: 'mqtt://127.0.0.1:1883' },
      out: { type: 'string', default: here },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const quick = values.quick
  const only = values.only.split(',').map(s => s.trim()).filter(Boolean)
  for (const name of only) if (!(name in WORKLOADS)) usage(`unknown workload "${name}"`)
  return Object.freeze({
    pairs: int(values.pairs ?? (quick ? '1' : '5'), 'pairs'),
    warmupMs: int(values.warmup ?? (quick ? '250' : '500'), 'warmup', 0),
    durationMs: int(values.duration ?? (quick ? '1000' : '2000'), 'duration'),
    sizes: values.sizes.split(',').map(s => int(s, 'sizes')),
    inFlight: int(values['in-flight'], 'in-flight'),
    asyncCount: int(values['async-count'] ?? (quick ? '5000' : '60000'), 'async-count'),
    idle: int(values.idle, 'idle', 2),
    only,
    systems: values.systems?.split(',').map(s => s.trim()).filter(Boolean),
    quick,
    nats: values.nats,
    mosquitto: values.mosquitto,
    out: values.out,
  })
}

function int (text, name, min = 1) {
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < min) usage(`--${name} must be an integer ≥ ${min}, got ${JSON.stringify(text)}`)
  return value
}

function usage (message) {
  console.error(`bench: ${message}\n\n${USAGE}`)
  process.exit(2)
}

const options = parseOptions(process.argv.slice(2))
const began = Date.now()
const log = message => console.error(`[${((Date.now() - began) / 1000).toFixed(0).padStart(4)} s] ${message}`)

// Every data directory of the run lives under one temporary folder, removed however the run ends.
const tempRoot = mkdtempSync(join(tmpdir(), 'fnbus-bench-'))
process.on('exit', () => rmSync(tempRoot, { recursive: true, force: true }))
const tempDir = prefix => mkdtemp(join(tempRoot, `${prefix}-`))

const results = {
  meta: {
    date: new Date().toISOString(),
    machine: await machine(options),
    options: { ...options, out: undefined },
  },
  workloads: [],
}

for (const id of options.only) {
  log(`${WORKLOADS[id]} …`)
  const started = Date.now()
  const workload = await import(`./workloads/${id}.js`)
  let outcome
  try {
    outcome = await workload.run({ options, log, tempDir })
  } catch (err) {
    // one broken workload must not cost the others: it is reported as failed, plainly
    log(`${id} failed: ${err.stack ?? err}`)
    outcome = { error: err.message }
  }
  results.workloads.push({ id, title: WORKLOADS[id], seconds: Math.round((Date.now() - started) / 1000), ...outcome })
}
results.meta.seconds = Math.round((Date.now() - began) / 1000)
// a machine shared with other work: the report says how loaded it was at both ends of the run
results.meta.machine.loadAverageAtEnd = loadavg().map(load => Math.round(load * 100) / 100)

await mkdir(options.out, { recursive: true })
const jsonPath = join(options.out, 'results.json')
await writeFile(jsonPath, JSON.stringify(results, null, 2) + '\n')
const reportPath = await writeReport(jsonPath, join(options.out, 'RESULTS.md'))
log(`done in ${results.meta.seconds} s: ${jsonPath}, ${reportPath}`)
// the bench clients keep no handle that matters once the results are written
process.exit(results.workloads.some(w => w.error !== undefined) ? 1 : 0)
