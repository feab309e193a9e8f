// Every bound is documented: the limits table of docs/configuration.md lists exactly the keys of DEFAULT_LIMITS, each
// with its default.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import test from 'node:test'
import { DEFAULT_LIMITS } from '../../dist/index.js'

test('the limits table of docs/configuration.md lists exactly the limits, with their defaults', async () => {
  const page = await readFile(new URL('../../docs/configuration.md', import.meta.url), 'utf8')
  const start = page.indexOf('`limits` (each an integer')
  assert.ok(start > 0, 'the limits table is in docs/configuration.md')
  const table = page.slice(start, page.indexOf('\n\n', page.indexOf('| limit |', start)))
  const rows = [...table.matchAll(/^\| `(\w+)` \| ([^|]*) \|/gm)].map(match => [match[1], match[2]])
  assert.deepEqual(rows.map(([key]) => key).sort(), Object.keys(DEFAULT_LIMITS).sort())
  for (const [key, documented] of rows) {
    const value = DEFAULT_LIMITS[key]
    // a default derived from another limit is written as that derivation (`maxPayloadBytes` + 64 KiB)
    if (/^`[a-zA-Z]/.test(documented)) continue
    assert.ok(documented.startsWith(`\`${value}\``), `${key}: docs/configuration.md says ${documented}, the code ${value}`)
  }
})
