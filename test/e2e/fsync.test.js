// `fnbus start` fsyncs each accepted Async invocation by default ("accepted" survives a power cut), and not with
// "fsync": false in fnbus.config.json. Seen from outside as a user's kernel sees it: strace counts the gateway's
// fsync/fdatasync calls.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'node:test'
import { FCClient } from '../../dist/index.js'
import { tempDir } from '../helpers.js'
import { BIN, freePort } from './cli.js'

const ACCEPTS = 20

function straceWorks () {
  try {
    execFileSync('strace', ['-qq', '-e', 'trace=fdatasync', '-o', '/dev/null', 'true'], { stdio: 'pipe' })
    return true
  } catch {
    return false
  }
}

/** Runs `fnbus start` in `dir` under strace, accepts ACCEPTS Async invocations one by one; resolves with the syncs it made. */
async function syncsOfGateway (t, dir) {
  const port = await freePort()
  const trace = join(dir, 'strace.out')
  const env = { ...process.env }
  delete env.FNBUS_URL
  const child = spawn('strace', ['-f', '-qq', '-e', 'trace=fsync,fdatasync', '-o', trace, process.execPath, BIN, 'start', '--port', String(port)],
    { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise(resolve => child.once('close', () => resolve(undefined)))
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  let stdout = ''
  child.stdout.on('data', chunk => { stdout += chunk })
  child.stderr.resume()
  const until = Date.now() + 20_000
  while (!stdout.includes('listening on')) {
    assert.ok(Date.now() < until && child.exitCode === null, `the gateway did not start: ${stdout}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  const client = new FCClient({ url: `mqtt://127.0.0.1:${port}` })
  try {
    for (let i = 0; i < ACCEPTS; i++) await client.invokeAsync('Power/cut', `invocation ${i}`)
  } finally {
    await client.close()
  }
  // the gateway is strace's child: stopped gracefully, strace follows it out
  const gatewayPid = Number(execFileSync('pgrep', ['-P', String(child.pid)]).toString().trim())
  process.kill(gatewayPid, 'SIGTERM')
  await exited
  return (await readFile(trace, 'utf8')).split('\n').filter(line => /\b(fsync|fdatasync)\(/.test(line)).length
}

test('fnbus start fsyncs each accepted Async invocation by default, and not with "fsync": false', async t => {
  if (!straceWorks()) {
    t.skip('strace is not available (or may not trace) here')
    return
  }
  const byDefault = await tempDir(t)
  await writeFile(join(byDefault, 'fnbus.config.json'), JSON.stringify({ dataDir: './data' }))
  const withoutFsync = await tempDir(t)
  await writeFile(join(withoutFsync, 'fnbus.config.json'), JSON.stringify({ dataDir: './data', fsync: false }))

  const synced = await syncsOfGateway(t, byDefault)
  const unsynced = await syncsOfGateway(t, withoutFsync)
  t.diagnostic(`fsync/fdatasync calls for ${ACCEPTS} serial accepts: ${synced} by default, ${unsynced} with "fsync": false`)
  // opening a LevelDB syncs a few files either way; each serial accept is a batch of its own
  assert.ok(synced >= unsynced + ACCEPTS, `by default ${synced} syncs, with fsync false ${unsynced}`)
  assert.ok(unsynced < ACCEPTS, `with fsync false the accepts are not synced (${unsynced} syncs)`)
})
