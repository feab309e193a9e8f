// The invocation store's writer on its own, on a real LevelDB in a temporary directory. Where a test needs a batch
// to reach the disk late (LevelDB may apply two batches in either order), it holds that batch's real write back.
import assert from 'node:assert/strict'
import test from 'node:test'
import { openDatabase } from '../../dist/store/database.js'
import { GroupCommit } from '../../dist/store/group-commit.js'
import { tempDir } from '../helpers.js'

const MARK = 'm!seq'
const RESERVATION = 65_536

/** A writer into the `async` sublevel of a fresh database; `sub` reads what it wrote. */
async function open (t, options = {}) {
  const db = await openDatabase(await tempDir(t))
  const sub = db.sublevel('async', { valueEncoding: 'buffer' })
  await sub.open()
  const commits = new GroupCommit(db, sub.prefix, { sync: false, markKey: MARK, ...options })
  const writes = holdWrites(t, db)
  t.after(async () => {
    writes.releaseAll() // a test that failed may have left one held
    await commits.close()
    await db.close()
  })
  return { db, sub, commits, writes }
}

/**
 * Counts the batches the writer starts on `db` (they are chained batches of the root database), and lets a test
 * hold the n-th one's write back: `hold(n)` returns a function that lets it go.
 */
function holdWrites (t, db) {
  const original = db.batch
  const held = new Map()
  const waiters = []
  const state = { started: 0, written: 0, keys: /** @type {string[][]} */ ([]) }
  db.batch = function (...args) {
    const batch = original.apply(this, args)
    const n = ++state.started
    const keys = []
    state.keys.push(keys)
    const put = batch.put
    batch.put = function (key, value) {
      keys.push(key)
      return put.call(this, key, value)
    }
    const write = batch.write
    batch.write = async function (...writeArgs) {
      const gate = held.get(n)
      if (gate !== undefined) await gate.promise
      await write.apply(batch, writeArgs)
      state.written++
      for (const waiter of waiters.filter(w => state.written >= w.n)) waiter.resolve()
    }
    return batch
  }
  state.hold = n => {
    let release
    const promise = new Promise(resolve => { release = resolve })
    held.set(n, { promise, release })
    return release
  }
  /** Resolves once `n` batches are written. */
  state.whenWritten = n => new Promise(/** @param {(value?: unknown) => void} resolve */ resolve => {
    if (state.written >= n) resolve()
    else waiters.push({ n, resolve })
  })
  state.releaseAll = () => { for (const gate of held.values()) gate.release() }
  return state
}

/** @returns {import('../../dist/store/group-commit.js').Operation} */
const put = (key, text = key) => ({ type: 'put', key, value: Buffer.from(text) })
const turn = () => new Promise(setImmediate)
/** Whether `promise` has settled by now: how it settled, or 'waiting'. */
function probe (promise) {
  const state = { now: 'waiting' }
  promise.then(() => { state.now = 'resolved' }, err => { state.now = err })
  return state
}

test('GroupCommit: the changes of one turn of the event loop go to disk as one batch, under the sublevel\'s prefix', async t => {
  const { sub, commits, writes } = await open(t)
  const committed = []
  await Promise.all(Array.from({ length: 10 }, (_, n) => commits.commit([put(`k${n}`)], () => committed.push(n))))
  assert.equal(writes.started, 1)
  assert.equal(commits.batches, 1)
  assert.deepEqual(committed, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'every caller\'s committed(), in the order they came')
  assert.deepEqual(writes.keys[0], Array.from({ length: 10 }, (_, n) => `${sub.prefix}k${n}`), 'the root\'s chained batch, the prefix added')
  assert.equal(String(await sub.get('k3')), 'k3')
  // a delete goes the same way
  await commits.commit([{ type: 'del', key: 'k3' }])
  assert.equal(await sub.get('k3'), undefined)
})

