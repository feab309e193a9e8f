// Greengrass v1 functions moved over by their require line alone: examples/greengrass-*.cjs run under `fnbus start`
// as Greengrass would run them: a long-lived publisher, and one function invoking another by its Lambda ARN.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'node:test'
import { FCClient } from '../../dist/index.js'
import { tempDir, waitFor } from '../helpers.js'
import { ROOT, runCli, startCli } from './cli.js'

const SAMPLES = ['greengrass-helloworld.cjs', 'greengrass-invokee.cjs', 'greengrass-invoker.cjs']

test('the Greengrass samples differ from Greengrass code in their require line only', async () => {
  for (const sample of SAMPLES) {
    const text = await readFile(join(ROOT, 'examples', sample), 'utf8')
    const fnbusLines = text.split('\n').filter(line => /fnbus/.test(line) && !line.trimStart().startsWith('*'))
    const requires = fnbusLines.filter(line => line.includes("require('fnbus')"))
    assert.ok(fnbusLines.length === requires.length, `${sample}: fnbus appears outside its require line`)
    for (const line of requires) assert.match(line, /= require\('fnbus'\) \/\/ was: require\('aws-greengrass-core-sdk'\)$/)
  }
})

test('Greengrass HelloWorld publishes through IotData; an invoker reaches its invokee by Lambda ARN, with client context and JSON', async t => {
  const dir = await tempDir(t)
  const module = name => join(ROOT, 'examples', name)
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
    functions: [
      { service: 'Greengrass', function: 'helloworld', module: module('greengrass-helloworld.cjs') },
      { service: 'Greengrass', function: 'invokee', module: module('greengrass-invokee.cjs'), lambdaName: 'invokee' },
      { service: 'Greengrass', function: 'invoker', module: module('greengrass-invoker.cjs') },
    ],
  }))
  const gateway = await startCli(t, ['--memory'], { cwd: dir })
  const fc = new FCClient({ url: gateway.url })
  t.after(() => fc.close())
  const greetings = []
  await fc.subscribe('hello/world', (_topic, payload) => greetings.push(JSON.parse(payload.toString())))
  await waitFor(() => greetings.length > 0, 15_000, 'a greeting on hello/world (every 5 s)')
  assert.match(greetings[0].message, /^Hello world! Sent from a Greengrass function on platform \S+$/)

  await fc.invoke('Greengrass/invokee', 'warm', { waitForWorker: 10_000 })
  const invoked = await runCli(t, ['invoke', 'Greengrass/invoker', '--wait-for-worker', '10000'], { env: gateway.env })
  assert.equal(invoked.code, 0, invoked.stderr)
  await gateway.waitFor('[Greengrass/invokee#1] invoked with {"message":"payload message"} client context {"custom":{"customData":"customData"}}')
  await gateway.waitFor('[Greengrass/invoker#1] invokee answered {"StatusCode":200,"Payload":"{\\"result\\":\\"message\\",\\"received\\":{\\"message\\":\\"payload message\\"}}"}')
})
