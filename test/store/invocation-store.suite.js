// The abstract suite every InvocationStore passes (as abstract-level and aedes-persistence do for their backends).
// makeStore(t) resolves with { store, reopen }: a fresh opened store, and a function that closes it and opens a
// new store over the same data (persistent backends) or resolves with the same store (in-memory ones).
import assert from 'node:assert/strict'
import test from 'node:test'

const options = { maxStored: 1_000_000, idempotencyWindowMs: 60_000 }

function invocation (fn, n, extra = {}) {
  return { fn, payloadKind: 1, payload: Buffer.from(`payload ${n}`), createdAt: Date.now(), ...extra }
}

async function appendMany (store, fn, count, extra = {}) {
  const ids = []
  for (let i = 0; i < count; i++) ids.push((await store.append(invocation(fn, i, extra), options)).id)
  return ids
}

async function readAll (store, fn, pageSize = 1000) {
  const out = []
  for (let after = 0; ;) {
    const page = await store.readPending(fn, after, pageSize)
    out.push(...page)
    if (page.length < pageSize) return out
    after = page.at(-1).seq
  }
}

export function invocationStoreSuite (name, makeStore, { persistent }) {
  test(`${name}: appended invocations are read back in order, paged by seq`, async t => {
    const { store } = await makeStore(t)
    const ids = await appendMany(store, 'S/f', 25)
    const all = await readAll(store, 'S/f', 10)
    assert.deepEqual(all.map(i => i.id), ids)
    assert.deepEqual(all.map(i => i.payload.toString()), ids.map((_, n) => `payload ${n}`))
    for (let i = 1; i < all.length; i++) assert.ok(all[i].seq > all[i - 1].seq)
    const page = await store.readPending('S/f', all[9].seq, 5)
    assert.deepEqual(page.map(i => i.id), ids.slice(10, 15))
    assert.equal(all[0].attempts, 0)
    assert.equal(all[0].notBefore, 0)
  })

  test(`${name}: payload bytes, kind and context round-trip exactly`, async t => {
    const { store, reopen } = await makeStore(t)
    const big = Buffer.alloc(1024 * 1024)
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff
    const cases = [
      { payloadKind: 0, payload: Buffer.from([0, 255, 1, 254]) },
      { payloadKind: 0, payload: Buffer.alloc(0) },
      { payloadKind: 1, payload: Buffer.from('héllo ✓') },
      { payloadKind: 2, payload: Buffer.from([0x92, 0x01, 0xa1, 0x61]), context: { user: 'u', nested: { n: [1, 2] } } },
      { payloadKind: 0, payload: big },
    ]
    for (const c of cases) await store.append({ fn: 'S/bytes', createdAt: 1000, ...c }, options)
    const reopened = await reopen()
    const all = await readAll(reopened, 'S/bytes')
    assert.equal(all.length, cases.length)
    all.forEach((stored, i) => {
      assert.equal(stored.payloadKind, cases[i].payloadKind)
      assert.ok(stored.payload.equals(cases[i].payload), `payload ${i}`)
      assert.deepEqual(stored.context, cases[i].context)
      assert.equal(stored.createdAt, 1000)
    })
  })

  test(`${name}: functions whose names prefix each other (S/fn1, S/fn10) never see each other's records`, async t => {
    const { store } = await makeStore(t)
    const one = await appendMany(store, 'S/fn1', 3)
    const ten = await appendMany(store, 'S/fn10', 3)
    const other = await appendMany(store, 'S/fn', 2)
    assert.deepEqual((await readAll(store, 'S/fn1')).map(i => i.id), one)
    assert.deepEqual((await readAll(store, 'S/fn10')).map(i => i.id), ten)
    assert.deepEqual((await readAll(store, 'S/fn')).map(i => i.id), other)
    const dead = await readAll(store, 'S/fn1')
    await store.deadLetter(dead[0], { code: 'X', message: 'x' }, Date.now(), true)
    assert.deepEqual((await store.listDead('S/fn10', 10)), [])
    assert.equal((await store.listDead('S/fn1', 10)).length, 1)
    assert.equal(await store.purgeDead('S/fn10'), 0)
    assert.equal(store.counts().get('S/fn1').dead, 1)
  })

  test(`${name}: seq strictly increases, across deletes${persistent ? ' and reopening' : ''}`, async t => {
    const { store, reopen } = await makeStore(t)
    await appendMany(store, 'S/seq', 3)
    const before = await readAll(store, 'S/seq')
    for (const i of before) await store.complete(i)
    const again = await reopen()
    await appendMany(again, 'S/seq', 1)
    const [after] = await readAll(again, 'S/seq')
    assert.ok(after.seq > before.at(-1).seq, 'a seq is never reused')
  })

  test(`${name}: complete, reschedule, deadLetter, remove and get`, async t => {
    const { store } = await makeStore(t)
    const [a, b, c, d] = await appendMany(store, 'S/life', 4)
    let all = await readAll(store, 'S/life')
    await store.complete(all[0])
    assert.equal(await store.get(a), undefined)

    const retried = await store.reschedule(all[1], { code: 'FNBUS_TIMEOUT', message: 'slow' }, 12345)
    assert.equal(retried.attempts, 1)
    const found = await store.get(b)
    assert.equal(found.state, 'pending')
    assert.equal(found.invocation.attempts, 1)
    assert.equal(found.invocation.notBefore, 12345)
    assert.deepEqual(found.invocation.lastError, { code: 'FNBUS_TIMEOUT', message: 'slow' })

    const dead = await store.deadLetter(all[2], { code: 'FNBUS_FUNCTION_ERROR', message: 'bad' }, 999, true)
    assert.equal(dead.attempts, 1)
    assert.equal(dead.diedAt, 999)
    const gotDead = await store.get(c)
    assert.equal(gotDead.state, 'dead')
    assert.deepEqual(gotDead.invocation.lastError, { code: 'FNBUS_FUNCTION_ERROR', message: 'bad' })

    const removed = await store.remove(d)
    assert.equal(removed.id, d)
    assert.equal(await store.remove(d), undefined)
    assert.equal(await store.remove(c), undefined, 'a dead invocation is not removed as pending')
    assert.equal(await store.remove('nope'), undefined)

    all = await readAll(store, 'S/life')
    assert.deepEqual(all.map(i => i.id), [b])
    assert.deepEqual(store.counts().get('S/life'), { pending: 1, dead: 1 })
  })

  test(`${name}: dead letters: listed oldest first, revived to the end of the queue, purged`, async t => {
    const { store } = await makeStore(t)
    const ids = await appendMany(store, 'S/dead', 3)
    await appendMany(store, 'S/other', 1)
    for (const i of await readAll(store, 'S/dead')) await store.deadLetter(i, { code: 'E', message: i.id }, Date.now(), false)
    const [o] = await readAll(store, 'S/other')
    await store.deadLetter(o, { code: 'E', message: 'other' }, Date.now(), false)
    assert.deepEqual((await store.listDead(undefined, 10)).map(d => d.id), [...ids, o.id])
    assert.deepEqual((await store.listDead('S/dead', 2)).map(d => d.id), ids.slice(0, 2))

    assert.equal(await store.revive({ id: ids[1] }), 1)
    assert.equal(await store.revive({ id: ids[1] }), 0, 'no longer dead')
    const revived = await readAll(store, 'S/dead')
    assert.deepEqual(revived.map(i => i.id), [ids[1]])
    assert.equal(revived[0].attempts, 0)
    assert.equal(revived[0].notBefore, 0)

    assert.equal(await store.revive({ fn: 'S/dead' }), 2)
    assert.deepEqual((await readAll(store, 'S/dead')).map(i => i.id), [ids[1], ids[0], ids[2]])
    assert.deepEqual(store.counts().get('S/dead'), { pending: 3, dead: 0 })

    assert.equal(await store.purgeDead(undefined), 1)
    assert.deepEqual(await store.listDead(undefined, 10), [])
    assert.equal(store.counts().get('S/other')?.dead ?? 0, 0)
  })

  test(`${name}: counts per function${persistent ? ', rebuilt on reopening' : ''}`, async t => {
    const { store, reopen } = await makeStore(t)
    await appendMany(store, 'C/a', 5)
    await appendMany(store, 'C/b', 2)
    const [first] = await readAll(store, 'C/a')
    await store.deadLetter(first, { code: 'E', message: 'e' }, Date.now(), true)
    const expected = { 'C/a': { pending: 4, dead: 1 }, 'C/b': { pending: 2, dead: 0 } }
    const pick = s => Object.fromEntries([...s.counts()].filter(([fn]) => fn.startsWith('C/')).map(([fn, c]) => [fn, { pending: c.pending, dead: c.dead }]))
    assert.deepEqual(pick(store), expected)
    assert.deepEqual(pick(await reopen()), expected)
  })

  test(`${name}: maxStored is a hard bound, also for concurrent appends: FNBUS_QUEUE_FULL past it`, async t => {
    const { store } = await makeStore(t)
    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, n) =>
      store.append(invocation('Q/full', n), { ...options, maxStored: 7 }).then(() => 'ok', err => err.code)))
    assert.equal(outcomes.filter(o => o === 'ok').length, 7)
    assert.equal(outcomes.filter(o => o === 'FNBUS_QUEUE_FULL').length, 13)
    const [one] = await readAll(store, 'Q/full')
    await store.complete(one)
    await store.append(invocation('Q/full', 99), { ...options, maxStored: 7 })
  })

  test(`${name}: an idempotency key stores once per function within its window, even concurrently`, async t => {
    const { store } = await makeStore(t)
    const results = await Promise.all(Array.from({ length: 10 }, () => store.append(invocation('I/fn', 0, { idempotencyKey: 'k/1 with:odd!chars' }), options)))
    const ids = new Set(results.map(r => r.id))
    assert.equal(ids.size, 1)
    assert.equal(results.filter(r => !r.duplicate).length, 1)
    assert.equal((await readAll(store, 'I/fn')).length, 1)
    const otherFn = await store.append(invocation('I/other', 0, { idempotencyKey: 'k/1 with:odd!chars' }), options)
    assert.equal(otherFn.duplicate, false)
    const later = await store.append(invocation('I/fn', 0, { idempotencyKey: 'k/1 with:odd!chars', createdAt: Date.now() + 120_000 }), options)
    assert.equal(later.duplicate, false, 'after the window the key is new again')
    assert.notEqual(later.id, results[0].id)
  })

  test(`${name}: many concurrent appends all resolve and are all stored`, async t => {
    const { store, reopen } = await makeStore(t)
    const results = await Promise.all(Array.from({ length: 2000 }, (_, n) => store.append(invocation('G/fn', n), options)))
    const again = await reopen()
    const stored = await readAll(again, 'G/fn')
    assert.equal(stored.length, 2000)
    assert.deepEqual(new Set(stored.map(i => i.id)), new Set(results.map(r => r.id)))
  })

  test(`${name}: a backlog of 20,000 is read page by page`, async t => {
    const { store } = await makeStore(t)
    await Promise.all(Array.from({ length: 20_000 }, (_, n) => store.append(invocation('B/fn', n), options)))
    let count = 0
    let last = 0
    for (let after = 0; ;) {
      const page = await store.readPending('B/fn', after, 256)
      assert.ok(page.length <= 256)
      for (const i of page) {
        assert.ok(i.seq > last)
        last = i.seq
      }
      count += page.length
      if (page.length < 256) break
      after = page.at(-1).seq
    }
    assert.equal(count, 20_000)
  })
}

export function persistentStoreSuite (name, makeStore) {
  test(`${name}: idempotency keys are remembered across reopening`, async t => {
    const { store, reopen } = await makeStore(t)
    const first = await store.append(invocation('R/fn', 0, { idempotencyKey: 'stable' }), options)
    const again = await (await reopen()).append(invocation('R/fn', 0, { idempotencyKey: 'stable' }), options)
    assert.deepEqual(again, { id: first.id, duplicate: true })
  })
}
