import assert from 'node:assert/strict'
import test from 'node:test'
import { openDatabase } from '../../dist/store/database.js'
import { LevelInvocationStore } from '../../dist/store/level-store.js'
import { defined, tempDir } from '../helpers.js'
import { invocation, invocationStoreSuite, readAll } from './invocation-store.suite.js'

/** A store on its own database in `dir`; both closed after the test (or by close()). */
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

async function makeStore (t, storeOptions) {
  const dir = await tempDir(t)
  let current = await openStore(t, dir, storeOptions)
  return {
    store: current.store,
    reopen: async (reopenOptions = storeOptions) => {
      await current.close()
      current = await openStore(t, dir, reopenOptions)
      return current.store
    },
  }
}

invocationStoreSuite('LevelInvocationStore', makeStore, { persistent: true })

const options = { maxStored: 1_000_000, idempotencyWindowMs: 60_000 }

/** Makes the database's batch() fail while `failing()` says so, and counts the batches it writes. */
/**
 * Calls `around(write, n)` in place of the n-th batch write on `db` (the store writes chained batches of its root
 * database: one wrapper sees every write of the store); `write()` does the real one.
 */
function interceptWrites (t, db, around) {
  const original = db.batch
  let n = 0
  db.batch = function (...args) {
    if (args.length > 0) return around(() => original.apply(this, args), ++n)
    const batch = original.apply(this, args)
    const write = batch.write
    batch.write = function (...writeArgs) {
      return around(() => write.apply(batch, writeArgs), ++n, batch)
    }
    return batch
  }
  t.after(() => { db.batch = original })
}

function instrumentBatches (t, db, failing = () => false) {
  const stats = { batches: 0, failed: 0 }
  interceptWrites(t, db, (write, n, chained) => {
    if (failing()) {
      stats.failed++
      chained?.close()
      return Promise.reject(new Error('IO error: No space left on device'))
    }
    stats.batches++
    return write()
  })
  return stats
}

/** Keys of the store's sublevel in [gt, lt). */
async function keysIn (db, gt, lt) {
  return await db.sublevel('async', { valueEncoding: 'buffer' }).keys({ gt, lt }).all()
}

test('LevelInvocationStore: concurrent appends are group-committed into far fewer batches', async t => {
  const { store, db } = await openStore(t, await tempDir(t))
  const stats = instrumentBatches(t, db)
  const before = store.batches
  await Promise.all(Array.from({ length: 1000 }, (_, n) => store.append(invocation('G/f', n), options)))
  assert.ok(stats.batches < 20, `1000 appends took ${stats.batches} batches`)
  assert.equal(store.batches - before, stats.batches)
  // and one caller alone is not kept waiting for company
  const started = Date.now()
  await store.append(invocation('G/f', 1000), options)
  assert.ok(Date.now() - started < 5000, 'written on its own (a lone caller kept waiting for company would never be)')
  assert.equal(stats.batches, store.batches - before)
})

test('LevelInvocationStore: every batch reaches LevelDB with sync (fsync) by default, and without it when sync is false', async t => {
  for (const [storeOptions, expected] of [[undefined, true], [{ sync: true }, true], [{ sync: false }, false]]) {
    const { store, db } = await openStore(t, await tempDir(t), storeOptions)
    // the options of each chained batch's _write: what classic-level hands LevelDB's Write()
    const synced = []
    const spied = /** @type {any} */ (db) // the batches abstract-level makes, spied on
    const original = spied._chainedBatch
    spied._chainedBatch = function () {
      const batch = original.call(this)
      const write = batch._write
      batch._write = function (writeOptions) {
        synced.push(writeOptions?.sync === true)
        return write.call(this, writeOptions)
      }
      return batch
    }
    t.after(() => { delete spied._chainedBatch })
    await store.append(invocation('S/f', 0), options)
    const [stored] = await readAll(store, 'S/f')
    await store.complete(stored)
    assert.ok(synced.length >= 2, `${synced.length} batches`)
    assert.deepEqual(synced, synced.map(() => expected), `sync with ${JSON.stringify(storeOptions)}`)
  }
})

test('LevelInvocationStore: with sync (fsync per batch) it stores the same way', async t => {
  const dir = await tempDir(t)
  const { store, close } = await openStore(t, dir, { sync: true })
  await Promise.all(Array.from({ length: 50 }, (_, n) => store.append(invocation('S/f', n), options)))
  await close()
  const { store: again } = await openStore(t, dir)
  assert.equal(again.counts().get('S/f')?.pending, 50)
})

