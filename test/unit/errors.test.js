import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import test from 'node:test'
import { ErrorCodes, FnbusError } from '../../dist/index.js'

test('the error table of docs/errors.md lists exactly the exported codes', async () => {
  const page = await readFile(new URL('../../docs/errors.md', import.meta.url), 'utf8')
  assert.ok(page.startsWith('# Errors\n'), 'docs/errors.md is the errors page')
  // the page's own section: up to a second-level heading, if one is ever added below the table
  const end = page.indexOf('\n## ')
  const section = end === -1 ? page : page.slice(0, end)
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
