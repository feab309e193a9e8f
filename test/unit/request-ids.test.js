import assert from 'node:assert/strict'
import test from 'node:test'
import { RequestIds } from '../../dist/dispatcher/request-ids.js'

test('request ids: 21 characters, a prefix per run, a decimal counter that carries past a million', () => {
  const ids = new RequestIds()
  const first = ids.next()
  assert.equal(first.length, 21)
  assert.match(first, /^.{11}0000000000$/)
  const prefix = first.slice(0, 11)
  assert.notEqual(new RequestIds().next().slice(0, 11), prefix, 'another run, another prefix')
  let last = first
  for (let i = 1; i <= 1_000_001; i++) last = ids.next()
  assert.equal(last, prefix + '0001000001')
})
