// The abstract suite every InvocationStore passes (as abstract-level and aedes-persistence do for their backends).
//
// makeStore(t, storeOptions?) resolves with { store, reopen(storeOptions?) }: a fresh opened store (closed after
// the test), and a function that resolves with a store over the same data. `persistent` says what reopen means:
// true — it closes the store and opens a new one on the same data, and the persistence cases run; false — it
// resolves with the same store (nothing survives a process), and those cases are skipped.
import assert from 'node:assert/strict'
import test from 'node:test'
import v8 from 'node:v8'
import vm from 'node:vm'

const options = { maxStored: 1_000_000, idempotencyWindowMs: 60_000 }

/**
 * A new invocation of `fn` whose payload names `n`.
 * @param {string} fn
 * @param {number} n
 * @param {Partial<import('../../dist/store/types.js').NewInvocation>} [extra]
 * @returns {import('../../dist/store/types.js').NewInvocation}
 */
export function invocation (fn, n, extra = {}) {
  return { fn, payloadKind: 1, payload: Buffer.from(`payload ${n}`), createdAt: Date.now(), ...extra }
}

async function appendMany (store, fn, count, extra = {}) {
  const ids = []
  for (let i = 0; i < count; i++) ids.push((await store.append(invocation(fn, i, extra), options)).id)
  return ids
}

export async function readAll (store, fn, pageSize = 1000) {
  const out = []
  for (let after = 0; ;) {
    const page = await store.readPending(fn, after, pageSize)
    out.push(...page)
    if (page.length < pageSize) return out
    after = page.at(-1).seq
  }
}

function countsOf (store, fn) {
  const counts = store.counts().get(fn)
  return { pending: counts?.pending ?? 0, dead: counts?.dead ?? 0 }
}

async function rejectsWith (promise, code) {
  await assert.rejects(promise, (/** @type {Error & { code?: string }} */ err) => {
    assert.equal(err.code, code, err.message)
    return true
  })
}

let collectGarbage
function heapInUse () {
  if (collectGarbage === undefined) {
    v8.setFlagsFromString('--expose-gc')
    collectGarbage = vm.runInNewContext('gc')
  }
  collectGarbage()
  const { heapUsed, arrayBuffers } = process.memoryUsage()
  return heapUsed + arrayBuffers
}

