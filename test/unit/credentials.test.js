// Stored credentials: scrypt hashes, never the secret; identity names; the client ids each identity owns.
import assert from 'node:assert/strict'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createRequire, syncBuiltinESMExports } from 'node:module'
import { test } from 'node:test'
import {
  clientIdBelongsTo, clientIdStem, generateSecret, hashSecret, identityOfClientId, isValidHash, isValidIdentityName,
  parseIdentitiesFile, parseIdentityTable, readIdentitiesFile, verifySecret, writeIdentitiesFile,
} from '../../dist/security/credentials.js'
import { tempDir } from '../helpers.js'
/** @import { Thrown } from '../helpers.js' */

test('a hash is a scrypt PHC string that verifies its secret and no other', async () => {
  const hash = await hashSecret('correct horse')
  assert.match(hash, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/)
  assert.ok(!hash.includes('correct horse'))
  assert.equal(await verifySecret('correct horse', hash), true)
  assert.equal(await verifySecret('correct hors', hash), false)
  assert.equal(await verifySecret('correct horse ', hash), false)
  assert.equal(await verifySecret('', hash), false)
  // a fresh salt each time: the same secret never hashes the same
  assert.notEqual(await hashSecret('correct horse'), hash)
})

test('a malformed or tampered hash never verifies, and never asks for unbounded memory', async () => {
  const hash = await hashSecret('s3cret')
  for (const bad of ['', 's3cret', hash.replace('ln=15', 'ln=40'), hash.replace('$scrypt$', '$argon2id$'), hash.slice(0, -10), `${hash}$x`]) {
    assert.equal(isValidHash(bad), false, bad)
    assert.equal(await verifySecret('s3cret', bad), false, bad)
  }
  // a flipped bit of the stored key: a mismatch found by the constant-time comparison, not an exception
  const key = hash.slice(hash.lastIndexOf('$') + 1)
  const flipped = Buffer.from(key, 'base64')
  flipped[31] ^= 1
  assert.equal(await verifySecret('s3cret', hash.slice(0, hash.lastIndexOf('$') + 1) + flipped.toString('base64').replace(/=+$/, '')), false)
})

test('generated secrets are 256 random bits, base64url', () => {
  const a = generateSecret()
  assert.match(a, /^[A-Za-z0-9_-]{43}$/)
  assert.notEqual(generateSecret(), a)
})

test("identity names: a name, or a function's name", () => {
  for (const good of ['alice', 'sensor-12', 'EdgeFC/helloworld', 'a_b/c-d']) assert.equal(isValidIdentityName(good), true, good)
  for (const bad of ['', '1abc', 'a/b/c', '/b', 'a/', 'a.b', 'a:b', '$gateway', 'a b', 'x'.repeat(129), 42]) assert.equal(isValidIdentityName(bad), false, String(bad))
})

test('client ids: an identity owns its stem and stem.SUFFIX, and each client id belongs to one identity at most', () => {
  assert.equal(clientIdStem('alice'), 'alice')
  assert.equal(clientIdStem('EdgeFC/helloworld'), 'EdgeFC:helloworld')
  assert.equal(identityOfClientId('alice'), 'alice')
  assert.equal(identityOfClientId('alice.laptop-2'), 'alice')
  assert.equal(identityOfClientId('EdgeFC:helloworld.k3j4'), 'EdgeFC/helloworld')
  assert.equal(identityOfClientId('alice.a.b:c'), 'alice')
  for (const none of ['fnbus-x/y', 'alice.', 'alice.x/y', 'alice.+', 'al ice', '.alice', 'a:b:c', '']) assert.equal(identityOfClientId(none), undefined, none)
  assert.equal(clientIdBelongsTo('alice.1', 'alice'), true)
  assert.equal(clientIdBelongsTo('alice2.1', 'alice'), false, 'a longer name is another identity')
  assert.equal(clientIdBelongsTo('alice', 'EdgeFC/helloworld'), false)
  // the stem of a function identity is not a plain identity followed by a suffix
  assert.equal(clientIdBelongsTo('EdgeFC:helloworld', 'EdgeFC'), false)
  assert.equal(clientIdBelongsTo('EdgeFC.helloworld', 'EdgeFC/helloworld'), false)
})

test('an identities file holds hashes only, is readable by its owner only, and reads back', async t => {
  const dir = await tempDir(t)
  const file = join(dir, 'fnbus.identities.json')
  const secret = generateSecret()
  await writeIdentitiesFile(file, { zed: { hash: await hashSecret('other') }, alice: { hash: await hashSecret(secret), created: '2026-01-01T00:00:00.000Z' } })
  const text = await readFile(file, 'utf8')
  assert.ok(!text.includes(secret), 'no plaintext secret in the file')
  assert.equal((await stat(file)).mode & 0o777, 0o600)
  assert.deepEqual(Object.keys(JSON.parse(text).identities), ['alice', 'zed'])
  const table = await readIdentitiesFile(file)
  assert.equal(table.alice.created, '2026-01-01T00:00:00.000Z')
  assert.equal(await verifySecret(secret, table.alice.hash), true)
  assert.deepEqual(await readIdentitiesFile(join(dir, 'missing.json'), true), {})
  await assert.rejects(readIdentitiesFile(join(dir, 'missing.json')), { code: 'FNBUS_CONFIG_INVALID' })
})

