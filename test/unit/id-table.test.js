import { test } from 'node:test'
import assert from 'node:assert/strict'
import { IdTable } from '../../dist/util/id-table.js'
import { seededRandom } from '../../scripts/seeded-random.js'

test('ids are new every time, and a removed id finds nothing', () => {
  const table = new IdTable(4)
  const a = table.add('a')
  const b = table.add('b')
  assert.notEqual(a, b)
  assert.equal(table.get(a), 'a')
  assert.equal(table.delete(a), true)
  assert.equal(table.get(a), undefined)
  assert.equal(table.delete(a), false, 'twice')
  const c = table.add('c')
  assert.ok(c > b, 'ids only grow: a late answer to a removed id never reaches a newer entry')
  assert.equal(table.get(b), 'b')
  assert.equal(table.size, 2)
})

test('an id whose slot holds a long-lived entry is skipped, not shared', () => {
  const table = new IdTable(4)
  const held = table.add('held') // 1, slot 1
  for (let i = 0; i < 20; i++) {
    const id = table.add(i)
    assert.notEqual(id & 3, held & 3)
    assert.equal(table.get(id), i)
    table.delete(id)
  }
  assert.equal(table.get(held), 'held')
})

test('against a Map, through growth, churn and stale ids (seeded random)', () => {
  const random = seededRandom(7)
  const table = new IdTable(2)
  const model = new Map()
  const removed = []
  for (let step = 0; step < 50_000; step++) {
    const r = random()
    if (r < 0.55 || model.size === 0) {
      const value = { step }
      const id = table.add(value)
      assert.ok(!model.has(id) && !removed.includes(id))
      model.set(id, value)
    } else if (r < 0.95) {
      const ids = [...model.keys()]
      const id = ids[Math.floor(random() * ids.length)]
      assert.equal(table.delete(id), true)
      model.delete(id)
      if (removed.length < 1000) removed.push(id)
    } else {
      const id = removed[Math.floor(random() * removed.length)]
      if (id !== undefined) assert.equal(table.get(id), undefined)
    }
    assert.equal(table.size, model.size)
  }
  for (const [id, value] of model) assert.equal(table.get(id), value)
  // in the order they were added, as the Map (whose keys were added in id order) gives them
  assert.deepEqual(table.values(), [...model.values()])
})

test('capacity must be a power of two', () => {
  assert.throws(() => new IdTable(3), RangeError)
})

test('ids stay within the protocol range 1..2^32-1: after the last one comes 1, skipping ids still held', () => {
  const table = new IdTable(8, 2 ** 32 - 3)
  const held = table.add('held at the top')
  assert.equal(held, 2 ** 32 - 3)
  assert.equal(table.add('x'), 2 ** 32 - 2)
  assert.equal(table.add('y'), 2 ** 32 - 1)
  const wrapped = table.add('z')
  assert.equal(wrapped, 1, 'never 2^32, which a request id cannot be')
  assert.equal(table.get(held), 'held at the top')
  assert.equal(table.get(wrapped), 'z')
  for (let i = 0; i < 100; i++) {
    const id = table.add(i)
    assert.ok(id >= 1 && id <= 2 ** 32 - 1)
    assert.equal(table.get(id), i)
    table.delete(id)
  }
})
