// The status envelope (fnbus status, fc.status()) under a policy is an operator's request like `queue`: refused to
// an identity without a manage grant, and showing the others the functions they manage. Real gateway, FCClients.
import assert from 'node:assert/strict'
import test from 'node:test'
import { FCClient } from '../../dist/index.js'
import { hashSecret } from '../../dist/security/credentials.js'
import { rejection, startGateway, sdkOptions } from '../helpers.js'

const SECRETS = { operator: 'operator-secret', viewer: 'viewer-secret' }
const IDENTITIES = Object.fromEntries(await Promise.all(Object.entries(SECRETS).map(async ([name, secret]) => [name, { hash: await hashSecret(secret) }])))
const POLICY = [
  { identity: 'operator', allow: { manage: ['Shop/*'], invoke: ['*'] } },
  { identity: 'viewer', allow: { invoke: ['*'] } },
]

test('the status envelope under a policy: refused without a manage grant, else the functions the identity manages', async t => {
  const gw = await startGateway(t, { identities: IDENTITIES, policy: POLICY })
  await gw.serve('Shop/order', async () => 'ok')
  await gw.serve('Other/job', async () => 'ok')
  const connect = name => {
    const client = new FCClient(sdkOptions({ url: gw.url, username: name, password: SECRETS[name] }))
    t.after(() => client.close())
    return client
  }
  const viewer = connect('viewer')
  assert.equal((await rejection(viewer.status())).code, 'FNBUS_NOT_AUTHORIZED')
  assert.equal(await viewer.invoke('Other/job'), 'ok', 'the refusal leaves the connection working')
  const status = await connect('operator').status()
  assert.deepEqual(status.functions.map(f => f.name), ['Shop/order'])
  assert.equal(status.health.ready, true)
})
