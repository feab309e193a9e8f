// Async invocations in a cluster as users run it: `fnbus start --cluster` processes on a 3-node JetStream cluster of
// the test's own (replicas 3). A gateway SIGKILLed with invocations under way loses none of them: the other one
// delivers them once their ack_wait passes (its function's timeout and 5 s). Every delivery is witnessed in a file
// by the function itself (fixtures/record.cjs); duplicates are allowed (at least once), losses are not.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { FCClient } from '../../dist/index.js'
import { tempDir, waitFor } from '../helpers.js'
import { FIXTURES, runCli, startCli } from './cli.js'
import { natsCluster } from './nats-cluster.js'

/** The requestIds recorded in `files`, each with how often. */
async function recorded (/** @type {string[]} */ files) {
  /** @type {Map<string, number>} */
  const seen = new Map()
  for (const file of files) {
    const text = await readFile(file, 'utf8').catch(() => '')
    for (const id of text.split('\n').filter(line => line !== '')) seen.set(id, (seen.get(id) ?? 0) + 1)
  }
  return seen
}

test('processes: a gateway killed with Async invocations under way loses none; the other gateway delivers them', async t => {
  const nats = await natsCluster(t, await tempDir(t), { nodes: 3 })
  const env = { FNBUS_CLUSTER_USER: nats.credentials.user, FNBUS_CLUSTER_PASSWORD: nats.credentials.password }
  const gateway = async (/** @type {string} */ name) => {
    const dir = await tempDir(t)
    const file = join(dir, 'recorded.txt')
    await writeFile(join(dir, 'fnbus.config.json'), JSON.stringify({
      memory: true,
      functions: [{ service: 'Test', function: 'record', module: join(FIXTURES, 'record.cjs'), isolation: 'thread', concurrency: 4, timeoutMs: 2000, env: { RECORD_FILE: file } }],
      cluster: { servers: nats.servers, name, heartbeatMs: 200 },
    }))
    const gw = await startCli(t, [], { cwd: dir, env })
    await gw.waitFor('Async invocations are stored in JetStream', { timeoutMs: 30_000 })
    await gw.waitFor('"msg":"serving Test/record')
    return Object.assign(gw, { file })
  }
  const [a, b] = await Promise.all([gateway('a'), gateway('b')])
  const client = new FCClient({ url: a.url })
  t.after(() => client.close())

  const accepted = []
  for (let i = 0; i < 300; i++) {
    const { invocationId } = /** @type {{ invocationId: string }} */ (await client.invokeFunction({ serviceName: 'Test', functionName: 'record', invocationType: 'Async', payload: '20' }))
    accepted.push(invocationId)
    if (i === 100) {
      // b has pulled some and runs some: they are under way when it dies
      await waitFor(async () => [...(await recorded([b.file])).keys()].length > 5, 10_000, 'b to deliver some').catch(err => { throw new Error(`${err.message}\n${b.stderr}`) })
      b.child.kill('SIGKILL')
    }
  }
  await waitFor(async () => {
    const seen = await recorded([a.file, b.file])
    return accepted.every(id => seen.has(id))
  }, 60_000, 'every accepted invocation to be delivered')
  const seen = await recorded([a.file, b.file])
  const duplicates = [...seen.values()].filter(n => n > 1).length
  t.diagnostic(`accepted ${accepted.length}, delivered ${seen.size}, duplicates ${duplicates}, lost 0`)
  assert.equal(accepted.filter(id => !seen.has(id)).length, 0)

  // the queue drained, as `fnbus queue ls` says (JetStream's counts, read every second)
  await waitFor(async () => {
    const counts = /** @type {{ fn: string, pending: number }[]} */ (JSON.parse((await runCli(t, ['queue', 'ls', 'Test/record', '--json'], { env: a.env })).stdout))
    return counts.every(c => c.pending === 0)
  }, 10_000, 'the queue to drain')
})
