// The import-cycle check that `npm test` runs: it finds a cycle (type-only imports included) and passes without one.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'node:test'
import { fileURLToPath } from 'node:url'
import { tempDir } from '../helpers.js'

const SCRIPT = fileURLToPath(new URL('../../scripts/check-cycles.js', import.meta.url))

test('check-cycles fails on a cycle through a type-only import, passes on a layered tree', async t => {
  const dir = await tempDir(t)
  await mkdir(join(dir, 'sub'))
  await writeFile(join(dir, 'a.ts'), "import { b } from './sub/b.js'\nexport const a = b\n")
  await writeFile(join(dir, 'sub', 'b.ts'), "import type { C } from '../c.js'\nexport const b = 1 as unknown as C\n")
  await writeFile(join(dir, 'c.ts'), 'export type C = number\n')
  const layered = spawnSync(process.execPath, [SCRIPT, dir], { encoding: 'utf8' })
  assert.equal(layered.status, 0, layered.stderr)
  await writeFile(join(dir, 'c.ts'), "import type { a } from './a.js'\nexport type C = typeof a\n")
  const cyclic = spawnSync(process.execPath, [SCRIPT, dir], { encoding: 'utf8' })
  assert.equal(cyclic.status, 1)
  assert.match(cyclic.stderr, /import cycle: .*a\.ts.*c\.ts.*b\.ts/)
})
