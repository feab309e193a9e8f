// A real process appends to (and completes in) a LevelInvocationStore and is SIGKILLed at a random moment, three
// times over the same directory: everything it acknowledged must be there after each kill, and nothing it
// acknowledged as completed may come back. Replay a run with FNBUS_STORE_CRASH_SEED.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import test from 'node:test'
import { fileURLToPath } from 'node:url'
import { openDatabase } from '../../dist/store/database.js'
import { LevelInvocationStore } from '../../dist/store/level-store.js'
import { seededRandom } from '../../scripts/seeded-random.js'
import { tempDir } from '../helpers.js'
import { readAll } from './invocation-store.suite.js'

const WRITER = fileURLToPath(new URL('../fixtures/store-crash-writer.js', import.meta.url))
const ROUNDS = 3

/** Runs the writer until `killAfterMs` past its "ready", SIGKILLs it, and resolves with the complete lines it printed. */
function runAndKill (dir, killAfterMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER], { env: { ...process.env, FNBUS_STORE_CRASH_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let killTimer
    const startTimeout = setTimeout(() => child.kill('SIGKILL'), 10_000)
    child.stdout.setEncoding('utf8').on('data', chunk => {
      stdout += chunk
      if (killTimer === undefined && stdout.includes('ready\n')) {
        clearTimeout(startTimeout)
        killTimer = setTimeout(() => child.kill('SIGKILL'), killAfterMs)
      }
    })
    child.stderr.setEncoding('utf8').on('data', chunk => { stderr += chunk })
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(startTimeout)
      clearTimeout(killTimer)
      if (signal !== 'SIGKILL' || killTimer === undefined) {
        reject(new Error(`the writer ended with ${signal ?? code} before it was killed: ${stderr}`))
        return
      }
      // a line cut by the kill is not an acknowledgement
      resolve(stdout.slice(0, stdout.lastIndexOf('\n')).split('\n'))
    })
  })
}

test('LevelInvocationStore: SIGKILLed while appending and completing, it loses nothing it acknowledged', async t => {
  const seed = Number(process.env.FNBUS_STORE_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31))
  t.diagnostic(`seed ${seed} (replay: FNBUS_STORE_CRASH_SEED=${seed} node --test test/store/level-store-crash.test.js)`)
  const random = seededRandom(seed)
  const dir = await tempDir(t)
  const appended = new Set()
  const completing = new Set()
  const completed = new Set()
  for (let round = 0; round < ROUNDS; round++) {
    const killAfterMs = 50 + Math.floor(random() * 600)
    const lines = await runAndKill(dir, killAfterMs)
    let acknowledged = 0
    for (const line of lines) {
      if (line.startsWith('a ')) {
        appended.add(line.slice(2))
        acknowledged++
      } else if (line.startsWith('c ')) {
        completed.add(line.slice(2))
      } else if (line.startsWith('completing ')) {
        completing.add(line.slice('completing '.length))
      }
    }
    assert.ok(acknowledged > 0, `round ${round}: the writer acknowledged nothing in ${killAfterMs} ms`)

    const db = await openDatabase(dir)
    const store = new LevelInvocationStore(db)
    try {
      await store.open()
      const pending = new Set((await readAll(store, 'Crash/fn')).map(i => i.id))
      // an invocation whose completion had begun may or may not be there; every other acknowledged one must be
      const lost = [...appended].filter(id => !completing.has(id) && !pending.has(id))
      const back = [...completed].filter(id => pending.has(id))
      const where = `seed ${seed}, round ${round} (killed ${killAfterMs} ms in, ${appended.size} acknowledged, ${completed.size} completed)`
      assert.deepEqual(lost, [], `lost acknowledged invocations: ${where}`)
      assert.deepEqual(back, [], `completed invocations came back: ${where}`)
      assert.equal(store.counts().get('Crash/fn')?.pending ?? 0, pending.size, `counts: ${where}`)
      t.diagnostic(`round ${round}: killed ${killAfterMs} ms in; ${appended.size} acknowledged, ${completed.size} completed, ${pending.size} pending, lost 0`)
    } finally {
      await store.close()
      await db.close()
    }
  }
})
