// A function module with a mistake in it: the gateway says so at start, before it listens, with the file and the
// reason (exit 2, as other configuration errors), instead of restarting the function for ever while its callers get
// FNBUS_FUNCTION_NOT_FOUND; a module that stops loading later is shown as such in the status.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'node:test'
import { FCClient } from '../../dist/index.js'
import { defined, tempDir, waitFor } from '../helpers.js'
import { freePort, runCli, startCli } from './cli.js'

async function configWith (t, files) {
  const dir = await tempDir(t)
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text)
  return dir
}

const config = module => JSON.stringify({ functions: [{ service: 'Site', function: 'fn', module }] })

test('a module path with a typo, a module that does not parse, and one that throws while loading: exit 2 naming the file and why', async t => {
  /** @type {[string, Record<string, string>, RegExp][]} */
  const cases = [
    ['./helloword.cjs', {}, /functions\[0\] \(Site\/fn\): module \S+helloword\.cjs does not exist/],
    ['./broken.cjs', { 'broken.cjs': 'exports.handler = function (event, context, callback) {\n  callback(null, event\n}\n' },
      /module \S+broken\.cjs does not compile: SyntaxError: missing \) after argument list \(line 2\)/],
    ['./throws.cjs', { 'throws.cjs': "throw new Error('SITE_ID is not set')\n" },
      /functions\[0\] \(Site\/fn\): its module did not load in its first instance: .*SITE_ID is not set/],
  ]
  for (const [module, files, expected] of cases) {
    const dir = await configWith(t, { 'fnbus.config.json': config(module), ...files })
    const started = Date.now()
    const result = await runCli(t, ['start', '--memory', '--port', String(await freePort())], { cwd: dir })
    assert.equal(result.code, 2, `${module}: ${result.stderr}`)
    assert.match(result.stderr, /FNBUS_CONFIG_INVALID/)
    assert.match(result.stderr, expected)
    assert.ok(Date.now() - started < 15_000, `${module}: said so at start`)
    if (!module.includes('throws')) assert.doesNotMatch(result.stdout, /listening/, `${module}: refused before listening`)
  }
})

test('an instance that stops loading after it ran shows why in the status, where operators look', async t => {
  const dir = await configWith(t, {
    'fnbus.config.json': config('./flaky.cjs'),
    // loads while no `broken` file sits beside it
    'flaky.cjs': "if (require('node:fs').existsSync(__dirname + '/broken')) throw new Error('the license file is gone')\nexports.handler = async event => event\n",
  })
  const gateway = await startCli(t, ['--memory'], { cwd: dir })
  const fc = new FCClient({ url: gateway.url })
  t.after(() => fc.close())
  assert.equal(await fc.invoke('Site/fn', 'hi', { waitForWorker: 10_000 }), 'hi')
  const status = await fc.status()
  const pid = defined(status.functions.find(f => f.name === 'Site/fn')?.instances[0]?.pid)
  await writeFile(join(dir, 'broken'), '')
  process.kill(pid, 'SIGKILL')
  const failing = await waitFor(async () => {
    const instance = (await fc.status()).functions.find(f => f.name === 'Site/fn')?.instances[0]
    return instance?.lastFailure?.includes('license') ? instance : undefined
  }, 15_000, 'the reason in the status')
  assert.equal(failing.ready, false)
  assert.match(String(failing.lastFailure), /the license file is gone/)
  const human = await runCli(t, ['status'], { env: gateway.env })
  assert.match(human.stdout, /NOT STARTING\nSite\/fn#1 {2}restarts=\d+ {2}.*the license file is gone/)
  // and its callers learn why it has no worker
  const call = await fc.invoke('Site/fn', 'hi').then(() => undefined, err => err)
  assert.equal(call.code, 'FNBUS_FUNCTION_NOT_FOUND')
  assert.match(call.message, /^no worker serves Site\/fn: its supervised instance Site\/fn#1 keeps failing to start \(.*the license file is gone\)/)
  assert.equal(gateway.child.exitCode, null, 'a later failure does not stop the gateway')
})
