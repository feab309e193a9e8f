// `fnbus invoke` as a shell user runs it: output on stdout, diagnostics on stderr, exit status 0/1/2/3.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { startGateway, tempDir } from '../helpers.js'
import { freePort, runCli } from './cli.js'

async function gatewayWithFunctions (t) {
  const gw = await startGateway(t)
  await gw.serve('Test/echo', async (event, context) => {
    if (event === 'object') return { answer: 42 }
    if (event === 'bytes') return Buffer.from([0xff, 0x00, 0x41])
    if (event === 'context') return context.invokerContext
    if (event === 'nothing') return undefined
    if (event === null) return 'no payload'
    return event
  })
  await gw.serve('Test/fail', (event, context, callback) => {
    if (event === 'handled') return callback(new Error('bad input'))
    throw new Error('boom')
  })
  await gw.serve('Test/slow', () => new Promise(resolve => setTimeout(() => resolve('late'), 3000)))
  return { gw, env: { FNBUS_URL: gw.url } }
}

test('invoke prints a string result as it is and exits 0', async t => {
  const { env } = await gatewayWithFunctions(t)
  const result = await runCli(t, ['invoke', 'Test/echo', '--payload', 'hi there'], { env })
  assert.equal(result.stderr, '')
  assert.equal(result.stdout, 'hi there') // not a terminal: no newline added
  assert.equal(result.code, 0)
})

test('invoke prints Buffers raw and other values as JSON', async t => {
  const { env } = await gatewayWithFunctions(t)
  const bytes = await runCli(t, ['invoke', 'Test/echo', '--payload', 'bytes'], { env })
  assert.deepEqual(bytes.stdoutBytes, Buffer.from([0xff, 0x00, 0x41]))
  const object = await runCli(t, ['invoke', 'Test/echo', '--payload', 'object'], { env })
  assert.equal(object.stdout, '{"answer":42}\n')
  const nothing = await runCli(t, ['invoke', 'Test/echo', '--payload', 'nothing'], { env })
  assert.equal(nothing.stdout, 'null\n')
  const noPayload = await runCli(t, ['invoke', 'Test/echo'], { env })
  assert.equal(noPayload.stdout, 'no payload')
})

test('--payload - reads the payload from stdin, --payload-file from a file', async t => {
  const { env } = await gatewayWithFunctions(t)
  const fromStdin = await runCli(t, ['invoke', 'Test/echo', '--payload', '-'], { env, input: 'line 1\nline 2\n' })
  assert.equal(fromStdin.stdout, 'line 1\nline 2\n')
  const dir = await tempDir(t)
  await writeFile(join(dir, 'payload.txt'), 'from a file')
  const fromFile = await runCli(t, ['invoke', 'Test/echo', '--payload-file', 'payload.txt'], { env, cwd: dir })
  assert.equal(fromFile.stdout, 'from a file')
})

test('--json prints the whole result object', async t => {
  const { env } = await gatewayWithFunctions(t)
  const ok = await runCli(t, ['invoke', 'Test/echo', '--payload', 'hi', '--json'], { env })
  assert.deepEqual(JSON.parse(ok.stdout), { statusCode: 200, payload: 'hi' })
  const bytes = await runCli(t, ['invoke', 'Test/echo', '--payload', 'bytes', '--json'], { env })
  assert.deepEqual(JSON.parse(bytes.stdout), { statusCode: 200, payload: '/wBB', payloadEncoding: 'base64' })
  const failed = await runCli(t, ['invoke', 'Test/fail', '--payload', 'handled', '--json'], { env })
  assert.deepEqual(JSON.parse(failed.stdout), { statusCode: 200, payload: 'bad input', functionError: 'Handled' })
  assert.equal(failed.code, 3)
})

