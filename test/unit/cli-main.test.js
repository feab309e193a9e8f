// main() with in-memory streams: usage errors, help and version without spawning a process.
import assert from 'node:assert/strict'
import { PassThrough, Readable } from 'node:stream'
import { test } from 'node:test'
import { VERSION } from '../../dist/index.js'
import { main } from '../../dist/cli/main.js'
import { toJsonResult, writeValue } from '../../dist/cli/output.js'

async function cli (...argv) {
  const capture = () => {
    const stream = new PassThrough()
    let text = ''
    stream.on('data', chunk => { text += chunk })
    return { stream, text: () => text }
  }
  const stdout = capture()
  const stderr = capture()
  const io = { stdout: stdout.stream, stderr: stderr.stream, stdin: Readable.from([]), env: {}, cwd: process.cwd() }
  const code = await main(argv, io)
  return { code, stdout: stdout.text(), stderr: stderr.text() }
}

test('--version prints the package version; --help the commands; no command is a usage error', async () => {
  assert.deepEqual(await cli('--version'), { code: 0, stdout: `${VERSION}\n`, stderr: '' })
  const help = await cli('--help')
  assert.equal(help.code, 0)
  assert.match(help.stdout, /^Usage: fnbus COMMAND \[options\]$/m)
  const bare = await cli()
  assert.equal(bare.code, 2)
  assert.match(bare.stderr, /Usage: fnbus COMMAND/)
})

test('COMMAND --help prints its help on stdout and exits 0, whatever else is on the line', async () => {
  for (const command of ['start', 'run', 'invoke', 'publish', 'subscribe']) {
    const result = await cli(command, '--help')
    assert.equal(result.code, 0)
    assert.ok(result.stdout.startsWith(`Usage: fnbus ${command}`))
  }
  assert.equal((await cli('invoke', '-h')).code, 0)
})

test('unknown commands and options exit 2 with the message', async () => {
  const unknown = await cli('deploy')
  assert.equal(unknown.code, 2)
  assert.match(unknown.stderr, /^fnbus: unknown command "deploy"\n/)
  const option = await cli('publish', 't', '--qos2')
  assert.equal(option.code, 2)
  assert.match(option.stderr, /^fnbus publish: Unknown option '--qos2'/)
  assert.match(option.stderr, /Run "fnbus publish --help" for usage\.\n$/)
})

test('argument mistakes are usage errors, found before any connection is tried', async () => {
  /** @type {[string[], RegExp][]} */
  const cases = [
    [['invoke', 'not-a-name'], /SERVICE\/FUNCTION must be "Service\/function"/],
    [['invoke', 'S/f', '--timeout', '0'], /--timeout must be an integer between 1/],
    [['invoke', 'S/f', '--wait-for-worker', '-5'], /--wait-for-worker/],
    [['invoke', 'S/f', '--context', '{not json'], /--context must be a JSON object/],
    [['invoke', 'S/f', '--context', '"text"'], /--context must be a JSON object/],
    [['invoke', 'S/f', '--payload', 'a', '--payload-file', 'f'], /give --payload or --payload-file, not both/],
    [['invoke', 'S/f', '--payload-file', 'no/such/file'], /cannot read --payload-file no\/such\/file/],
    [['invoke', 'S/f', 'extra'], /unexpected argument "extra"/],
    [['invoke', 'S/f', '--url', 'not a url'], /--url/],
    [['publish'], /missing TOPIC/],
    [['publish', 't', 'p', '--payload', 'q'], /not both/],
    [['publish', 't', '--qos', '3'], /--qos must be an integer between 0 and 2/],
    [['publish', 'a/#', 'x'], /must not contain wildcards/],
    [['subscribe', 'a/#/b'], /# must be the whole last level/],
    [['subscribe', 'a', '--count', 'x'], /--count must be an integer/],
    [['run', 'm.js'], /--service is required/],
    [['run', 'm.js', '--service', 'S'], /--function is required/],
    [['run', 'm.js', '--service', 'S', '--function', 'bad name'], /--function must match/],
    [['start', '--port', '70000'], /--port must be an integer between 0 and 65535/],
    [['start', 'extra'], /unexpected argument "extra"/],
    [['start', '--memory', '--data', 'x'], /give --memory or --data, not both/],
  ]
  for (const [argv, message] of cases) {
    const result = await cli(...argv)
    assert.equal(result.code, 2, `${argv.join(' ')}: ${result.stderr}`)
    assert.match(result.stderr, message, argv.join(' '))
    assert.equal(result.stdout, '')
  }
})

test('results: strings and Buffers as they are, other values as JSON; --json keeps Buffers as base64', () => {
  const written = value => {
    const stream = new PassThrough()
    const chunks = []
    stream.on('data', chunk => chunks.push(Buffer.from(chunk)))
    writeValue(stream, value)
    return Buffer.concat(chunks)
  }
  assert.equal(written('text').toString(), 'text')
  assert.deepEqual(written(Buffer.from([1, 2])), Buffer.from([1, 2]))
  assert.equal(written({ a: [1, 'x'] }).toString(), '{"a":[1,"x"]}\n')
  assert.equal(written(null).toString(), 'null\n')
  assert.equal(written(7).toString(), '7\n')
  assert.deepEqual(toJsonResult({ statusCode: 200, payload: Buffer.from('hi') }), { statusCode: 200, payload: 'aGk=', payloadEncoding: 'base64' })
  assert.deepEqual(toJsonResult({ statusCode: 200, payload: 'x', functionError: 'Handled' }), { statusCode: 200, payload: 'x', functionError: 'Handled' })
  assert.deepEqual(toJsonResult({ statusCode: 202, invocationId: 'abc' }), { statusCode: 202, invocationId: 'abc' })
})