test('LevelInvocationStore: a failed write rejects every caller in its batch with FNBUS_STORE_FAILURE, stores and counts nothing, and the store recovers', async t => {
  const dir = await tempDir(t)
  const { store, db, close } = await openStore(t, dir)
  const stored = await store.append(invocation('S/f', 0), options)
  const [first] = await readAll(store, 'S/f')
  let failing = true
  const stats = instrumentBatches(t, db, () => failing)
  const bounded = { ...options, maxStored: 3 }
  const results = await Promise.all([
    ...[1, 2, 3].map(n => store.append(invocation('S/f', n), bounded)),
    store.append(invocation('S/f', 4, { idempotencyKey: 'k' }), bounded),
    store.complete(first),
    store.append(invocation('S/new', 0), options), // a function's first append: its number is not on disk either
  ].map(p => p.then(() => 'ok', err => err)))
  assert.ok(stats.failed >= 1)
  const codes = results.map(r => r.code)
  assert.equal(codes.filter(c => c === 'FNBUS_STORE_FAILURE').length, 4, codes.join()) // three appends under their bound, and complete
  assert.equal(codes.filter(c => c === 'FNBUS_QUEUE_FULL').length, 2, codes.join())
  for (const r of results) assert.ok(r.cause instanceof Error || r.code === 'FNBUS_QUEUE_FULL', 'the I/O error is the cause')
  assert.deepEqual(store.counts().get('S/f'), { pending: 1, dead: 0 })

  failing = false
  // reservations were released: the bound counts what is stored, and the failed key was not taken
  const after = await Promise.all([5, 6].map(n => store.append(invocation('S/f', n), bounded)))
  assert.equal((await store.append(invocation('S/f', 7, { idempotencyKey: 'k' }), { ...options, maxStored: 4 })).duplicate, false)
  assert.deepEqual(store.counts().get('S/f'), { pending: 4, dead: 0 })
  const newcomer = await store.append(invocation('S/new', 1), options)
  await close()

  const { store: reopened } = await openStore(t, dir)
  const all = await readAll(reopened, 'S/f')
  assert.deepEqual(all.map(i => i.payload.toString()), ['payload 0', 'payload 5', 'payload 6', 'payload 7'])
  assert.equal(all[0].id, stored.id)
  assert.ok(all[1].id === after[0].id || all[1].id === after[1].id)
  assert.equal(defined(await reopened.get(newcomer.id)).invocation.payload.toString(), 'payload 1')
  assert.deepEqual((await readAll(reopened, 'S/new')).map(i => i.id), [newcomer.id])
  const seqs = all.map(i => i.seq)
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b))
})

test('LevelInvocationStore: a closed database refuses appends with FNBUS_STORE_FAILURE', async t => {
  const { store, db } = await openStore(t, await tempDir(t))
  await store.append(invocation('S/f', 0), options)
  await db.close()
  await assert.rejects(store.append(invocation('S/f', 1), options), { code: 'FNBUS_STORE_FAILURE' })
  await assert.rejects(store.readPending('S/f', 0, 10), { code: 'FNBUS_STORE_FAILURE' })
  assert.equal(store.counts().get('S/f')?.pending, 1)
})

test('LevelInvocationStore: expired idempotency keys are swept at open and on the interval', async t => {
  const dir = await tempDir(t)
  let clock = 1_000_000
  const now = () => clock
  const { store, db, close } = await openStore(t, dir, { now })
  const windowed = { ...options, idempotencyWindowMs: 1000 }
  for (let n = 0; n < 5; n++) await store.append(invocation('K/f', n, { idempotencyKey: `short ${n}`, createdAt: clock }), windowed)
  await store.append(invocation('K/f', 9, { idempotencyKey: 'long', createdAt: clock }), { ...options, idempotencyWindowMs: 60_000 })
  assert.equal((await keysIn(db, 'k!', 'k"')).length, 6)
  await close()

  clock += 5000
  const reopened = await openStore(t, dir, { now, idempotencySweepIntervalMs: 20 })
  assert.deepEqual(await keysIn(reopened.db, 'k!', 'k"'), [`k!K/f!${encodeURIComponent('long')}`])
  assert.equal(reopened.store.counts().get('K/f')?.pending, 6, 'sweeping keys leaves invocations alone')
  clock += 60_000
  for (let i = 0; i < 100 && (await keysIn(reopened.db, 'k!', 'k"')).length > 0; i++) await new Promise(resolve => setTimeout(resolve, 20))
  assert.deepEqual(await keysIn(reopened.db, 'k!', 'k"'), [])
})

