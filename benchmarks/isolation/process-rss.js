#!/usr/bin/env node
// The resident memory of one `"process"` function as users run it, against a bare `node`: a real `fnbus start`
// gateway (in memory, its Unix socket) with FUNCTIONS `"process"` functions (examples/helloworld.cjs), each called a
// few times, then each function process's VmRSS read from /proc/PID/status; and a bare `node -e
// 'setInterval(()=>{},1e3)'` read the same way at the same moment. ROUNDS rounds, medians, ratio.
// Usage: node benchmarks/isolation/process-rss.js [--rounds 5] [--functions 3] [--settle 2000]
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { FCClient } from '../../dist/index.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const BIN = join(ROOT, 'bin/fnbus.js')
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, functions: { type: 'string', default: '3' }, settle: { type: 'string', default: '2000' } } })
const ROUNDS = Number(values.rounds)
const FUNCTIONS = Number(values.functions)
const SETTLE_MS = Number(values.settle)

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const median = list => { const s = [...list].sort((a, b) => a - b); return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2 }

async function rssMb (pid) {
  return Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))[1]) / 1024
}

async function childrenOf (pid) {
  const children = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(entry))
    } catch {}
  }
  return children
}

async function round () {
  const dir = await mkdtemp(join(tmpdir(), 'fnbus-process-rss-'))
  const functions = Array.from({ length: FUNCTIONS }, (_, i) => ({ service: 'Rss', function: `hello${i}`, module: join(ROOT, 'examples/helloworld.cjs'), isolation: 'process' }))
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ port: 0, memory: true, functions }))
  const gateway = spawn(process.execPath, [BIN, 'start'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  const bare = spawn(process.execPath, ['-e', 'setInterval(()=>{},1e3)'], { stdio: 'ignore' })
  try {
    let out = ''
    gateway.stdout.on('data', chunk => { out += chunk })
    let serving = 0
    let err = ''
    const allServing = new Promise((resolve, reject) => {
      gateway.stderr.on('data', chunk => {
        err += chunk
        const lines = err.split('\n')
        err = lines.pop()
        for (const line of lines) if (/"msg":"serving /.test(line) && ++serving === FUNCTIONS) resolve()
      })
      gateway.once('exit', code => reject(new Error(`fnbus start exited with ${code}`)))
    })
    await allServing
    const url = /listening on (mqtt:\S+)/.exec(out)[1]
    const fc = new FCClient({ url })
    for (let call = 0; call < 20; call++) {
      await Promise.all(functions.map(fn => fc.invoke(`Rss/${fn.function}`, 'hi', { invokerContext: { custom: { call } } })))
    }
    await fc.close()
    await sleep(SETTLE_MS)
    const pids = await childrenOf(gateway.pid)
    if (pids.length !== FUNCTIONS) throw new Error(`${pids.length} function processes, expected ${FUNCTIONS}`)
    const functionMb = await Promise.all(pids.map(rssMb))
    return { functionMb, bareMb: await rssMb(bare.pid), gatewayMb: await rssMb(gateway.pid) }
  } finally {
    bare.kill()
    gateway.kill('SIGTERM')
    await new Promise(resolve => gateway.exitCode !== null ? resolve() : gateway.once('close', resolve))
    await rm(dir, { recursive: true, force: true })
  }
}

const rounds = []
for (let r = 1; r <= ROUNDS; r++) {
  const result = await round()
  rounds.push(result)
  console.log(`round ${r}: function processes ${result.functionMb.map(mb => mb.toFixed(1)).join(', ')} MB; bare node ${result.bareMb.toFixed(1)} MB; gateway ${result.gatewayMb.toFixed(1)} MB`)
}
const fnMedian = median(rounds.map(r => median(r.functionMb)))
const bareMedian = median(rounds.map(r => r.bareMb))
console.log(`median of ${ROUNDS} rounds (${FUNCTIONS} functions each): function process ${fnMedian.toFixed(1)} MB, bare node ${bareMedian.toFixed(1)} MB, ratio ${(fnMedian / bareMedian).toFixed(3)}×`)
