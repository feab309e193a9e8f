import { Keys, SCAN_PAGE, SEQ_DIGITS, type AsyncSublevel, type Range } from './keys.js'
import { storeFailure } from './records.js'

// Reads of the invocation store's sublevel: each bounded, and a failure of LevelDB's reported as FNBUS_STORE_FAILURE.

export async function readOne (db: AsyncSublevel, key: string): Promise<Buffer | undefined> {
  try {
    return await db.get(key)
  } catch (err) {
    throw storeFailure('reading the invocation store', err)
  }
}

export async function readMany (db: AsyncSublevel, keys: string[]): Promise<Array<Buffer | undefined>> {
  try {
    return await db.getMany(keys)
  } catch (err) {
    throw storeFailure('reading the invocation store', err)
  }
}

/** Values of a key range, in key order, at most `limit`: one bounded read, never a whole function's queue. */
export async function scan (db: AsyncSublevel, range: Range, limit: number): Promise<Buffer[]> {
  try {
    return await db.values({ ...range, limit: Number.isFinite(limit) ? Math.floor(limit) : Infinity }).all()
  } catch (err) {
    throw storeFailure('reading the invocation store', err)
  }
}

/** The seq mark on disk (`m!seq`), 0 when there is none. */
export async function readSeqMark (db: AsyncSublevel): Promise<number> {
  const stored = await db.get(Keys.sequence)
  const mark = stored === undefined ? 0 : Number(stored.toString())
  if (!Number.isSafeInteger(mark) || mark < 0) throw new Error(`the sequence mark holds ${String(stored)}`)
  return mark
}

/** Every function's number (`f!{fn}`), as stored. */
export async function readFunctionNumbers (db: AsyncSublevel): Promise<Array<[string, number]>> {
  const out: Array<[string, number]> = []
  for (const [key, value] of await db.iterator(Keys.allFunctions).all()) {
    const fn = key.slice(2)
    const number = Number(value.toString())
    if (!Number.isSafeInteger(number) || number < 0) throw new Error(`the number of function ${fn} is ${value.toString()}`)
    out.push([fn, number])
  }
  return out
}

/** Counts the records of a range per function from their keys alone, into `into`; resolves with the highest seq seen. */
export async function countRecords (db: AsyncSublevel, range: Range, field: 'pending' | 'dead', into: Map<string, { pending: number, dead: number }>): Promise<number> {
  const iterator = db.keys(range)
  let highest = 0
  let prefix = ''
  let counts: { pending: number, dead: number } | undefined
  try {
    for (let keys = await iterator.nextv(SCAN_PAGE); keys.length > 0; keys = await iterator.nextv(SCAN_PAGE)) {
      for (const key of keys) {
        // keys come grouped by function: look the counter up once per function
        if (counts === undefined || !key.startsWith(prefix)) {
          const fn = Keys.functionOf(key)
          prefix = key.slice(0, key.length - SEQ_DIGITS)
          counts = into.get(fn) ?? { pending: 0, dead: 0 }
          into.set(fn, counts)
        }
        counts[field]++
        const seq = Keys.seqOf(key)
        if (seq > highest) highest = seq
      }
    }
  } finally {
    await iterator.close()
  }
  return highest
}
