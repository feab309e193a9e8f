import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FCClient } from '../../dist/index.js'
import { withoutPassword } from '../../dist/client/connect-options.js'

test('a password in the url is hidden wherever the url is shown', () => {
  assert.equal(withoutPassword('mqtt://alice:s3cret@127.0.0.1:1883'), 'mqtt://alice:***@127.0.0.1:1883')
  assert.equal(withoutPassword('mqtt://alice@127.0.0.1:1883'), 'mqtt://alice@127.0.0.1:1883')
  assert.equal(withoutPassword('mqtt+unix:///run/fnbus.sock'), 'mqtt+unix:///run/fnbus.sock')
  assert.equal(withoutPassword('not a url'), 'not a url')
})

test('FCClient.url and its errors do not carry the url\'s password, on either transport', async t => {
  for (const options of [{}, { mqtt: {} }]) {
    // nothing listens on port 1: the connection is refused, the call waits out its short deadline
    const client = new FCClient({ url: 'mqtt://alice:s3cret@127.0.0.1:1', timeout: 50, ...options })
    t.after(() => client.close())
    const warnings = []
    client.on('warning', err => warnings.push(String(err?.message)))
    assert.equal(client.url, 'mqtt://alice:***@127.0.0.1:1')
    const err = await client.invoke('S/f', null).then(() => assert.fail('the call succeeded'), e => e)
    assert.equal(err.code, 'FNBUS_TIMEOUT')
    assert.doesNotMatch(err.message, /s3cret/)
    assert.match(err.message, /alice:\*\*\*@/)
    for (const message of warnings) assert.doesNotMatch(message, /s3cret/)
  }
})
