// The functions `fnbus start` supervises reach it through a Unix socket by default: in the data directory, or in
// the runtime directory for a gateway in memory; through TCP when no socket can be made there.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { tempDir } from '../helpers.js'
import { FIXTURES, runCli, startCli, terminate } from './cli.js'

async function supervising (t, dir, config, env = {}) {
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
    functions: [{ service: 'Sock', function: 'where', module: join(FIXTURES, 'callback.cjs') }],
    ...config,
  }))
  const gateway = await startCli(t, [], { cwd: dir, env })
  await gateway.waitFor('"msg":"serving Sock/where')
  const where = await runCli(t, ['invoke', 'Sock/where', '--payload', 'url'], { env: gateway.env })
  assert.equal(where.code, 0, where.stderr)
  return { gateway, url: where.stdout.trim() }
}

test('the supervised functions connect through DATA/fnbus.sock, which the gateway removes as it stops', async t => {
  const dir = await tempDir(t)
  const { gateway, url } = await supervising(t, dir, { dataDir: './data' })
  const socket = join(dir, 'data', 'fnbus.sock')
  assert.equal(url, `mqtt+unix://${socket}`)
  assert.match(gateway.stdout, new RegExp(`fnbus gateway listening on mqtt\\+unix://${socket.replace(/[.+]/g, '\\$&')}\\n`))
  assert.ok(existsSync(socket))
  assert.equal((await terminate(gateway)).code, 0)
  assert.ok(!existsSync(socket))
})

test('a gateway in memory puts it in $XDG_RUNTIME_DIR as fnbus-PID.sock', async t => {
  const runtime = await tempDir(t)
  const { gateway, url } = await supervising(t, await tempDir(t), { memory: true }, { XDG_RUNTIME_DIR: runtime })
  assert.equal(url, `mqtt+unix://${join(runtime, `fnbus-${gateway.child.pid}.sock`)}`)
  assert.equal((await terminate(gateway)).code, 0)
  assert.ok(!existsSync(join(runtime, `fnbus-${gateway.child.pid}.sock`)))
})

test('without a usable socket path the functions connect through TCP, and the log says why', async t => {
  const dir = await tempDir(t)
  // a data directory whose socket path would be longer than a socket path may be
  const deep = join(dir, 'd'.repeat(60), 'e'.repeat(60))
  await mkdir(deep, { recursive: true })
  const long = await supervising(t, dir, { dataDir: deep })
  assert.equal(long.url, long.gateway.url)
  assert.match(long.gateway.stderr, /no Unix socket for the functions: .* is longer than a Unix socket path may be/)
  await terminate(long.gateway)

  // a file in the way that is not a socket: the gateway starts without the socket rather than refusing to start
  const second = join(await tempDir(t), 'data')
  await mkdir(second, { recursive: true })
  await writeFile(join(second, 'fnbus.sock'), 'not a socket')
  const fallback = await supervising(t, await tempDir(t), { dataDir: second })
  assert.equal(fallback.url, fallback.gateway.url)
  assert.match(fallback.gateway.stderr, /no Unix socket for the functions \(.*exists and is not a socket/)
  await terminate(fallback.gateway)
})

test('an explicit socket, or none for a gateway that supervises nothing, as before', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({ memory: true }))
  const bare = await startCli(t, [], { cwd: dir })
  await new Promise(resolve => setTimeout(resolve, 300))
  assert.doesNotMatch(bare.stdout, /mqtt\+unix/)
  await terminate(bare)
  const chosen = join(await tempDir(t), 'chosen.sock')
  const { url } = await supervising(t, await tempDir(t), { memory: true, socket: chosen })
  assert.equal(url, `mqtt+unix://${chosen}`)
})
