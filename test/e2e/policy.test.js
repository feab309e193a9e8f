// `fnbus start` with a policy in its configuration: supervised functions serve under their own identities, the
// command line is checked as the identity it connects as.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { tempDir } from '../helpers.js'
import { FIXTURES, ROOT, runCli, startCli } from './cli.js'

test('fnbus start enforces the configuration\'s policy; supervised functions serve under their own identity', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
    memory: true,
    policy: [
      { identity: '$anonymous', allow: { invoke: ['EdgeFC/*'], publish: ['public/#'] }, deny: { invoke: ['EdgeFC/invoker'] } },
    ],
    functions: [
      { service: 'EdgeFC', function: 'helloworld', module: join(ROOT, 'examples', 'helloworld.cjs') },
      { service: 'Test', function: 'other', module: join(FIXTURES, 'callback.cjs') },
    ],
  }))
  const gateway = await startCli(t, [], { cwd: dir })
  await gateway.waitFor('"msg":"serving EdgeFC/helloworld')
  await gateway.waitFor('"msg":"serving Test/other')

  const allowed = await runCli(t, ['invoke', 'EdgeFC/helloworld', '--payload', 'hi'], { env: gateway.env })
  assert.equal(allowed.code, 0, allowed.stderr)
  assert.equal(allowed.stdout, 'Message from helloworld')

  const denied = await runCli(t, ['invoke', 'EdgeFC/invoker'], { env: gateway.env })
  assert.equal(denied.code, 1)
  assert.match(denied.stderr, /^FNBUS_NOT_AUTHORIZED: \$anonymous may not invoke EdgeFC\/invoker/)
  const notAllowed = await runCli(t, ['invoke', 'Test/other', '--payload', 'x'], { env: gateway.env })
  assert.equal(notAllowed.code, 1)
  assert.match(notAllowed.stderr, /^FNBUS_NOT_AUTHORIZED: /)
})

test('an invalid policy stops fnbus start with exit 2 naming the file and the entry', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ memory: true, policy: [{ identity: 'x', allow: { invoke: ['no-slash'] } }] }))
  const run = await runCli(t, ['start', '--port', '0'], { cwd: dir })
  assert.equal(run.code, 2)
  assert.match(run.stderr, /FNBUS_CONFIG_INVALID: .*fnbus\.config\.json: policy\[0\]\.allow\.invoke\[0\] must be "Service\/function"/)
})
