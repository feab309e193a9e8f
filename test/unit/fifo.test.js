import assert from 'node:assert/strict'
import test from 'node:test'
import { Fifo } from '../../dist/util/fifo.js'

test('Fifo: first in, first out, across the compaction of its dead prefix', () => {
  const q = new Fifo()
  assert.equal(q.shift(), undefined)
  for (let i = 0; i < 5000; i++) q.push(i)
  for (let i = 0; i < 3000; i++) assert.equal(q.shift(), i)
  assert.equal(q.length, 2000)
  assert.equal(q.peek(), 3000)
  assert.deepEqual([...q].slice(0, 3), [3000, 3001, 3002])
  q.retain(n => n % 2 === 0)
  assert.equal(q.length, 1000)
  assert.equal(q.shift(), 3000)
  assert.equal(q.shift(), 3002)
})

test('Fifo.at: counted from the oldest, across the compaction; undefined outside', () => {
  const q = new Fifo()
  for (let i = 0; i < 3000; i++) q.push(i)
  for (let i = 0; i < 2100; i++) q.shift()
  assert.equal(q.at(0), 2100)
  assert.equal(q.at(899), 2999)
  assert.equal(q.at(900), undefined)
  assert.equal(q.at(-1), undefined)
})