test('--context reaches the function as context.invokerContext', async t => {
  const { env } = await gatewayWithFunctions(t)
  const result = await runCli(t, ['invoke', 'Test/echo', '--payload', 'context', '--context', '{"custom":{"data":"x"}}'], { env })
  assert.equal(result.stdout, '{"custom":{"data":"x"}}\n')
  assert.equal(result.code, 0)
})

test('a failed function exits 3 with functionError and its message on stderr', async t => {
  const { env } = await gatewayWithFunctions(t)
  const handled = await runCli(t, ['invoke', 'Test/fail', '--payload', 'handled'], { env })
  assert.equal(handled.code, 3)
  assert.equal(handled.stdout, '')
  assert.equal(handled.stderr, 'Handled: bad input\n')
  const unhandled = await runCli(t, ['invoke', 'Test/fail', '--payload', 'throw'], { env })
  assert.equal(unhandled.code, 3)
  assert.equal(unhandled.stderr, 'Unhandled: boom\n')
})

test('a transport or gateway error exits 1 with its code and message on stderr', async t => {
  const { env } = await gatewayWithFunctions(t)
  const missing = await runCli(t, ['invoke', 'X/y'], { env })
  assert.equal(missing.code, 1)
  assert.equal(missing.stdout, '')
  assert.equal(missing.stderr, 'FNBUS_FUNCTION_NOT_FOUND: no worker serves X/y\n')

  // the function answers after 3 s: a timeout, not its answer, proves that --timeout applies
  const late = await runCli(t, ['invoke', 'Test/slow', '--timeout', '300'], { env })
  assert.equal(late.code, 1)
  assert.match(late.stderr, /^FNBUS_TIMEOUT: /)
})

test('--wait-for-worker waits for a worker that comes online', async t => {
  const { gw, env } = await gatewayWithFunctions(t)
  setTimeout(() => { gw.serve('Test/later', () => 'here now') }, 300)
  const result = await runCli(t, ['invoke', 'Test/later', '--wait-for-worker', '5000'], { env })
  assert.equal(result.stdout, 'here now')
  assert.equal(result.code, 0)
})

test('--async passes invocationType Async through', async t => {
  const { env } = await gatewayWithFunctions(t)
  const result = await runCli(t, ['invoke', 'Test/echo', '--async', '--payload', 'x'], { env })
  assert.equal(result.code, 0, result.stderr)
  assert.match(result.stdout, /^\S+\n$/, 'prints the invocation id')
})

test('--url and FNBUS_URL choose the gateway; an unreachable one fails at once with exit 1', async t => {
  const { gw } = await gatewayWithFunctions(t)
  const viaFlag = await runCli(t, ['invoke', 'Test/echo', '--payload', 'a', '--url', gw.url])
  assert.equal(viaFlag.stdout, 'a')
  const nobody = `mqtt://127.0.0.1:${await freePort()}`
  const started = Date.now()
  const unreachable = await runCli(t, ['invoke', 'Test/echo'], { env: { FNBUS_URL: nobody } })
  assert.equal(unreachable.code, 1)
  assert.match(unreachable.stderr, new RegExp(`^FNBUS_DISCONNECTED: cannot connect to the gateway at ${nobody}`))
  assert.ok(Date.now() - started < 5000)
})

test('usage errors exit 2 with the message and a pointer to --help', async t => {
  const { env } = await gatewayWithFunctions(t)
  // one of each kind here; test/unit/cli-main.test.js holds the rest without spawning processes
  /** @type {[string[], RegExp][]} */
  const cases = [
    [['invoke'], /missing SERVICE\/FUNCTION/],
    [['invoke', 'Test/echo', '--bogus'], /Unknown option '--bogus'/],
    [['invoke', 'Test/echo', '--timeout', 'soon'], /--timeout must be an integer/],
  ]
  for (const [args, message] of cases) {
    const result = await runCli(t, args, { env })
    assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`)
    assert.match(result.stderr, message)
    assert.match(result.stderr, /Run "fnbus invoke --help" for usage\.\n$/)
    assert.equal(result.stdout, '')
  }
})