test('GroupCommit: a group of 32 changes starts its batch at once; 31 wait for the end of the turn', async t => {
  const { commits, writes } = await open(t)
  const first = Array.from({ length: 31 }, (_, n) => commits.commit([put(`a${n}`)]))
  assert.equal(writes.started, 0, '31 changes wait for the turn to end')
  first.push(commits.commit([put('a31')]))
  assert.equal(writes.started, 1, 'the 32nd starts the batch before the turn ends')
  const rest = Array.from({ length: 5 }, (_, n) => commits.commit([put(`b${n}`)]))
  assert.equal(writes.started, 1, 'the next changes form a new group')
  await Promise.all([...first, ...rest])
  assert.equal(writes.started, 2)
  assert.equal(writes.keys[0].length, 32)
  assert.equal(writes.keys[1].length, 5)
})

test('GroupCommit: callers hear back in the order their batches started, even when the later batch reaches the disk first', async t => {
  const { sub, commits, writes } = await open(t)
  // the first batch moves the seq mark; after it, two batches may be on their way at once
  commits.handOut(1)
  await commits.commit([put('seq 1')])
  assert.equal(commits.visibleThrough, 1)

  const releaseFirst = writes.hold(2)
  commits.handOut(2)
  const committed = []
  const resolved = []
  const first = commits.commit([put('seq 2')], () => committed.push('first'))
  first.then(() => resolved.push('first'))
  for (let i = 0; i < 10 && writes.started < 2; i++) await turn()
  assert.equal(writes.started, 2, 'the first batch is on its way')
  commits.handOut(3)
  const second = commits.commit([put('seq 3')], () => committed.push('second'))
  second.then(() => resolved.push('second'))
  const barrier = probe(commits.barrier())
  await writes.whenWritten(2)
  assert.equal(writes.started, 3, 'the second started while the first was still on its way')
  assert.equal(writes.written, 2, 'the second batch is on disk')
  assert.equal(String(await sub.get('seq 3')), 'seq 3')
  await turn()
  assert.deepEqual([committed, resolved], [[], []], 'nobody hears back before the first batch is written')
  assert.equal(commits.visibleThrough, 1, 'readers look no further than what every earlier batch has written')
  assert.equal(barrier.now, 'waiting', 'a barrier waits for everything queued before it')

  releaseFirst()
  await Promise.all([first, second])
  assert.deepEqual(committed, ['first', 'second'], 'committed() in the order the batches started')
  assert.deepEqual(resolved, ['first', 'second'], 'and the callers hear back in that order')
  assert.equal(commits.visibleThrough, 3)
  await turn()
  assert.equal(barrier.now, 'resolved')
})

test('GroupCommit: a failed batch fails only its own callers, and a later batch\'s callers still hear back after it', async t => {
  const { db, commits, writes } = await open(t)
  commits.handOut(1)
  await commits.commit([put('warm')])
  // the first batch fails on its way (the database itself stays healthy: only this write is refused)
  const spied = /** @type {any} */ (db) // LevelDB's batch, made to fail once
  const original = spied.batch
  let calls = 0
  spied.batch = function (...args) {
    const batch = original.apply(this, args)
    if (++calls === 1) {
      batch.write = async () => {
        await turn()
        await turn()
        throw new Error('IO error: No space left on device')
      }
    }
    return batch
  }
  const seen = []
  const first = commits.commit([put('lost')], () => seen.push('lost committed'), () => seen.push('lost failed'))
  const failure = first.catch(err => { seen.push('lost rejected'); return err })
  for (let i = 0; i < 10 && calls < 1; i++) await turn()
  const second = commits.commit([put('kept')], () => seen.push('kept committed'), () => seen.push('kept failed'))
  second.then(() => seen.push('kept resolved'))
  const err = await failure
  await second
  assert.equal(err.code, 'FNBUS_STORE_FAILURE')
  assert.match(err.message, /No space left on device/)
  assert.deepEqual(seen, ['lost failed', 'lost rejected', 'kept committed', 'kept resolved'])
  assert.equal(writes.written, 2, 'the warm-up and the second batch')
})

test('GroupCommit: a committed() that throws keeps neither its own caller nor the others waiting', async t => {
  const { commits } = await open(t)
  const results = await Promise.allSettled([
    commits.commit([put('a')], () => { throw new Error('a counter broke') }),
    commits.commit([put('b')]),
  ])
  assert.deepEqual(results.map(r => r.status), ['fulfilled', 'fulfilled'])
})

