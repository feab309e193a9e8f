// The documentation holds together: every relative link in README.md, CHANGELOG.md, docs/ and benchmarks/ names a
// file that exists and, for a Markdown file, a heading it has (GitHub's anchors); and the README links every page
// under docs/.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import test from 'node:test'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

async function documents () {
  const docs = (await readdir(join(ROOT, 'docs'))).filter(name => name.endsWith('.md')).map(name => join('docs', name))
  return ['README.md', 'CHANGELOG.md', ...docs, 'benchmarks/README.md', 'benchmarks/NOTES.md', 'benchmarks/RESULTS.md']
}

/** The text outside fenced code blocks, inline code spans blanked (a link inside code is no link). */
function prose (markdown) {
  let fenced = false
  return markdown.split('\n').map(line => {
    if (/^\s*```/.test(line)) {
      fenced = !fenced
      return ''
    }
    return fenced ? '' : line.replace(/`[^`]*`/g, '``')
  })
}

/** A heading's anchor as GitHub writes it (github-slugger): formatting dropped, punctuation dropped, spaces to `-`. */
function slug (heading) {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/[`*]/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-')
}

const anchorCache = new Map()

async function anchors (file) {
  if (!anchorCache.has(file)) {
    const seen = new Map()
    const found = new Set()
    let fenced = false
    for (const line of (await readFile(file, 'utf8')).split('\n')) {
      if (/^\s*```/.test(line)) fenced = !fenced
      const heading = fenced ? null : /^#{1,6} (.*)$/.exec(line)
      if (heading === null) continue
      const base = slug(heading[1])
      const count = seen.get(base) ?? 0
      seen.set(base, count + 1)
      found.add(count === 0 ? base : `${base}-${count}`)
    }
    anchorCache.set(file, found)
  }
  return anchorCache.get(file)
}

/** Every inline link's target in a document, with its line number. */
function links (markdown) {
  const found = []
  prose(markdown).forEach((line, i) => {
    for (const match of line.matchAll(/\]\(([^)\s]+)\)/g)) found.push({ target: match[1], line: i + 1 })
  })
  return found
}

test('every relative link and anchor in the documentation resolves', async () => {
  const broken = []
  let checked = 0
  for (const doc of await documents()) {
    const file = join(ROOT, doc)
    for (const { target, line } of links(await readFile(file, 'utf8'))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // http:, https:, mailto:
      checked++
      const [path, anchor] = target.split('#')
      const resolved = path === '' ? file : join(dirname(file), decodeURIComponent(path))
      if (!existsSync(resolved)) {
        broken.push(`${doc}:${line}: ${target} (no file ${relative(ROOT, resolved)})`)
      } else if (anchor !== undefined && resolved.endsWith('.md') && !(await anchors(resolved)).has(anchor)) {
        broken.push(`${doc}:${line}: ${target} (no heading #${anchor} in ${relative(ROOT, resolved)})`)
      }
    }
  }
  assert.ok(checked > 100, `only ${checked} links found: is the link pattern still right?`)
  assert.deepEqual(broken, [])
})

test('the README links every page under docs/', async () => {
  const readme = links(await readFile(join(ROOT, 'README.md'), 'utf8')).map(({ target }) => target.split('#')[0])
  const pages = (await readdir(join(ROOT, 'docs'))).filter(name => name.endsWith('.md'))
  assert.deepEqual(pages.filter(page => !readme.includes(`docs/${page}`)), [])
})

test('anchors are written as GitHub writes them', () => {
  assert.equal(slug('Running functions (`fnbus run`, supervisor)'), 'running-functions-fnbus-run-supervisor')
  assert.equal(slug('`new FCClient(options?)`'), 'new-fcclientoptions')
  assert.equal(slug('MQTT over WebSocket, and the SDK in a browser'), 'mqtt-over-websocket-and-the-sdk-in-a-browser')
  assert.equal(slug('Invoker context (`ctx`)'), 'invoker-context-ctx')
  assert.equal(slug('1. Sync invoke between processes'), '1-sync-invoke-between-processes')
})