test('LevelInvocationStore: the key layout: each function in its own range (S/fn1 vs S/fn10), ids that say where their record is', async t => {
  const { store, db } = await openStore(t, await tempDir(t))
  const one = await store.append(invocation('S/fn1', 0, { idempotencyKey: 'a!b"c' }), options)
  const ten = await store.append(invocation('S/fn10', 0, { idempotencyKey: 'x' }), options)
  assert.deepEqual(await keysIn(db, 'p!', 'p"'), ['p!S/fn1!0000000000000001', 'p!S/fn10!0000000000000002'])
  assert.equal((await keysIn(db, 'p!S/fn1!', 'p!S/fn1"')).length, 1)
  assert.deepEqual(await keysIn(db, 'k!S/fn1!', 'k!S/fn1"'), [`k!S/fn1!${encodeURIComponent('a!b"c')}`])
  assert.deepEqual(await keysIn(db, 'f!', 'f"'), ['f!S/fn1', 'f!S/fn10'])
  assert.match(one.id, /^0\.1\.[\w-]{16}$/)
  assert.match(ten.id, /^1\.2\.[\w-]{16}$/)
  assert.deepEqual(await keysIn(db, 'i!', 'i"'), [], 'no index entry while a record is where its id says')

  // revived, a record moves: an index entry finds it until it is gone
  const [stored] = await readAll(store, 'S/fn1')
  await store.deadLetter(stored, { code: 'E', message: 'e' }, Date.now(), false)
  assert.deepEqual(await keysIn(db, 'i!', 'i"'), [])
  await store.revive({ id: one.id })
  assert.deepEqual(await keysIn(db, 'i!', 'i"'), [`i!${one.id}`])
  const [revived] = await readAll(store, 'S/fn1')
  await store.deadLetter(revived, { code: 'E', message: 'e' }, Date.now(), false)
  assert.equal(defined(await store.get(one.id)).state, 'dead')
  await store.revive({ fn: 'S/fn1' })
  await store.complete(defined(await store.get(one.id)).invocation)
  assert.deepEqual(await keysIn(db, 'i!', 'i"'), [])
  assert.deepEqual(await keysIn(db, 'p!S/fn1!', 'p!S/fn1"'), [])
})

test('LevelInvocationStore: invocations stored by the first layout (an index entry each, random ids) are found, changed and removed', async t => {
  const dir = await tempDir(t)
  const { store, db, close } = await openStore(t, dir)
  await store.append(invocation('S/new', 0), options)
  const { packr } = await import('../../dist/protocol/index.js')
  // the sublevel as the store opens it: string keys, Buffer values
  const raw = /** @type {import('../../dist/store/keys.js').AsyncSublevel} */ (/** @type {unknown} */ (db.sublevel('async', { valueEncoding: 'buffer' })))
  const legacy = ['V1StGXR8_Z5jdHi6B-myT', 'Uakgb_J5m9g-0JDMbcJqL', 'pM4-u3_fP8xYdc2Bvd9Zm']
  for (const [n, id] of legacy.entries()) {
    const key = `p!S/old!${String(100 + n).padStart(16, '0')}`
    await raw.put(key, packr.pack({ id, fn: 'S/old', seq: 100 + n, at: 1, pk: 1, p: Buffer.from(`old ${n}`), n: 0, nb: 0 }))
    await raw.put(`i!${id}`, Buffer.from(key))
  }
  await close()

  const { store: reopened, db: db2 } = await openStore(t, dir)
  assert.deepEqual(reopened.counts().get('S/old'), { pending: 3, dead: 0 })
  const found = defined(await reopened.get(legacy[0]))
  assert.equal(found.invocation.payload.toString(), 'old 0')
  await reopened.complete(found.invocation)
  assert.equal(defined(await reopened.remove(legacy[1])).id, legacy[1])
  const [last] = await readAll(reopened, 'S/old')
  await reopened.deadLetter(last, { code: 'E', message: 'e' }, Date.now(), true)
  assert.equal(defined(await reopened.get(legacy[2])).state, 'dead')
  assert.equal(await reopened.revive({ id: legacy[2] }), 1)
  assert.equal(defined(await reopened.get(legacy[2])).state, 'pending')
  assert.deepEqual(await keysIn(db2, 'i!', 'i"'), [`i!${legacy[2]}`])
  const fresh = await reopened.append(invocation('S/old', 1), options)
  assert.ok((await readAll(reopened, 'S/old')).every(i => i.seq > 102 || i.id === legacy[2]))
  assert.equal(defined(await reopened.get(fresh.id)).state, 'pending')
})

