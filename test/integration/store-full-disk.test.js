// A full disk, for real: the gateway's data directory on a small tmpfs that a filler file fills up. Async calls are
// refused while it is full, /healthz and the metrics say so, and once space returns the gateway takes Async calls
// again by itself; every invocation it accepted, before and after, is still there after a restart.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm, statfs, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'node:test'
import { createGateway } from '../../dist/index.js'
import { connectClient, waitFor } from '../helpers.js'

/** A fresh tmpfs of `size` mounted on a temporary directory, unmounted after the test; undefined if mounting is not allowed. */
async function smallDisk (t, size) {
  const dir = await mkdtemp(join(tmpdir(), 'fnbus-full-disk-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' })
  } catch {
    await rm(dir, { recursive: true, force: true })
    return undefined
  }
  t.after(async () => {
    execFileSync('umount', ['-l', dir])
    await rm(dir, { recursive: true, force: true })
  })
  return dir
}

/**
 * /healthz: its status and JSON answer.
 * @returns {Promise<{ status: number, body: any }>}
 */
async function health (gw) {
  const response = await fetch(`${gw.httpUrl}/healthz`)
  return { status: response.status, body: await response.json() }
}

async function storeHealthyGauge (gw) {
  const text = await (await fetch(`${gw.httpUrl}/metrics`)).text()
  const match = /^fnbus_store_healthy (\S+)$/m.exec(text)
  assert.ok(match, 'fnbus_store_healthy is exported')
  return Number(match[1])
}

async function gatewayOn (t, dataDir) {
  // no free-space floor: this test fills the disk to the last byte
  const gw = await createGateway({ port: 0, dataDir, limits: { minFreeDiskBytes: 0 }, http: { port: 0 }, plugins: { metrics: { processMetrics: false } } })
  let closed = false
  t.after(() => closed ? undefined : gw.close())
  return { gw, close: async () => { closed = true; await gw.close() } }
}

test('a full disk: Async refused with FNBUS_STORE_FAILURE and /healthz not ready while full; accepted again by itself once space returns; nothing accepted lost', async t => {
  const disk = await smallDisk(t, '8m')
  if (disk === undefined) {
    t.skip('mounting a tmpfs is not allowed here (needs root)')
    return
  }
  const dataDir = join(disk, 'data')
  const filler = join(disk, 'filler')
  const first = await gatewayOn(t, dataDir)
  const gw = first.gw
  const client = await connectClient(t, gw)
  const payload = Buffer.alloc(4096, 7)
  const accepted = new Set()

  for (let i = 0; i < 20; i++) accepted.add((await client.invokeAsync('Disk/fill', payload)).invocationId)
  assert.equal((await health(gw)).status, 200)

  // leave a little room, then accept until the disk refuses
  const { bavail, bsize } = await statfs(disk)
  await writeFile(filler, Buffer.alloc(Math.max(bavail * bsize - 64 * 1024, 0)))
  /** @type {import('../helpers.js').Thrown | undefined} */
  let refusal
  for (let i = 0; i < 200 && refusal === undefined; i++) {
    try {
      accepted.add((await client.invokeAsync('Disk/fill', payload)).invocationId)
    } catch (err) {
      refusal = /** @type {import('../helpers.js').Thrown} */ (err)
    }
  }
  assert.ok(refusal !== undefined, 'the full disk refused an Async call')
  assert.equal(refusal?.code, 'FNBUS_STORE_FAILURE')

  // still full: refused, and the gateway says so, also after an attempt to reopen has come and gone
  await new Promise(resolve => setTimeout(resolve, 1500))
  const whileFull = await health(gw)
  assert.equal(whileFull.status, 503)
  assert.deepEqual({ ready: whileFull.body.ready, store: whileFull.body.store, broker: whileFull.body.broker }, { ready: false, store: false, broker: true })
  assert.equal(await storeHealthyGauge(gw), 0)
  await assert.rejects(client.invokeAsync('Disk/fill', payload), { code: 'FNBUS_STORE_FAILURE' })
  // Sync calls do not need the store
  await gw.serve('Disk/echo', async event => event)
  assert.equal(await client.invoke('Disk/echo', 'still here'), 'still here')

  // space returns: no restart, the next calls are accepted within the recovery's backoff (10 s at most)
  await rm(filler)
  const freedAt = performance.now()
  const firstAfter = await waitFor(async () => {
    try {
      return (await client.invokeAsync('Disk/fill', payload)).invocationId
    } catch (err) {
      assert.equal(/** @type {import('../helpers.js').Thrown} */ (err).code, 'FNBUS_STORE_FAILURE')
      return undefined
    }
  }, 20_000, 'an Async call accepted after space returned')
  accepted.add(firstAfter)
  t.diagnostic(`Async accepted again ${Math.round(performance.now() - freedAt)} ms after space returned`)
  assert.deepEqual(await health(gw), { status: 200, body: { ready: true, broker: true, store: true, functions: true } })
  assert.equal(await storeHealthyGauge(gw), 1)
  for (let i = 0; i < 20; i++) accepted.add((await client.invokeAsync('Disk/fill', payload)).invocationId)
  // the counts were read again from the disk when it reopened: nothing counted twice, nothing missing
  const status = await gw.status()
  assert.ok((status.functions.find(f => f.name === 'Disk/fill')?.async?.pending ?? -1) >= accepted.size)

  // a restart replays the log: what was accepted after the failure must be in it as well as what came before
  await client.close()
  await first.close()
  const second = await gatewayOn(t, dataDir)
  const delivered = new Set()
  await second.gw.serve('Disk/fill', async (_event, context) => { delivered.add(context.requestId) }, { concurrency: 16 })
  await waitFor(() => delivered.size >= accepted.size, 30_000, 'delivery').catch(() => {})
  const lost = [...accepted].filter(id => !delivered.has(id))
  assert.equal(lost.length, 0, `${lost.length} of ${accepted.size} accepted invocations lost`)
  await second.close()
})

