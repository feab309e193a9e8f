// Every bound is documented: the README's limits table lists exactly the keys of DEFAULT_LIMITS, each with its default.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import test from 'node:test'
import { DEFAULT_LIMITS } from '../../dist/index.js'

test("the README's limits table lists exactly the limits, with their defaults", async () => {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8')
  const start = readme.indexOf('`limits` (each an integer')
  assert.ok(start > 0, 'the limits table is in the README')
  const table = readme.slice(start, readme.indexOf('\n\n', readme.indexOf('| limit |', start)))
  const rows = [...table.matchAll(/^\| `(\w+)` \| ([^|]*) \|/gm)].map(match => [match[1], match[2]])
  assert.deepEqual(rows.map(([key]) => key).sort(), Object.keys(DEFAULT_LIMITS).sort())
  for (const [key, documented] of rows) {
    const value = DEFAULT_LIMITS[key]
    // a default derived from another limit is written as that derivation (`maxPayloadBytes` + 64 KiB)
    if (/^`[a-zA-Z]/.test(documented)) continue
    assert.ok(documented.startsWith(`\`${value}\``), `${key}: the README says ${documented}, the code ${value}`)
  }
})