test('identity tables and files refuse plaintext, bad names and unknown keys, naming the problem', async t => {
  const hash = await hashSecret('x')
  const problem = (fn) => {
    try {
      fn()
    } catch (err) {
      assert.equal(/** @type {Thrown} */ (err).code, 'FNBUS_CONFIG_INVALID')
      return /** @type {Thrown} */ (err).message
    }
    assert.fail('expected an error')
  }
  assert.match(problem(() => parseIdentityTable({ alice: { hash: 'hunter2' } }, 'f: ')), /^f: identities\.alice\.hash must be a scrypt hash .*plaintext secrets are not accepted/)
  assert.match(problem(() => parseIdentityTable({ alice: 'hunter2' }, '')), /identities\.alice must be an object/)
  assert.match(problem(() => parseIdentityTable({ 'a.b': { hash } }, '')), /identities: an identity is a name/)
  assert.match(problem(() => parseIdentityTable({ alice: { hash, password: 'x' } }, '')), /identities\.alice: unknown key "password"/)
  assert.match(problem(() => parseIdentityTable([], '')), /identities must be an object/)
  assert.match(problem(() => parseIdentitiesFile('{', '/x.json')), /^\/x\.json: not valid JSON/)
  assert.match(problem(() => parseIdentitiesFile('{"version":2,"identities":{}}', '/x.json')), /^\/x\.json: version 2 is not one this fnbus reads/)
  assert.match(problem(() => parseIdentitiesFile('{"version":1,"users":{}}', '/x.json')), /unknown key "users"/)
  const dir = await tempDir(t)
  await writeFile(join(dir, 'bad.json'), JSON.stringify({ version: 1, identities: { alice: { hash: 'plain' } } }))
  await assert.rejects(readIdentitiesFile(join(dir, 'bad.json')), /bad\.json: identities\.alice\.hash must be a scrypt hash/)
})

test('comparisons go through crypto.timingSafeEqual, and an unknown user name costs the same scrypt work as a wrong password', async t => {
  // spy on node:crypto itself (syncBuiltinESMExports carries the change to the ESM bindings fnbus imported)
  const crypto = createRequire(import.meta.url)('node:crypto')
  const { timingSafeEqual, scrypt } = crypto
  const calls = { compare: /** @type {number[][]} */ ([]), scrypt: 0 }
  crypto.timingSafeEqual = (a, b) => { calls.compare.push([a.length, b.length]); return timingSafeEqual(a, b) }
  crypto.scrypt = (...args) => { calls.scrypt++; return scrypt(...args) }
  syncBuiltinESMExports()
  t.after(() => {
    Object.assign(crypto, { timingSafeEqual, scrypt })
    syncBuiltinESMExports()
  })
  const { Authenticator } = await import('../../dist/security/authenticate.js')
  const authenticator = new Authenticator({ identities: { alice: { hash: await hashSecret('right') } } })
  const attempt = async (username, password) => {
    calls.compare = []
    calls.scrypt = 0
    const verdict = await authenticator.authenticate(username === undefined ? 'x' : `${username}.1`, username, Buffer.from(password))
    return { verdict, ...calls }
  }
  const right = await attempt('alice', 'right')
  assert.equal(right.verdict.kind, 'accepted')
  assert.deepEqual(right.compare, [[32, 32]])
  assert.equal(right.scrypt, 1)
  const wrong = await attempt('alice', 'wrong')
  assert.deepEqual(wrong.verdict, { kind: 'refused', code: 4, reason: 'wrong password for identity alice' })
  assert.deepEqual(wrong.compare, [[32, 32]], 'a wrong password is compared in full, in constant time')
  const unknown = await attempt('mallory', 'wrong')
  assert.ok(unknown.verdict.kind === 'refused')
  assert.equal(unknown.verdict.code, 4)
  assert.equal(unknown.scrypt, 1, 'one scrypt derivation, as for a wrong password')

  // issued secrets (in memory) are compared in constant time too, against every live one of the identity
  const issued = [authenticator.issue('Test/echo'), authenticator.issue('Test/echo')]
  calls.compare = []
  const verdict = await authenticator.authenticate('Test:echo.1', 'Test/echo', Buffer.from(issued[0].password))
  assert.deepEqual(verdict, { kind: 'accepted', identity: 'Test/echo' })
  assert.deepEqual(calls.compare, [[32, 32], [32, 32]])
})

test('at most MAX_CONCURRENT_DERIVATIONS scrypt derivations run at once: a burst of connections leaves the thread pool to the store', async t => {
  const crypto = createRequire(import.meta.url)('node:crypto')
  const { scrypt } = crypto
  let running = 0
  let most = 0
  let total = 0
  crypto.scrypt = (secret, salt, length, options, callback) => {
    running++
    total++
    most = Math.max(most, running)
    scrypt(secret, salt, length, options, (err, key) => { running--; callback(err, key) })
  }
  syncBuiltinESMExports()
  t.after(() => {
    crypto.scrypt = scrypt
    syncBuiltinESMExports()
  })
  const { Authenticator, MAX_CONCURRENT_DERIVATIONS } = await import('../../dist/security/authenticate.js')
  const hash = await hashSecret('right')
  total = 0
  most = 0
  const authenticator = new Authenticator({ identities: { alice: { hash } } })
  const verdicts = await Promise.all([
    ...Array.from({ length: 3 }, (_, i) => authenticator.authenticate(`alice.${i}`, 'alice', Buffer.from('right'))),
    ...Array.from({ length: 3 }, (_, i) => authenticator.authenticate(`alice.w${i}`, 'alice', Buffer.from('wrong'))),
    ...Array.from({ length: 2 }, (_, i) => authenticator.authenticate(`nobody.${i}`, 'nobody', Buffer.from('x'))),
  ])
  assert.deepEqual(verdicts.map(v => v.kind), ['accepted', 'accepted', 'accepted', 'refused', 'refused', 'refused', 'refused', 'refused'])
  assert.equal(total, 8)
  assert.equal(MAX_CONCURRENT_DERIVATIONS, 2)
  assert.equal(most, MAX_CONCURRENT_DERIVATIONS)
})
