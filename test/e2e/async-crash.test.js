// The small version of scripts/async-crash-test.js: a real gateway process SIGKILLed while accepting and while
// draining; not one accepted invocation may be lost.
import assert from 'node:assert/strict'
import test from 'node:test'
import { runCrashTest } from '../../scripts/async-crash-test.js'

test('SIGKILLing the gateway while it accepts and while it drains loses no accepted invocation', async t => {
  const result = await runCrashTest({ invocations: 600, kills: 4 })
  t.diagnostic(`crash test: ${JSON.stringify(result)} (replay with: node scripts/async-crash-test.js --invocations 600 --kills 4 --seed ${result.seed})`)
  assert.equal(result.kills, 4)
  assert.ok(result.accepted > 0)
  assert.equal(result.lost, 0)
})
