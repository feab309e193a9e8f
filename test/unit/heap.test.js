import assert from 'node:assert/strict'
import test from 'node:test'
import { MinHeap } from '../../dist/util/heap.js'

test('MinHeap: pops in order of its comparison, whatever the order of pushes', () => {
  const heap = new MinHeap((a, b) => a.at < b.at)
  assert.equal(heap.pop(), undefined)
  const ats = [5, 3, 9, 1, 1, 7, 0, 12, 4]
  for (const at of ats) heap.push({ at })
  assert.equal(heap.size, ats.length)
  assert.equal(heap.peek().at, 0)
  const popped = []
  for (let item = heap.pop(); item !== undefined; item = heap.pop()) popped.push(item.at)
  assert.deepEqual(popped, [...ats].sort((a, b) => a - b))
  assert.equal(heap.size, 0)
})
