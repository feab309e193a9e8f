// Identity names cannot be enumerated by timing: the secret is checked before the client id, and every refusal of
// a login — an unknown user name, a wrong or missing secret, a client id another identity holds — takes one scrypt
// derivation at the cost the stored hashes use. Measured on raw sockets (CONNECT sent, CONNACK read), the default
// cost, several rounds with the cases interleaved.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { hashSecret } from '../../dist/security/credentials.js'
import { startGateway } from '../helpers.js'
import { connectFrame, rawSocket } from '../mqtt-frames.js'

const ROUNDS = 5

/** ms from writing `frame` on a fresh socket to its CONNACK, and the CONNACK's return code. */
async function refusal (t, gw, frame) {
  const raw = await rawSocket(t, gw.port)
  const started = performance.now()
  raw.socket.write(frame)
  while (raw.received().length < 4) {
    if (raw.socket.destroyed && raw.received().length < 4) throw new Error('closed without a CONNACK')
    await new Promise(resolve => setImmediate(resolve))
  }
  const ms = performance.now() - started
  raw.socket.destroy()
  return { ms, code: raw.received()[3] }
}

const median = values => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

test('every refusal of a login takes the time of one secret check: unknown user, wrong or missing secret, foreign client id', async t => {
  // the default cost, as `fnbus identity add` writes hashes
  const identities = { alice: { hash: await hashSecret('alice-secret') }, bob: { hash: await hashSecret('bob-secret') } }
  const gw = await startGateway(t, { identities })
  // an id another identity holds right now
  const holder = await rawSocket(t, gw.port)
  holder.socket.write(connectFrame({ clientId: 'held-by-bob', username: 'bob', password: 'bob-secret' }))
  while (holder.received().length < 4) await new Promise(resolve => setTimeout(resolve, 5))

  const cases = {
    'unknown user': { frame: connectFrame({ clientId: 'mallory.1', username: 'mallory', password: 'guess' }), code: 4 },
    'wrong password': { frame: connectFrame({ clientId: 'alice.1', username: 'alice', password: 'guess' }), code: 4 },
    'missing password': { frame: connectFrame({ clientId: 'alice.2', username: 'alice' }), code: 4 },
    "another identity's client id": { frame: connectFrame({ clientId: 'bob.laptop', username: 'alice', password: 'alice-secret' }), code: 2 },
    'a client id another identity holds': { frame: connectFrame({ clientId: 'held-by-bob', username: 'alice', password: 'alice-secret' }), code: 2 },
  }
  const times = Object.fromEntries(Object.keys(cases).map(name => [name, /** @type {number[]} */ ([])]))
  const names = Object.keys(cases)
  for (let round = 0; round < ROUNDS; round++) {
    // a different order each round: a slow moment of the machine does not fall on one case only
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + round) % names.length]
      const { ms, code } = await refusal(t, gw, cases[name].frame)
      assert.equal(code, cases[name].code, name)
      times[name].push(ms)
    }
  }
  const medians = Object.fromEntries(Object.entries(times).map(([name, list]) => [name, median(list)]))
  t.diagnostic(`median refusal times (ms): ${JSON.stringify(Object.fromEntries(Object.entries(medians).map(([k, v]) => [k, Math.round(v)])))}`)
  const slowest = Math.max(...Object.values(medians))
  const fastest = Math.min(...Object.values(medians))
  // one derivation is tens of ms or more here; answering without one takes a few
  assert.ok(fastest >= 20, `every refusal costs a secret check: ${JSON.stringify(medians)}`)
  assert.ok(slowest / fastest < 2.5, `the medians are within a factor 2.5 of each other: ${JSON.stringify(medians)}`)
  assert.equal(holder.received()[3], 0, 'bob held his client id all along')
})
