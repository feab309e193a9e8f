import assert from 'node:assert/strict'
import test from 'node:test'
import { FnbusError } from '../../dist/errors.js'
import { openDatabase } from '../../dist/store/database.js'
import { LevelInvocationStore } from '../../dist/store/level-store.js'
import { tempDir } from '../helpers.js'
import { invocationStoreSuite, persistentStoreSuite } from './invocation-store.suite.js'

async function openStore (t, dir, storeOptions) {
  const db = await openDatabase(dir)
  const store = new LevelInvocationStore(db, storeOptions)
  await store.open()
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await store.close()
    await db.close()
  }
  t.after(close)
  return { store, db, close }
}

async function makeStore (t) {
  const dir = await tempDir(t)
  let current = await openStore(t, dir)
  return {
    store: current.store,
    reopen: async () => {
      await current.close()
      current = await openStore(t, dir)
      return current.store
    },
  }
}

invocationStoreSuite('LevelInvocationStore', makeStore, { persistent: true })
persistentStoreSuite('LevelInvocationStore', makeStore)

const options = { maxStored: 1_000_000, idempotencyWindowMs: 60_000 }
const invocation = n => ({ fn: 'S/f', payloadKind: 1, payload: Buffer.from(`p${n}`), createdAt: Date.now() })

test('LevelInvocationStore: concurrent appends are group-committed into far fewer batches', async t => {
  const { store } = await openStore(t, await tempDir(t))
  const before = store.batches
  await Promise.all(Array.from({ length: 1000 }, (_, n) => store.append(invocation(n), options)))
  const used = store.batches - before
  assert.ok(used < 100, `1000 appends took ${used} batches`)
})

test('LevelInvocationStore: fsync mode stores the same way', async t => {
  const dir = await tempDir(t)
  const { store, close } = await openStore(t, dir, { sync: true })
  await Promise.all(Array.from({ length: 50 }, (_, n) => store.append(invocation(n), options)))
  await close()
  const { store: again } = await openStore(t, dir)
  assert.equal(again.counts().get('S/f').pending, 50)
})

test('LevelInvocationStore: a failed write rejects FNBUS_STORE_FAILURE, stores and counts nothing, and the store recovers', async t => {
  const { store, db } = await openStore(t, await tempDir(t))
  await store.append(invocation(0), options)
  // the sublevel's batch fails as a disk that is full would
  const sublevel = db.sublevel('async', { valueEncoding: 'buffer' })
  const proto = Object.getPrototypeOf(sublevel)
  const original = proto.batch
  let failing = true
  proto.batch = function (...args) {
    return failing ? Promise.reject(new Error('IO error: No space left on device')) : original.apply(this, args)
  }
  t.after(() => { proto.batch = original })
  const results = await Promise.all([1, 2, 3].map(n => store.append(invocation(n), { ...options, maxStored: 2 }).then(() => 'ok', e => e)))
  for (const result of results) {
    assert.ok(result instanceof FnbusError)
    assert.ok(['FNBUS_STORE_FAILURE', 'FNBUS_QUEUE_FULL'].includes(result.code))
  }
  assert.ok(results.some(r => r.code === 'FNBUS_STORE_FAILURE'))
  assert.equal(store.counts().get('S/f').pending, 1)
  failing = false
  await store.append(invocation(4), { ...options, maxStored: 2 })
  assert.equal(store.counts().get('S/f').pending, 2, 'failed appends released their place under maxStored')
})
