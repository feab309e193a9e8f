#!/usr/bin/env node
// Functions as threads vs as processes, through `fnbus start` as a user runs it (one run, a few minutes at most):
// - RSS of the gateway and everything it started, with 10 sample functions (examples/helloworld.cjs) running;
// - time from spawning `fnbus start` to all 10 serving;
// - serial Sync p50 from a function to another (serial-caller.cjs → echo.cjs), both threads or both processes,
//   3 rounds alternated. Usage: node benchmarks/isolation/run.js
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { FCClient } from '../../dist/index.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const HERE = fileURLToPath(new URL('.', import.meta.url))
const BIN = join(ROOT, 'bin/fnbus.js')

async function startGateway (functions) {
  const dir = await mkdtemp(join(tmpdir(), 'fnbus-isolation-'))
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ port: 0, memory: true, functions }))
  const started = performance.now()
  const child = spawn(process.execPath, [BIN, 'start'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let serving = 0
  let allServing
  const servingAll = new Promise(resolve => { allServing = resolve })
  let listeningMs
  child.stdout.on('data', chunk => {
    out += chunk
    if (listeningMs === undefined && out.includes('listening on')) listeningMs = performance.now() - started
  })
  child.stderr.setEncoding('utf8')
  let partial = ''
  child.stderr.on('data', chunk => {
    const lines = (partial + chunk).split('\n')
    partial = lines.pop()
    for (const line of lines) {
      if (/"msg":"serving /.test(line) && ++serving === functions.length) allServing(performance.now() - started)
    }
  })
  const readyMs = await servingAll
  const url = /listening on (mqtt:\S+)/.exec(out)[1]
  return {
    child,
    url,
    readyMs,
    listeningMs,
    stop: async () => {
      child.kill('SIGTERM')
      await new Promise(resolve => child.once('close', resolve))
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** RSS of `pid` and every process below it, MB. */
async function treeRssMb (pid) {
  const parents = new Map()
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8')
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))
    } catch {}
  }
  const tree = [pid]
  for (let i = 0; i < tree.length; i++) for (const [child, parent] of parents) if (parent === tree[i]) tree.push(child)
  let kb = 0
  for (const p of tree) {
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${p}/status`, 'utf8'))[1])
    } catch {}
  }
  return { mb: kb / 1024, processes: tree.length }
}

const median = values => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function footprint (isolation) {
  const functions = Array.from({ length: 10 }, (_, i) => ({ service: 'Sample', function: `hello${i}`, module: join(ROOT, 'examples/helloworld.cjs'), isolation }))
  const gw = await startGateway(functions)
  await new Promise(resolve => setTimeout(resolve, 3000))
  const rss = await treeRssMb(gw.child.pid)
  await gw.stop()
  return { readyMs: gw.readyMs, listeningMs: gw.listeningMs, ...rss }
}

async function serial (isolation, calls = 3000) {
  const gw = await startGateway([
    { service: 'Bench', function: 'echo', module: join(HERE, 'echo.cjs'), isolation },
    { service: 'Bench', function: 'caller', module: join(HERE, 'serial-caller.cjs'), isolation },
  ])
  const fc = new FCClient({ url: gw.url })
  const times = await fc.invoke('Bench/caller', { calls }, { timeout: 120_000 })
  await fc.close()
  await gw.stop()
  return median(times)
}

for (const isolation of ['thread', 'process']) {
  const f = await footprint(isolation)
  console.log(`${isolation}: 10 functions serving ${Math.round(f.readyMs)} ms after spawn (${Math.round(f.readyMs - f.listeningMs)} ms after the gateway listened); RSS ${f.mb.toFixed(0)} MB in ${f.processes} processes`)
}
const p50 = { thread: [], process: [] }
for (let round = 1; round <= 3; round++) {
  for (const isolation of ['thread', 'process']) p50[isolation].push(await serial(isolation))
}
for (const isolation of ['thread', 'process']) console.log(`${isolation} → ${isolation}: serial Sync p50 ${p50[isolation].map(v => v.toFixed(0)).join(', ')} µs (3 rounds)`)