export function invocationStoreSuite (name, makeStore, { persistent }) {
  const persistentOnly = { skip: persistent ? false : 'nothing persists' }
  const acrossReopening = persistent ? ', across reopening' : ''

  // ---- appending and reading ----------------------------------------------------------------------------------

  test(`${name}: appended invocations are read back in order, paged by seq`, async t => {
    const { store } = await makeStore(t)
    const ids = await appendMany(store, 'S/f', 25)
    const all = await readAll(store, 'S/f', 10)
    assert.deepEqual(all.map(i => i.id), ids)
    assert.deepEqual(all.map(i => i.payload.toString()), ids.map((_, n) => `payload ${n}`))
    for (let i = 1; i < all.length; i++) assert.ok(all[i].seq > all[i - 1].seq)
    assert.deepEqual((await store.readPending('S/f', all[9].seq, 5)).map(i => i.id), ids.slice(10, 15))
    assert.deepEqual(await store.readPending('S/f', all.at(-1).seq, 10), [])
    assert.deepEqual(await store.readPending('S/f', 0, 0), [])
    assert.deepEqual(await store.readPending('S/none', 0, 10), [])
    assert.equal(all[0].attempts, 0)
    assert.equal(all[0].notBefore, 0)
    assert.equal(all[0].fn, 'S/f')
  })

  test(`${name}: payload bytes, kind and context round-trip exactly${acrossReopening}`, async t => {
    const { store, reopen } = await makeStore(t)
    const big = Buffer.alloc(1024 * 1024)
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff
    const cases = [
      { payloadKind: 0, payload: Buffer.from([0, 255, 1, 254, 0xc1]) },
      { payloadKind: 0, payload: Buffer.alloc(0) },
      { payloadKind: 1, payload: Buffer.from('héllo ✓ \u{1F600}') },
      { payloadKind: 2, payload: Buffer.from([0x92, 0x01, 0xa1, 0x61]), context: { user: 'u', nested: { n: [1, 2] }, bytes: Buffer.from([1, 2]) } },
      { payloadKind: 0, payload: big, idempotencyKey: 'big one' },
    ]
    for (const c of cases) await store.append({ fn: 'S/bytes', createdAt: 1000, ...c }, options)
    big.fill(0) // the store keeps its own copy
    const all = await readAll(await reopen(), 'S/bytes')
    assert.equal(all.length, cases.length)
    all.forEach((stored, i) => {
      assert.equal(stored.payloadKind, cases[i].payloadKind)
      assert.ok(Buffer.isBuffer(stored.payload))
      assert.equal(stored.payload.length, cases[i].payload.length, `payload ${i} length`)
      assert.deepEqual(stored.context, cases[i].context)
      assert.equal(stored.createdAt, 1000)
      assert.equal(stored.idempotencyKey, cases[i].idempotencyKey)
    })
    for (let i = 0; i < 4; i++) assert.ok(all[i].payload.equals(cases[i].payload), `payload ${i}`)
    for (let i = 0; i < big.length; i += 4099) assert.equal(all[4].payload[i], (i * 31) & 0xff)
  })

  // ---- isolation: names and ids that prefix each other --------------------------------------------------------

  test(`${name}: functions whose names prefix each other (S/fn1, S/fn10, S/fn) never see each other's records`, async t => {
    const { store, reopen } = await makeStore(t)
    const one = await appendMany(store, 'S/fn1', 3)
    const ten = await appendMany(store, 'S/fn10', 3)
    const bare = await appendMany(store, 'S/fn', 2)
    const service = await appendMany(store, 'S1/fn', 2)
    assert.deepEqual((await readAll(store, 'S/fn1')).map(i => i.id), one)
    assert.deepEqual((await readAll(store, 'S/fn10')).map(i => i.id), ten)
    assert.deepEqual((await readAll(store, 'S/fn')).map(i => i.id), bare)
    assert.deepEqual((await readAll(store, 'S1/fn')).map(i => i.id), service)

    for (const i of await readAll(store, 'S/fn1')) await store.deadLetter(i, { code: 'X', message: 'x' }, Date.now(), true)
    assert.deepEqual(await store.listDead('S/fn10', 10), [])
    assert.deepEqual(await store.listDead('S/fn', 10), [])
    assert.equal((await store.listDead('S/fn1', 10)).length, 3)
    assert.equal(await store.revive({ fn: 'S/fn10' }), 0)
    assert.equal(await store.purgeDead('S/fn'), 0)
    assert.equal(await store.revive({ fn: 'S/fn1' }), 3)
    assert.deepEqual((await readAll(store, 'S/fn10')).map(i => i.id), ten)

    const reopened = await reopen()
    assert.deepEqual(countsOf(reopened, 'S/fn1'), { pending: 3, dead: 0 })
    assert.deepEqual(countsOf(reopened, 'S/fn10'), { pending: 3, dead: 0 })
    assert.deepEqual(countsOf(reopened, 'S/fn'), { pending: 2, dead: 0 })
    assert.deepEqual(countsOf(reopened, 'S1/fn'), { pending: 2, dead: 0 })
  })

  test(`${name}: an id's prefix or extension finds nothing`, async t => {
    const { store } = await makeStore(t)
    const [id] = await appendMany(store, 'S/ids', 1)
    const [deadId] = await appendMany(store, 'S/ids', 1)
    const [dead] = (await readAll(store, 'S/ids')).filter(i => i.id === deadId)
    await store.deadLetter(dead, { code: 'E', message: 'e' }, Date.now(), false)
    for (const other of [id.slice(0, -1), id.slice(0, 1), `${id}x`, `${id}!`, deadId.slice(0, -1), `${deadId}0`]) {
      assert.equal(await store.get(other), undefined, other)
      assert.equal(await store.remove(other), undefined, other)
      assert.equal(await store.revive({ id: other }), 0, other)
    }
    assert.equal((await store.get(id)).state, 'pending')
    assert.equal((await store.get(deadId)).state, 'dead')
    assert.deepEqual(countsOf(store, 'S/ids'), { pending: 1, dead: 1 })
  })

  // ---- the sequence ---------------------------------------------------------------------------------------------

  test(`${name}: seq strictly increases, after deletes${acrossReopening}; a revival takes a new one`, async t => {
    const { store, reopen } = await makeStore(t)
    await appendMany(store, 'S/seq', 3)
    const before = await readAll(store, 'S/seq')
    for (const i of before) await store.complete(i)
    const again = await reopen()
    await appendMany(again, 'S/seq', 2)
    const [after, last] = await readAll(again, 'S/seq')
    assert.ok(after.seq > before.at(-1).seq, 'a seq is never reused')
    await again.deadLetter(after, { code: 'E', message: 'e' }, Date.now(), false)
    await again.revive({ id: after.id })
    const revived = (await again.get(after.id)).invocation
    assert.ok(revived.seq > last.seq, 'revived at the end of the queue')
    const third = await reopen()
    await appendMany(third, 'S/other', 1)
    const [other] = await readAll(third, 'S/other')
    assert.ok(other.seq > revived.seq, 'seq is shared by all functions and survives reopening')
  })

  // ---- the life of an invocation ----------------------------------------------------------------------------------

  test(`${name}: complete, reschedule, deadLetter, remove and get${acrossReopening}`, async t => {
    const { store, reopen } = await makeStore(t)
    const [a, b, c, d, e] = await appendMany(store, 'S/life', 5)
    const all = await readAll(store, 'S/life')
    await store.complete(all[0])
    assert.equal(await store.get(a), undefined)

    const retried = await store.reschedule(all[1], { code: 'FNBUS_TIMEOUT', message: 'slow' }, 12345)
    assert.equal(retried.attempts, 1)
    assert.equal(retried.seq, all[1].seq, 'a retry keeps its place')
    const twice = await store.reschedule(retried, { code: 'FNBUS_WORKER_LOST', message: 'gone' }, 23456)
    assert.equal(twice.attempts, 2)

    const dead = await store.deadLetter(all[2], { code: 'FNBUS_FUNCTION_ERROR', message: 'bad' }, 999, true)
    assert.equal(dead.attempts, 1)
    assert.equal(dead.diedAt, 999)
    assert.equal((await store.deadLetter(all[4], { code: 'FNBUS_TIMEOUT', message: 'old' }, 1000, false)).attempts, 0)

    const removed = await store.remove(d)
    assert.equal(removed.id, d)
    assert.equal(removed.payload.toString(), 'payload 3')
    assert.equal(await store.remove(d), undefined)
    assert.equal(await store.remove(c), undefined, 'a dead invocation is not removed as pending')
    assert.equal(await store.remove('nope'), undefined)

    const reopened = await reopen()
    const found = await reopened.get(b)
    assert.equal(found.state, 'pending')
    assert.equal(found.invocation.attempts, 2)
    assert.equal(found.invocation.notBefore, 23456)
    assert.deepEqual(found.invocation.lastError, { code: 'FNBUS_WORKER_LOST', message: 'gone' })
    const gotDead = await reopened.get(c)
    assert.equal(gotDead.state, 'dead')
    assert.equal(gotDead.invocation.diedAt, 999)
    assert.deepEqual(gotDead.invocation.lastError, { code: 'FNBUS_FUNCTION_ERROR', message: 'bad' })
    assert.equal(gotDead.invocation.payload.toString(), 'payload 2')
    assert.equal((await reopened.get(e)).state, 'dead')
    assert.deepEqual((await readAll(reopened, 'S/life')).map(i => i.id), [b])
    assert.deepEqual(countsOf(reopened, 'S/life'), { pending: 1, dead: 2 })
  })

  test(`${name}: dead letters: listed oldest first, revived (by id, by function, all) to the end of the queue, purged`, async t => {
    let clock = 50_000
    const { store } = await makeStore(t, { now: () => clock })
    const ids = await appendMany(store, 'S/dead', 3)
    const [otherId] = await appendMany(store, 'S/other', 1)
    const [keep] = await appendMany(store, 'S/dead', 1)
    // die out of order: listDead still goes by seq
    const pending = await readAll(store, 'S/dead')
    for (const i of [pending[2], pending[0], pending[1]]) await store.deadLetter(i, { code: 'E', message: i.id }, Date.now(), false)
    const [other] = await readAll(store, 'S/other')
    await store.deadLetter(other, { code: 'E', message: 'other' }, Date.now(), false)
    assert.deepEqual((await store.listDead(undefined, 10)).map(d => d.id), [...ids, otherId])
    assert.deepEqual((await store.listDead(undefined, 2)).map(d => d.id), ids.slice(0, 2))
    assert.deepEqual((await store.listDead('S/dead', 2)).map(d => d.id), ids.slice(0, 2))
    assert.deepEqual(await store.listDead('S/dead', 0), [])

    clock = 60_000
    assert.equal(await store.revive({ id: ids[1] }), 1)
    assert.equal(await store.revive({ id: ids[1] }), 0, 'no longer dead')
    assert.equal(await store.revive({ id: keep }), 0, 'a pending one is not revived')
    const revived = await readAll(store, 'S/dead')
    assert.deepEqual(revived.map(i => i.id), [keep, ids[1]])
    assert.equal(revived[1].attempts, 0)
    assert.equal(revived[1].notBefore, 0)
    assert.equal(revived[1].createdAt, 60_000, 'its age counts from the revival')
    assert.equal(revived[1].diedAt, undefined)

    assert.equal(await store.revive({ fn: 'S/dead' }), 2)
    assert.deepEqual((await readAll(store, 'S/dead')).map(i => i.id), [keep, ids[1], ids[0], ids[2]])
    assert.deepEqual(countsOf(store, 'S/dead'), { pending: 4, dead: 0 })
    assert.deepEqual(countsOf(store, 'S/other'), { pending: 0, dead: 1 })

    for (const i of await readAll(store, 'S/dead')) await store.deadLetter(i, { code: 'E', message: 'again' }, Date.now(), true)
    assert.equal(await store.revive({ fn: undefined }), 5, 'every function')
    assert.deepEqual(await store.listDead(undefined, 10), [])
    for (const fn of ['S/dead', 'S/other']) {
      for (const i of await readAll(store, fn)) await store.deadLetter(i, { code: 'E', message: 'last' }, Date.now(), true)
    }
    assert.equal(await store.purgeDead('S/other'), 1)
    assert.deepEqual(countsOf(store, 'S/other'), { pending: 0, dead: 0 })
    assert.equal(await store.purgeDead(undefined), 4)
    assert.deepEqual(await store.listDead(undefined, 10), [])
    assert.deepEqual(countsOf(store, 'S/dead'), { pending: 0, dead: 0 })
    assert.equal(await store.get(ids[0]), undefined, 'purged for good')
  })

  test(`${name}: counts per function${acrossReopening}`, async t => {
    const { store, reopen } = await makeStore(t)
    await appendMany(store, 'C/a', 5)
    await appendMany(store, 'C/b', 2)
    await appendMany(store, 'C/gone', 1)
    const [first] = await readAll(store, 'C/a')
    await store.deadLetter(first, { code: 'E', message: 'e' }, Date.now(), true)
    await store.complete((await readAll(store, 'C/gone'))[0])
    const expected = { 'C/a': { pending: 4, dead: 1 }, 'C/b': { pending: 2, dead: 0 } }
    const pick = s => Object.fromEntries([...s.counts()]
      .filter(([fn, c]) => fn.startsWith('C/') && (c.pending > 0 || c.dead > 0))
      .map(([fn, c]) => [fn, { pending: c.pending, dead: c.dead }]))
    assert.deepEqual(pick(store), expected)
    assert.deepEqual(pick(await reopen()), expected)
  })

  // ---- bounds and keys ----------------------------------------------------------------------------------------

  test(`${name}: maxStored is a hard bound, also for concurrent appends: FNBUS_QUEUE_FULL past it`, async t => {
    const { store } = await makeStore(t)
    const bounded = { ...options, maxStored: 7 }
    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, n) =>
      store.append(invocation('Q/full', n), bounded).then(() => 'ok', err => err.code)))
    assert.equal(outcomes.filter(o => o === 'ok').length, 7)
    assert.equal(outcomes.filter(o => o === 'FNBUS_QUEUE_FULL').length, 13)
    assert.equal((await readAll(store, 'Q/full')).length, 7)
    await rejectsWith(store.append(invocation('Q/full', 8), bounded), 'FNBUS_QUEUE_FULL')
    await store.append(invocation('Q/other', 0), bounded) // per function

    const [one, two] = await readAll(store, 'Q/full')
    await store.complete(one)
    await store.deadLetter(two, { code: 'E', message: 'e' }, Date.now(), false)
    // one completed, one dead: dead letters do not count against the bound
    const again = await Promise.all(Array.from({ length: 5 }, (_, n) =>
      store.append(invocation('Q/full', 100 + n), bounded).then(() => 'ok', err => err.code)))
    assert.deepEqual(again.sort(), ['FNBUS_QUEUE_FULL', 'FNBUS_QUEUE_FULL', 'FNBUS_QUEUE_FULL', 'ok', 'ok'])
    assert.deepEqual(countsOf(store, 'Q/full'), { pending: 7, dead: 1 })
  })

  test(`${name}: an idempotency key stores once per function within its window, even concurrently${acrossReopening}`, async t => {
    const { store, reopen } = await makeStore(t)
    const key = 'k/1 with:odd!chars"%2F and ✓'
    const results = await Promise.all(Array.from({ length: 10 }, () => store.append(invocation('I/fn', 0, { idempotencyKey: key }), options)))
    assert.equal(new Set(results.map(r => r.id)).size, 1)
    assert.equal(results.filter(r => !r.duplicate).length, 1)
    assert.equal((await readAll(store, 'I/fn')).length, 1)
    const first = results.find(r => !r.duplicate).id

    const otherFn = await store.append(invocation('I/fn1', 0, { idempotencyKey: key }), options)
    assert.equal(otherFn.duplicate, false, 'another function, even one whose name extends this one, has its own keys')
    const otherKey = await store.append(invocation('I/fn', 0, { idempotencyKey: `${key}x` }), options)
    assert.equal(otherKey.duplicate, false)
    const [empty1, empty2] = [await store.append(invocation('I/fn', 0, { idempotencyKey: '' }), options), await store.append(invocation('I/fn', 0, { idempotencyKey: '' }), options)]
    assert.deepEqual(empty2, { id: empty1.id, duplicate: true })

    // completed: the key still answers until its window ends
    const stored = (await readAll(store, 'I/fn')).find(i => i.id === first)
    assert.equal(stored.idempotencyKey, key)
    await store.complete(stored)
    const reopened = await reopen()
    assert.deepEqual(await reopened.append(invocation('I/fn', 0, { idempotencyKey: key }), options), { id: first, duplicate: true })

    const later = await reopened.append(invocation('I/fn', 0, { idempotencyKey: key, createdAt: Date.now() + 120_000 }), options)
    assert.equal(later.duplicate, false, 'after the window the key is new again')
    assert.notEqual(later.id, first)
    assert.deepEqual(await reopened.append(invocation('I/fn', 0, { idempotencyKey: key, createdAt: Date.now() + 130_000 }), options), { id: later.id, duplicate: true })
  })

  test(`${name}: a repeated idempotency key answers with the first id even when the queue is full`, async t => {
    const { store } = await makeStore(t)
    const bounded = { ...options, maxStored: 1 }
    const first = await store.append(invocation('I/full', 0, { idempotencyKey: 'once' }), bounded)
    assert.deepEqual(await store.append(invocation('I/full', 0, { idempotencyKey: 'once' }), bounded), { id: first.id, duplicate: true })
    await rejectsWith(store.append(invocation('I/full', 1, { idempotencyKey: 'twice' }), bounded), 'FNBUS_QUEUE_FULL')
    // the refused key was not remembered
    const [stored] = await readAll(store, 'I/full')
    await store.complete(stored)
    assert.equal((await store.append(invocation('I/full', 1, { idempotencyKey: 'twice' }), bounded)).duplicate, false)
  })

  test(`${name}: malformed arguments are FNBUS_INVALID_ARGUMENT, and nothing is stored`, async t => {
    const { store } = await makeStore(t)
    for (const fn of ['S/fn1!0', 'S/fn1"', 'S', '', 'S/fn/x', '1S/fn', 'S/ fn', undefined]) {
      // @ts-expect-error no name at all is among the malformed ones
      await rejectsWith(store.append(invocation(fn, 0), options), 'FNBUS_INVALID_ARGUMENT')
      await rejectsWith(store.readPending(fn, 0, 10), 'FNBUS_INVALID_ARGUMENT')
    }
    await rejectsWith(store.listDead('S/x!', 10), 'FNBUS_INVALID_ARGUMENT')
    await rejectsWith(store.purgeDead('S/x"'), 'FNBUS_INVALID_ARGUMENT')
    await rejectsWith(store.revive({ fn: 'nope' }), 'FNBUS_INVALID_ARGUMENT')
    await rejectsWith(store.append(invocation('S/ok', 0, { idempotencyKey: 'lone \uD800 surrogate' }), options), 'FNBUS_INVALID_ARGUMENT')
    // @ts-expect-error a payload kind the protocol does not have
    await rejectsWith(store.append(invocation('S/ok', 0, { payloadKind: 7 }), options), 'FNBUS_INVALID_ARGUMENT')
    // @ts-expect-error a payload that is not bytes
    await rejectsWith(store.append(invocation('S/ok', 0, { payload: 'text' }), options), 'FNBUS_INVALID_ARGUMENT')
    await rejectsWith(store.readPending('S/ok', -1, 10), 'FNBUS_INVALID_ARGUMENT')
    assert.deepEqual(await readAll(store, 'S/ok'), [])
    assert.deepEqual(countsOf(store, 'S/ok'), { pending: 0, dead: 0 })
  })

  // ---- concurrency ----------------------------------------------------------------------------------------------

  test(`${name}: a removal racing complete, reschedule or deadLetter of the same invocation keeps the counts right`, async t => {
    const { store } = await makeStore(t)
    const error = { code: 'E', message: 'e' }
    const changes = {
      complete: i => store.complete(i),
      reschedule: i => store.reschedule(i, error, 0),
      deadLetter: i => store.deadLetter(i, error, Date.now(), true),
    }
    // a race is won or lost by timing: run it often enough to lose it
    for (let round = 0; round < 25; round++) {
      for (const [change, apply] of Object.entries(changes)) {
        const fn = `R/${change}${round}`
        await appendMany(store, fn, 3)
        const [first, second] = await readAll(store, fn)
        // change second, remove it
        const [, notRemoved] = await Promise.all([apply(second), store.remove(second.id)])
        // remove first, change it
        const [removed] = await Promise.all([store.remove(first.id), apply(first)])
        assert.equal(removed?.id, first.id, change)
        const left = await readAll(store, fn)
        const dead = await store.listDead(fn, 10)
        if (change === 'complete') {
          assert.equal(notRemoved, undefined)
          assert.equal(left.length, 1)
        } else if (change === 'reschedule') {
          assert.equal(notRemoved?.id, second.id)
          assert.equal(left.length, 1, 'a removed invocation is not brought back by a retry')
        } else {
          assert.equal(notRemoved, undefined)
          assert.deepEqual(dead.map(d => d.id), [second.id])
        }
        assert.deepEqual(countsOf(store, fn), { pending: left.length, dead: dead.length }, change)
        assert.equal(await store.get(first.id), undefined, change)
      }
    }
  })

  test(`${name}: many concurrent appends all resolve and are all stored`, async t => {
    const { store, reopen } = await makeStore(t)
    const results = await Promise.all(Array.from({ length: 2000 }, (_, n) => store.append(invocation(`G/fn${n % 4}`, n), options)))
    const again = await reopen()
    const stored = []
    for (let f = 0; f < 4; f++) stored.push(...await readAll(again, `G/fn${f}`))
    assert.equal(stored.length, 2000)
    assert.deepEqual(new Set(stored.map(i => i.id)), new Set(results.map(r => r.id)))
    assert.equal(new Set(stored.map(i => i.seq)).size, 2000, 'no seq handed out twice')
  })

  test(`${name}: close waits for the changes under way; calls after it are refused`, async t => {
    const { store } = await makeStore(t)
    const appends = Array.from({ length: 50 }, (_, n) => store.append(invocation('Z/fn', n), options))
    await store.close()
    assert.equal((await Promise.all(appends)).length, 50)
    await rejectsWith(store.append(invocation('Z/fn', 99), options), 'FNBUS_STORE_FAILURE')
    await store.close() // twice is fine
  })

  test(`${name}: a backlog of 20,000 is read page by page, in bounded memory`, async t => {
    const { store } = await makeStore(t)
    const payload = Buffer.alloc(2048, 7)
    for (let n = 0; n < 20_000; n += 1000) {
      await Promise.all(Array.from({ length: 1000 }, () => store.append({ ...invocation('B/fn', n), payload }, options)))
    }
    const before = heapInUse()
    let most = 0
    let count = 0
    let last = 0
    for (let after = 0, pages = 0; ; pages++) {
      const page = await store.readPending('B/fn', after, 256)
      assert.ok(page.length <= 256)
      for (const i of page) {
        assert.ok(i.seq > last)
        last = i.seq
      }
      count += page.length
      if (pages % 10 === 0) most = Math.max(most, heapInUse() - before)
      if (page.length < 256) break
      after = page.at(-1).seq
    }
    assert.equal(count, 20_000)
    // the backlog holds 40 MiB of payloads; a page, 512 KiB
    assert.ok(most < 12 * 1024 * 1024, `reading the backlog took ${(most / 1048576).toFixed(1)} MiB more`)
  })

  test(`${name}: reopening keeps everything, and a store over the same data opens as often as needed`, persistentOnly, async t => {
    const { store, reopen } = await makeStore(t)
    const ids = await appendMany(store, 'P/fn', 3)
    let current = store
    for (let i = 0; i < 3; i++) current = await reopen()
    assert.deepEqual((await readAll(current, 'P/fn')).map(i => i.id), ids)
    assert.deepEqual(countsOf(current, 'P/fn'), { pending: 3, dead: 0 })
  })
}