test('LevelInvocationStore: without its sequence mark (an older store), seq continues after the records on disk', async t => {
  const dir = await tempDir(t)
  const { store, db, close } = await openStore(t, dir)
  await Promise.all(Array.from({ length: 10 }, (_, n) => store.append(invocation('S/f', n), options)))
  const last = (await readAll(store, 'S/f')).at(-1).seq
  await db.sublevel('async', { valueEncoding: 'buffer' }).del('m!seq')
  await close()
  const { store: reopened } = await openStore(t, dir)
  await reopened.append(invocation('S/f', 10), options)
  assert.ok((await readAll(reopened, 'S/f')).at(-1).seq > last)
})

test('LevelInvocationStore: opening twice is refused', async t => {
  const { store } = await openStore(t, await tempDir(t))
  await assert.rejects(store.open(), { code: 'FNBUS_INVALID_ARGUMENT' })
})

test('LevelInvocationStore: a sweep never deletes a key written again while it ran', async t => {
  let clock = 1_000_000
  const { store } = await openStore(t, await tempDir(t), { now: () => clock, idempotencySweepIntervalMs: 1 })
  const windowed = { ...options, idempotencyWindowMs: 1000 }
  const keys = Array.from({ length: 400 }, (_, n) => `key ${n}`)
  for (let round = 0; round < 15; round++) {
    // every key of the last round has expired: sweeps delete them while this round writes them again
    clock += 2000
    const written = await Promise.all(keys.map((key, n) => store.append(invocation('W/f', n, { idempotencyKey: key, createdAt: clock }), windowed)))
    assert.ok(written.every(r => !r.duplicate))
    await new Promise(resolve => setTimeout(resolve, 2))
    const again = await Promise.all(keys.map((key, n) => store.append(invocation('W/f', n, { idempotencyKey: key, createdAt: clock + 1 }), windowed)))
    assert.deepEqual(again.map(r => r.id), written.map(r => r.id), `round ${round}`)
  }
})

test('LevelInvocationStore: a batch that reaches the disk before an earlier one is neither read nor answered before it', async t => {
  const { store, db } = await openStore(t, await tempDir(t))
  // the first write reserves seqs ahead (m!seq); the two batches below then need no mark and may overlap
  const zero = await store.append(invocation('H/f', 0), options)
  // hold the first batch back until the second is written: LevelDB may apply two batches in either order
  let releaseFirst = () => {}
  const firstHeld = new Promise(resolve => { releaseFirst = () => resolve(undefined) })
  let secondWritten
  const secondDone = new Promise(resolve => { secondWritten = resolve })
  interceptWrites(t, db, (write, n) => {
    if (n === 1) return firstHeld.then(write)
    const written = write()
    if (n === 2) written.then(secondWritten)
    return written
  })

  let firstAnswered = false
  const first = store.append(invocation('H/f', 1), options).then(result => { firstAnswered = true; return result })
  await new Promise(setImmediate)
  await new Promise(setImmediate) // the first batch is on its way
  let secondAnswered = false
  const second = store.append(invocation('H/f', 2), options).then(result => { secondAnswered = true; return result })
  await secondDone
  await new Promise(resolve => setTimeout(resolve, 20))
  // the second is on disk, the first not yet: nothing is answered, and a reader sees neither
  assert.equal(secondAnswered, false, 'the later batch waits for the earlier one before its callers hear back')
  assert.equal(firstAnswered, false)
  assert.deepEqual((await store.readPending('H/f', 0, 10)).map(i => i.id), [zero.id], 'a reader never passes a record still on its way')
  releaseFirst()
  const ids = [zero.id, (await first).id, (await second).id]
  assert.deepEqual((await store.readPending('H/f', 0, 10)).map(i => i.id), ids, 'both, in order, once both are written')
})

test('LevelInvocationStore: seqs are reserved ahead on disk, and none is handed out twice after a reopen', async t => {
  const dir = await tempDir(t)
  let current = await openStore(t, dir)
  const first = await current.store.append(invocation('R/f', 1), options)
  // completed, so no record holds its seq: only the reservation keeps it from coming back
  await current.store.complete((await current.store.readPending('R/f', 0, 1))[0])
  await current.close()
  current = await openStore(t, dir)
  const second = await current.store.append(invocation('R/f', 2), options)
  const seqOf = id => parseInt(id.split('.')[1], 36)
  assert.ok(seqOf(second.id) > seqOf(first.id))
})
