// Random ids of the SDK without node:crypto: the right length and alphabet, every character used, no repeats.
import assert from 'node:assert/strict'
import test from 'node:test'
import { randomBytes, randomIdOf } from '../../dist/util/random-id.js'

test('ids have the asked length, only the alphabet\'s characters, all of them about evenly, and do not repeat', () => {
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz'
  const next = randomIdOf(alphabet, 16)
  const ids = new Set()
  const counts = new Map()
  for (let i = 0; i < 5000; i++) {
    const id = next()
    assert.match(id, /^[0-9a-z]{16}$/)
    ids.add(id)
    for (const char of id) counts.set(char, (counts.get(char) ?? 0) + 1)
  }
  assert.equal(ids.size, 5000)
  // 80,000 characters over 36: ~2,222 each; a biased draw (a byte modulo 36) would favour the first 4 by ~14%
  for (const char of alphabet) assert.ok(Math.abs((counts.get(char) ?? 0) - 80_000 / 36) < 250, `${char}: ${counts.get(char)}`)
})

test('randomBytes fills what it is asked for', () => {
  const bytes = randomBytes(4096)
  assert.equal(bytes.length, 4096)
  assert.ok(new Set(bytes).size > 200, 'bytes that vary')
})
