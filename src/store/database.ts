import { mkdir } from 'node:fs/promises'
import { resolve } from 'node:path'
import { Level } from 'level'
import { FnbusError } from '../errors.js'

/** Bumped when the layout of stored data changes; a gateway refuses a directory written by a newer one. */
export const STORE_FORMAT_VERSION = 1
const FORMAT_KEY = 'format'

export type Database = Level<string, Buffer>

/**
 * Opens the one LevelDB of a data directory. aedes' persistence and the bus each get a sublevel of it: LevelDB
 * admits one opener per directory, even within a process (DESIGN.md, pitfall 11).
 */
export async function openDatabase (dataDir: string): Promise<Database> {
  const dir = resolve(dataDir)
  await mkdir(dir, { recursive: true })
  const db: Database = new Level<string, Buffer>(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' })
  try {
    await db.open()
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    if (cause?.code === 'LEVEL_LOCKED') {
      throw new FnbusError('FNBUS_DATA_DIR_LOCKED', `data directory ${dir} is in use by another fnbus gateway (or another LevelDB user)`, { cause: err })
    }
    throw new FnbusError('FNBUS_STORE_FAILURE', `cannot open data directory ${dir}: ${(err as Error).message}`, { cause: err })
  }
  try {
    await checkFormat(db, dir)
  } catch (err) {
    await db.close()
    throw err
  }
  return db
}

async function checkFormat (db: Database, dir: string): Promise<void> {
  const meta = db.sublevel<string, string>('meta', { valueEncoding: 'utf8' })
  const stored = await meta.get(FORMAT_KEY)
  if (stored === undefined) {
    await meta.put(FORMAT_KEY, String(STORE_FORMAT_VERSION))
    return
  }
  const version = Number(stored)
  if (!Number.isInteger(version) || version > STORE_FORMAT_VERSION) {
    throw new FnbusError('FNBUS_STORE_FAILURE',
      `data directory ${dir} holds store format ${stored}, newer than this gateway's ${STORE_FORMAT_VERSION}: upgrade fnbus, or point --data elsewhere`)
  }
}
