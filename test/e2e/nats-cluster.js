// nats-server processes of a test's own: a JetStream cluster of one to three nodes on free ports, with the
// gateways' credentials, in a temporary directory (never the machine's 127.0.0.1:4222). Each node can be stopped,
// killed and started again on the same ports and store. (Not a test file; node --test loads it and finds no tests.)
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, waitForPort } from './cli.js'

export const NATS_SERVER = '/usr/sbin/nats-server'
/** The user the gateways log in as; a client without it is refused by the servers. */
export const NATS_USER = 'fnbus'
export const NATS_PASSWORD = 'gateway-secret'

/**
 * Starts `nodes` nats-server processes as one JetStream cluster (or a lone server for 1), stopped after the test.
 * @param {import('node:test').TestContext} t
 * @param {string} dir
 * @param {{ nodes?: number, auth?: boolean }} [options]
 */
export async function natsCluster (t, dir, options = {}) {
  const count = options.nodes ?? 3
  const auth = options.auth !== false
  // The stores live in a directory of the cluster's own, removed only once every node is dead: a test's own temporary
  // directory is removed by an after-hook registered before this one (they run in that order), while the nodes may
  // still be writing their JetStream files (ENOTEMPTY).
  const stores = await mkdtemp(join(tmpdir(), 'fnbus-nats-'))
  /** @type {{ kill: () => Promise<void> }[]} */
  const started = []
  t.after(async () => {
    await Promise.all(started.map(node => node.kill()))
    await rm(stores, { recursive: true, force: true, maxRetries: 5 })
  })
  const ports = await Promise.all(Array.from({ length: count }, async () => ({ client: await freePort(), route: await freePort() })))
  const nodes = await Promise.all(ports.map(async ({ client, route }, i) => {
    const name = `n${i + 1}`
    const store = join(stores, name)
    await mkdir(store, { recursive: true })
    const lines = [
      `server_name: ${name}`,
      `listen: 127.0.0.1:${client}`,
      `jetstream { store_dir: "${store}", max_memory_store: 64MB, max_file_store: 1GB }`,
      // room for a call of limits.maxPayloadBytes (1 MiB) and its envelope, as docs/cluster.md advises
      'max_payload: 4MB',
    ]
    if (auth) lines.push(`authorization { users: [ { user: ${NATS_USER}, password: ${NATS_PASSWORD} } ] }`)
    if (count > 1) {
      const routes = ports.filter((_, j) => j !== i).map(p => `nats-route://127.0.0.1:${p.route}`)
      lines.push(`cluster { name: fnbus-test, listen: 127.0.0.1:${route}, routes: [ ${routes.join(', ')} ] }`)
    }
    const conf = join(dir, `${name}.conf`)
    await writeFile(conf, lines.join('\n') + '\n')
    return natsNode(name, conf, client)
  }))
  started.push(...nodes)
  await Promise.all(nodes.map(node => node.start()))
  return {
    nodes,
    /** Every node's client URL. */
    servers: nodes.map(node => node.url),
    /** The credentials the gateways' `cluster` block takes. */
    credentials: auth ? { user: NATS_USER, password: NATS_PASSWORD } : {},
  }
}

/**
 * @param {string} name
 * @param {string} conf
 * @param {number} port
 */
function natsNode (name, conf, port) {
  /** @type {import('node:child_process').ChildProcess | undefined} */
  let child
  let log = ''
  const end = async (/** @type {NodeJS.Signals} */ signal) => {
    const proc = child
    child = undefined
    if (proc === undefined || proc.exitCode !== null) return
    const exited = new Promise(resolve => proc.once('exit', resolve))
    proc.kill(signal)
    await exited
  }
  return {
    name,
    port,
    url: `nats://127.0.0.1:${port}`,
    get log () { return log },
    async start () {
      const proc = spawn(NATS_SERVER, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
      child = proc
      proc.stderr?.setEncoding('utf8')
      proc.stderr?.on('data', chunk => { log = (log + chunk).slice(-20_000) })
      await waitForPort(port, () => proc.exitCode !== null, () => log, 'nats-server')
    },
    /** SIGTERM: a clean shutdown. */
    stop: () => end('SIGTERM'),
    /** SIGKILL: the node dies. */
    kill: () => end('SIGKILL'),
  }
}