test('GroupCommit: the seq mark reserves 65,536 seqs ahead; batches within it write none; one mark on its way at a time', async t => {
  const { db, sub, commits, writes } = await open(t)
  const mark = async () => Number(String(await sub.get(MARK)))

  // two batches past the reservation: the second waits for the first's mark rather than write one of its own
  const releaseFirst = writes.hold(1)
  commits.handOut(1)
  const first = commits.commit([put('one')])
  for (let i = 0; i < 10 && writes.started < 1; i++) await turn()
  commits.handOut(2)
  const second = commits.commit([put('two')])
  for (let i = 0; i < 5; i++) await turn()
  assert.equal(writes.started, 1, 'a batch that must move the mark waits for the mark on its way')
  releaseFirst()
  await Promise.all([first, second])
  assert.deepEqual(writes.keys.map(keys => keys.includes(sub.prefix + MARK)), [true, false], 'only the first moved the mark')
  assert.equal(await mark(), 1 + RESERVATION)

  commits.handOut(1000)
  await commits.commit([put('within')])
  assert.equal(await mark(), 1 + RESERVATION, 'seqs within the reservation need no mark')
  commits.handOut(RESERVATION + 2)
  await commits.commit([put('past')])
  assert.equal(await mark(), 2 * RESERVATION + 2)

  // after a restart: the seqs reserved stay used, and so do those handed out to batches that failed
  const again = new GroupCommit(db, sub.prefix, { sync: false, markKey: MARK })
  again.resume(await mark(), 5)
  assert.equal(again.lastSeq, 2 * RESERVATION + 2)
  assert.equal(again.visibleThrough, 2 * RESERVATION + 2)
  again.handOut(3 * RESERVATION)
  again.resume(7, 9)
  assert.equal(again.lastSeq, 3 * RESERVATION, 'a seq handed out is never handed out again')
  await again.close()
})

test('GroupCommit: with sync, every batch is written with sync', async t => {
  for (const sync of [true, false]) {
    const { db, commits } = await open(t, { sync })
    const options = []
    const spied = /** @type {any} */ (db) // the batches abstract-level makes, spied on
    const original = spied._chainedBatch
    spied._chainedBatch = function () {
      const batch = original.call(this)
      const write = batch._write
      batch._write = function (writeOptions) {
        options.push(writeOptions?.sync === true)
        return write.call(this, writeOptions)
      }
      return batch
    }
    t.after(() => { delete spied._chainedBatch })
    await commits.commit([put('a')])
    await commits.commit([put('b')])
    assert.deepEqual(options, [sync, sync])
  }
})

test('GroupCommit: close() waits for the batches on their way; a change after it is refused', async t => {
  const { sub, commits, writes } = await open(t)
  const release = writes.hold(1)
  const last = commits.commit([put('last')])
  const pending = probe(last)
  for (let i = 0; i < 10 && writes.started < 1; i++) await turn()
  const closing = commits.close()
  const closed = probe(closing)
  for (let i = 0; i < 5; i++) await turn()
  assert.equal(closed.now, 'waiting')
  assert.equal(pending.now, 'waiting')
  release()
  await closing
  assert.equal(pending.now, 'resolved', 'the batch on its way was written before close() resolved')
  assert.equal(String(await sub.get('last')), 'last')
  let failed = false
  await assert.rejects(commits.commit([put('late')], undefined, () => { failed = true }), { code: 'FNBUS_STORE_FAILURE', message: /closed/ })
  assert.ok(failed, 'its failed() runs')
})

test('GroupCommit: while the database reopens after a failed write, changes are refused at once', async t => {
  const { db, commits } = await open(t)
  await commits.commit([put('before')])
  await db.close()
  let failed = false
  await assert.rejects(commits.commit([put('refused')], undefined, () => { failed = true }), { code: 'FNBUS_STORE_FAILURE' })
  assert.ok(failed)
})
