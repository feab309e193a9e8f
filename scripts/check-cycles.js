#!/usr/bin/env node
// Fails when the TypeScript sources import each other in a cycle, type-only imports included: a cycle makes the
// layers unreadable (which module is below which?) and, at run time, can hand a module another one half-loaded.
// Usage: node scripts/check-cycles.js [DIR…]   (default: src)
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'

const roots = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['src']
const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'"`;]*?from\s+['"](\.{1,2}\/[^'"]+)['"]/g

function files (dir) {
  return readdirSync(dir).flatMap(name => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return files(path)
    return path.endsWith('.ts') && !path.endsWith('.d.ts') ? [resolve(path)] : []
  })
}

const graph = new Map()
for (const root of roots) {
  for (const file of files(root)) {
    const source = readFileSync(file, 'utf8')
    const edges = new Set()
    for (const [, spec] of source.matchAll(IMPORT)) edges.add(resolve(dirname(file), spec.replace(/\.js$/, '.ts')))
    graph.set(file, edges)
  }
}

// Tarjan's strongly connected components: every component of more than one module is a cycle
let index = 0
const stack = []
const on = new Set()
const indexOf = new Map()
const low = new Map()
const cycles = []
function visit (node) {
  indexOf.set(node, index)
  low.set(node, index++)
  stack.push(node)
  on.add(node)
  for (const next of graph.get(node) ?? []) {
    if (!graph.has(next)) continue
    if (!indexOf.has(next)) {
      visit(next)
      low.set(node, Math.min(low.get(node), low.get(next)))
    } else if (on.has(next)) {
      low.set(node, Math.min(low.get(node), indexOf.get(next)))
    }
  }
  if (low.get(node) === indexOf.get(node)) {
    const component = []
    let member
    do {
      member = stack.pop()
      on.delete(member)
      component.push(member)
    } while (member !== node)
    if (component.length > 1 || graph.get(node).has(node)) cycles.push(component)
  }
}
for (const node of graph.keys()) if (!indexOf.has(node)) visit(node)

if (cycles.length === 0) {
  console.log(`no import cycles among ${graph.size} modules`)
} else {
  for (const cycle of cycles) console.error(`import cycle: ${cycle.map(f => relative(process.cwd(), f)).sort().join(', ')}`)
  process.exitCode = 1
}
