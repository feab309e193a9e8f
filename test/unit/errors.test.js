import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import test from 'node:test'
import { ErrorCodes, FnbusError } from '../../dist/index.js'

test("the README's error table lists exactly the exported codes", async () => {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8')
  const section = readme.slice(readme.indexOf('## Errors'), readme.indexOf('\n## ', readme.indexOf('## Errors') + 1))
  const documented = [...section.matchAll(/^\| `(FNBUS_[A-Z_]+)` \|/gm)].map(match => match[1])
  assert.deepEqual(documented.sort(), Object.keys(ErrorCodes).sort())
})

test('errors carry their code, a default message and the retryable flag', () => {
  const err = new FnbusError('FNBUS_QUEUE_FULL')
  assert.equal(err.code, 'FNBUS_QUEUE_FULL')
  assert.equal(err.message, ErrorCodes.FNBUS_QUEUE_FULL)
  assert.equal(err.retryable, true)
  assert.equal(new FnbusError('FNBUS_WORKER_LOST').retryable, false)
  assert.ok(err instanceof Error)
})
