// `fnbus publish` and `fnbus subscribe`, with each other, with the SDK and with the gateway.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { connectClient, startGateway, waitFor } from '../helpers.js'
import { runCli, spawnCli } from './cli.js'

test('subscribe prints one line per event; publish sends from an argument or stdin', async t => {
  const gw = await startGateway(t)
  const env = { FNBUS_URL: gw.url }
  const subscriber = spawnCli(t, ['subscribe', 'sensors/+/temperature', '--count', '2'], { env })
  await subscriber.waitFor('fnbus: subscribed to sensors/+/temperature')

  const first = await runCli(t, ['publish', 'sensors/a/temperature', '21.5'], { env })
  assert.equal(first.code, 0, first.stderr)
  const second = await runCli(t, ['publish', 'sensors/b/temperature', '--payload', '-'], { env, input: '19' })
  assert.equal(second.code, 0, second.stderr)

  assert.deepEqual(await subscriber.exited, { code: 0, signal: null })
  assert.equal(subscriber.stdout, '21.5\n19\n')
})

test('subscribe --json gives {"topic", "payload"} lines; the SDK and the gateway see CLI events and vice versa', async t => {
  const gw = await startGateway(t)
  const env = { FNBUS_URL: gw.url }
  const client = await connectClient(t, gw)
  const seenBySdk = []
  await client.subscribe('/hello/#', (topic, payload) => seenBySdk.push([topic, payload.toString()]))

  const subscriber = spawnCli(t, ['subscribe', '/hello/#', '--json', '--count', '3'], { env })
  await subscriber.waitFor('fnbus: subscribed')
  await runCli(t, ['publish', '/hello/world', 'Hello World!'], { env })
  await client.publish('/hello/sdk', { n: 1 })
  await gw.publish('/hello/bytes', Buffer.from([0xff, 0xfe]))

  await subscriber.exited
  // three publishers: no order between them
  const lines = subscriber.stdout.trim().split('\n').map(line => JSON.parse(line)).sort((a, b) => a.topic.localeCompare(b.topic))
  assert.deepEqual(lines, [
    { topic: '/hello/bytes', payload: '//4=', payloadEncoding: 'base64' },
    { topic: '/hello/sdk', payload: '{"n":1}' },
    { topic: '/hello/world', payload: 'Hello World!' },
  ])
  await waitFor(() => seenBySdk.length === 3, 5000, 'the SDK subscriber')
  assert.deepEqual(seenBySdk[0], ['/hello/world', 'Hello World!'])
})

test('publish --retain keeps the event for a later subscriber; --qos is passed', async t => {
  const gw = await startGateway(t)
  const env = { FNBUS_URL: gw.url }
  const published = await runCli(t, ['publish', 'state/door', 'open', '--retain', '--qos', '1'], { env })
  assert.equal(published.code, 0, published.stderr)
  const later = await runCli(t, ['subscribe', 'state/#', '--count', '1', '--qos', '1'], { env })
  assert.equal(later.stdout, 'open\n')
})

test('SIGINT ends subscribe with exit 0; bad topics and filters are usage errors', async t => {
  const gw = await startGateway(t)
  const env = { FNBUS_URL: gw.url }
  const subscriber = spawnCli(t, ['subscribe', '#'], { env })
  await subscriber.waitFor('fnbus: subscribed')
  subscriber.child.kill('SIGINT')
  assert.deepEqual(await subscriber.exited, { code: 0, signal: null })

  const wildcard = await runCli(t, ['publish', 'a/+/b', 'x'], { env })
  assert.equal(wildcard.code, 2)
  assert.match(wildcard.stderr, /^fnbus publish: topic "a\/\+\/b" must not contain wildcards/)
  const reserved = await runCli(t, ['subscribe', '$fn/#'], { env })
  assert.equal(reserved.code, 2)
  assert.match(reserved.stderr, /reserved \$fn\/ namespace/)
})