test('limits.minFreeDiskBytes: below it new Async invocations are FNBUS_QUEUE_FULL (the disk is never filled by them); above it again, accepted', async t => {
  const disk = await smallDisk(t, '32m')
  if (disk === undefined) {
    t.skip('mounting a tmpfs is not allowed here (needs root)')
    return
  }
  const gw = await createGateway({ port: 0, dataDir: join(disk, 'data'), limits: { minFreeDiskBytes: 16 * 1024 * 1024 } })
  t.after(() => gw.close())
  const client = await connectClient(t, gw)
  const first = await client.invokeAsync('Room/fn', 'fits')
  assert.ok(first.invocationId)
  const { bavail, bsize } = await statfs(disk)
  const filler = join(disk, 'filler')
  // leave 8 MiB: under the floor, far from full
  await writeFile(filler, Buffer.alloc(bavail * bsize - 8 * 1024 * 1024))
  const refused = await waitFor(async () => await client.invokeAsync('Room/fn', 'no room').then(() => undefined, err => err), 5000, 'a refusal')
  assert.equal(refused.code, 'FNBUS_QUEUE_FULL')
  assert.match(refused.message, /limits\.minFreeDiskBytes/)
  assert.equal(await client.invoke('Room/sync', 'x', { waitForWorker: 0 }).catch(err => err.code), 'FNBUS_FUNCTION_NOT_FOUND', 'Sync calls are not affected')
  await rm(filler)
  await waitFor(async () => await client.invokeAsync('Room/fn', 'room again').then(() => true, () => false), 5000, 'acceptance again')
  const seen = []
  await gw.serve('Room/fn', async event => { seen.push(event) })
  // the free space is read once a second: calls made before the next reading were still taken
  await waitFor(() => seen.at(-1) === 'room again', 5000, 'every accepted invocation delivered')
  assert.equal(seen[0], 'fits')
  assert.deepEqual(new Set(seen.slice(1, -1)), new Set(seen.length > 2 ? ['no room'] : []))
})
