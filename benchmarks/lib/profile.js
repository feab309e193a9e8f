// Reads a V8 .cpuprofile (node --cpu-prof) and tells where a process spent the measured window: its share of
// the window on CPU, self time by area (fnbus, aedes, mqtt-packet, Node's streams, GC, …) and the hottest
// functions, fnbus' own mapped back to src/*.ts through the build's source maps.
import { readFileSync } from 'node:fs'
import { SourceMap } from 'node:module'
import { fileURLToPath } from 'node:url'

const rootDir = fileURLToPath(new URL('../..', import.meta.url))
const sourceMaps = new Map()

/** `file:///…/dist/x.js` line/column (0-based) → `src/x.ts:LINE`, or null without a source map. */
function originalPosition (url, line, column) {
  if (!sourceMaps.has(url)) {
    let map = null
    try {
      map = new SourceMap(JSON.parse(readFileSync(`${fileURLToPath(url)}.map`, 'utf8')))
    } catch {}
    sourceMaps.set(url, map)
  }
  const entry = sourceMaps.get(url)?.findEntry(line, column)
  if (entry?.originalSource === undefined) return null
  const source = new URL(entry.originalSource, url).pathname.replace(rootDir, '')
  return `${source}:${entry.originalLine + 1}`
}

/** The area a frame belongs to: its npm package, fnbus, a part of Node, or one of V8's pseudo-frames. */
function areaOf ({ functionName, url }) {
  if (url === '') {
    if (functionName === '(garbage collector)') return 'GC'
    if (functionName === '(idle)') return 'idle'
    if (functionName === '(program)') return 'V8 / native (program)'
    return 'native (C++ bindings)'
  }
  if (url.startsWith('node:')) {
    const path = url.slice('node:'.length).replace(/^internal\//, '')
    return `node:${path.split('/')[0].replace(/\.js$/, '')}`
  }
  const modules = url.lastIndexOf('/node_modules/')
  if (modules !== -1) {
    const rest = url.slice(modules + '/node_modules/'.length).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  if (url.includes('/benchmarks/')) return 'bench harness'
  if (url.startsWith(`file://${rootDir}dist/`)) return 'fnbus'
  return 'other'
}

function locationOf ({ url, lineNumber, columnNumber }) {
  if (url === '') return ''
  if (url.startsWith(`file://${rootDir}dist/`)) {
    return originalPosition(url, lineNumber, columnNumber) ?? `${url.replace(`file://${rootDir}`, '')}:${lineNumber + 1}`
  }
  const modules = url.lastIndexOf('/node_modules/')
  const short = modules !== -1 ? url.slice(modules + '/node_modules/'.length) : url.replace(`file://${rootDir}`, '')
  return `${short}:${lineNumber + 1}`
}

/**
 * Summarises `file` over the monotonic window [startMicros, endMicros] (the clock of process.hrtime, which V8
 * stamps samples with). `top` functions are listed.
 */
export function summarizeProfile (file, { startMicros, endMicros }, top = 15) {
  const profile = JSON.parse(readFileSync(file, 'utf8'))
  const nodes = new Map(profile.nodes.map(node => [node.id, node]))
  const selfMicros = new Map()
  let time = profile.startTime
  let windowMicros = 0
  for (let i = 0; i < profile.samples.length; i++) {
    time += profile.timeDeltas[i]
    // a sample stands for the interval up to the next one
    const interval = profile.timeDeltas[i + 1] ?? 0
    if (time < startMicros || time > endMicros) continue
    selfMicros.set(profile.samples[i], (selfMicros.get(profile.samples[i]) ?? 0) + interval)
    windowMicros += interval
  }

  const areas = new Map()
  const functions = new Map()
  for (const [id, micros] of selfMicros) {
    const frame = nodes.get(id).callFrame
    const area = areaOf(frame)
    areas.set(area, (areas.get(area) ?? 0) + micros)
    if (area === 'idle') continue
    const key = `${frame.functionName || '(anonymous)'}\u0000${locationOf(frame)}`
    const entry = functions.get(key) ?? { function: frame.functionName || '(anonymous)', location: locationOf(frame), area, micros: 0 }
    entry.micros += micros
    functions.set(key, entry)
  }
  const share = micros => windowMicros === 0 ? 0 : Math.round((micros / windowMicros) * 1000) / 10
  const idle = areas.get('idle') ?? 0
  return {
    windowSeconds: Math.round(windowMicros / 1e4) / 100,
    // how busy the process was: near 100% marks the bottleneck of a pipeline
    busyPercent: share(windowMicros - idle),
    areas: [...areas].filter(([area]) => area !== 'idle').sort((a, b) => b[1] - a[1]).map(([area, micros]) => ({ area, percent: share(micros) })),
    functions: [...functions.values()].sort((a, b) => b.micros - a.micros).slice(0, top)
      .map(({ micros, ...entry }) => ({ ...entry, percent: share(micros) })),
  }
}
