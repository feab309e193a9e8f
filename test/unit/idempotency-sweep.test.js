// The sweep of expired idempotency keys and the filter it rebuilds, on its own, on a real LevelDB in a temporary
// directory (the keys are written through the store's writer, as the store writes them).
import assert from 'node:assert/strict'
import test from 'node:test'
import { openDatabase } from '../../dist/store/database.js'
import { GroupCommit } from '../../dist/store/group-commit.js'
import { IdempotencySweep } from '../../dist/store/idempotency-sweep.js'
import { encodeIdempotencyEntry } from '../../dist/store/records.js'
import { defined, tempDir } from '../helpers.js'
/** @import { AsyncSublevel } from '../../dist/store/keys.js' */

const HOUR = 3600_000

/**
 * @param {import('node:test').TestContext} t
 * @param {{ now?: () => number, intervalMs?: number }} [options]
 */
async function open (t, { now = () => 1_000_000, intervalMs = HOUR } = {}) {
  const db = await openDatabase(await tempDir(t))
  // as the store opens it: string keys, Buffer values
  const sub = /** @type {AsyncSublevel} */ (/** @type {unknown} */ (db.sublevel('async', { valueEncoding: 'buffer' })))
  await sub.open()
  const commits = new GroupCommit(db, sub.prefix, { sync: false, markKey: 'm!seq' })
  const sweep = new IdempotencySweep(sub, commits, { intervalMs, now })
  t.after(async () => {
    await sweep.stop()
    await commits.close()
    await db.close()
  })
  /** Writes idempotency entries as an append does: into the filter, then to disk. */
  const write = async entries => {
    for (const [key] of entries) sweep.remember(key)
    await commits.commit(entries.map(([key, exp]) => ({ type: 'put', key, value: encodeIdempotencyEntry({ id: `id of ${key}`, exp }) })))
  }
  const keysOnDisk = async () => await sub.keys({ gt: 'k!', lt: 'k"' }).all()
  return { db, sub, commits, sweep, write, keysOnDisk }
}

const key = (n, fn = 'S/f') => `k!${fn}!${encodeURIComponent(`key ${n}`)}`

test('IdempotencySweep: a sweep deletes the expired keys, keeps the young ones, and rebuilds the filter from them', async t => {
  const clock = 1_000_000
  const { sub, sweep, write, keysOnDisk } = await open(t, { now: () => clock })
  const young = Array.from({ length: 5 }, (_, n) => key(n, 'S/young'))
  // more than a thousand, so that they are deleted in several batches
  const expired = Array.from({ length: 2500 }, (_, n) => key(n, 'S/old'))
  await write([...young.map(k => [k, clock + 1]), ...expired.map(k => [k, clock])])
  // an entry that cannot be read can only mislead: swept as well
  await sub.put(key('garbled'), Buffer.from([0xc1]))

  await sweep.start()
  assert.deepEqual(await keysOnDisk(), [...young].sort())
  for (const k of young) assert.equal(sweep.mightContain(k), true, `${k} is young and stays in the filter`)
  const stillMaybe = expired.filter(k => sweep.mightContain(k)).length
  assert.ok(stillMaybe < 50, `the rebuilt filter forgot the swept keys (${stillMaybe} of ${expired.length} still "maybe", ~1% expected)`)
})

test('IdempotencySweep: a key enters the filter the moment its write is queued', async t => {
  const { sweep, commits } = await open(t)
  await sweep.start()
  assert.equal(sweep.mightContain(key(1)), false)
  sweep.remember(key(1))
  assert.equal(sweep.mightContain(key(1)), true, 'before it reaches the disk')
  await commits.barrier()
})

test('IdempotencySweep: a key written again while the sweep runs is neither deleted nor left out of the filter', async t => {
  let clock = 1_000_000
  const { sub, sweep, commits, write, keysOnDisk } = await open(t, { now: () => clock })
  await write([[key(1), clock + 10], [key(2), clock + 10]])
  await sweep.start()
  clock += 100 // both have expired
  // key 1 is written again (a new invocation with the same key) just after the sweep took its snapshot of the keys
  const spied = /** @type {any} */ (sub) // its iterator, spied on
  const iterator = spied.iterator
  spied.iterator = function (...args) {
    const it = iterator.apply(this, args)
    spied.iterator = iterator
    sweep.remember(key(1))
    commits.commit([{ type: 'put', key: key(1), value: encodeIdempotencyEntry({ id: 'the new invocation', exp: clock + 1000 }) }])
    return it
  }
  await sweep.sweep()
  assert.deepEqual(await keysOnDisk(), [key(1)], 'the expired key 2 is gone; key 1, written meanwhile, stays')
  assert.equal(sweep.mightContain(key(1)), true, 'and the new filter holds it')
})

test('IdempotencySweep: it sweeps at start and on its interval', async t => {
  t.mock.timers.enable({ apis: ['setInterval'] })
  let clock = 1_000_000
  let sweeps = 0
  const { sweep, write, keysOnDisk } = await open(t, { now: () => { sweeps++; return clock }, intervalMs: 60_000 })
  await write([[key(1), clock + 10]])
  await sweep.start()
  assert.equal(sweeps, 1)
  assert.deepEqual(await keysOnDisk(), [key(1)])
  clock += 100
  t.mock.timers.tick(59_999)
  assert.equal(sweeps, 1)
  t.mock.timers.tick(1)
  assert.equal(sweeps, 2, 'the interval started a sweep')
  await sweep.sweep() // joins it
  assert.equal(sweeps, 2)
  assert.deepEqual(await keysOnDisk(), [])
})

test('IdempotencySweep: a full filter starts a sweep, which rebuilds it at the size of what is on disk', async t => {
  let sweeps = 0
  const { sweep, write } = await open(t, { now: () => { sweeps++; return 1_000_000 } })
  await write([[key('on disk'), 2_000_000]])
  await sweep.start()
  assert.equal(sweeps, 1)
  // keys remembered but never written (their appends failed, say): past the filter's capacity a sweep starts
  const remembered = Array.from({ length: 65_537 }, (_, n) => key(n, 'S/lost'))
  for (const k of remembered) sweep.remember(k)
  assert.equal(sweeps, 2, 'the key past its capacity started a sweep')
  await sweep.sweep() // joins it
  assert.equal(sweeps, 2)
  assert.equal(sweep.mightContain(key('on disk')), true)
  assert.ok(remembered.filter(k => sweep.mightContain(k)).length < remembered.length / 20, 'keys not on disk left the filter')
})

test('IdempotencySweep: stop() cuts a sweep short at its next page, and the filter stays as it was', async t => {
  const clock = 1_000_000
  const { sub, sweep, write, keysOnDisk } = await open(t, { now: () => clock })
  // expired keys, more than the sweep reads before it deletes (1000)
  const expired = Array.from({ length: 3000 }, (_, n) => key(n))
  await write(expired.map(k => [k, clock]))
  const spied = /** @type {any} */ (sub) // its iterator, spied on
  const iterator = spied.iterator
  spied.iterator = function (...args) {
    const it = iterator.apply(this, args)
    spied.iterator = iterator
    // stopped once the sweep has read (and so deleted) its first thousand keys
    const nextv = it.nextv
    let read = 0
    it.nextv = async function (...nextArgs) {
      if (read >= 1000) sweep.stop()
      const entries = await nextv.apply(this, nextArgs)
      read += entries.length
      return entries
    }
    return it
  }
  await sweep.start()
  const left = (await keysOnDisk()).length
  assert.ok(left > 0 && left < expired.length, `the first page was swept, the rest left for the next start (${left} left)`)
  assert.equal(sweep.mightContain(defined(expired.at(-1))), true, 'not rebuilt: the filter still holds what it held')
  sweep.remember(key('after stop'))
  for (let k = 0; k < 70_000; k++) sweep.remember(key(k, 'S/more'))
  await new Promise(setImmediate)
  assert.equal((await keysOnDisk()).length, left, 'once stopped, a full filter starts no sweep')
})
