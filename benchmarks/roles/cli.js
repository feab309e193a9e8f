// fnbus as its users run it: the `fnbus start` command with a configuration file, its echo functions supervised by
// the gateway (one in Link IoT Edge's callback form, one async), callers connecting as any other client does.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { FCClient } from '../../dist/index.js'

const BIN = fileURLToPath(new URL('../../bin/fnbus.js', import.meta.url))
export const FUNCTIONS = {
  callback: { name: 'Bench/echo', module: fileURLToPath(new URL('../functions/echo-callback.cjs', import.meta.url)) },
  async: { name: 'Bench/echoAsync', module: fileURLToPath(new URL('../functions/echo-async.mjs', import.meta.url)) },
  // a caller function: the loop runs inside the gateway's world (functions/driver.mjs), one run at a time
  driver: { name: 'Bench/driver', module: fileURLToPath(new URL('../functions/driver.mjs', import.meta.url)), concurrency: 1 },
}

/**
 * `fnbus start` on a free port with its data in `dataDir` (and on the Unix socket `socket` when given), serving
 * both echo functions with room for `concurrency` calls each (a user who wants 64 in flight sets it so) and the
 * driver, every one as `isolation` says (the gateway's default when undefined). Resolves once every function has a
 * registered worker. `execArgv`: Node flags for the gateway (--cpu-prof). `info.workerPids`: each function's process, by name, for CPU time (a thread's is the gateway's).
 * `supervise`: which of FUNCTIONS it runs (default all; none: a gateway whose callers reach other gateways' workers).
 * `cluster`: `{ servers, name, replicas?, prefix? }`, joined as users do (`--cluster URL --gateway-name NAME`); `replicas`
 * and `prefix`, when given, go in the configuration file (`"cluster": { "replicas": N }`), as a user sets them.
 * `bin`: another build's `bin/fnbus.js` (a before/after comparison of two builds side by side).
 */
export async function gateway ({ dataDir, socket, concurrency = 64, isolation, execArgv = [], supervise = Object.keys(FUNCTIONS), cluster, bin = BIN }) {
  const config = join(dataDir, 'fnbus.config.json')
  const supervised = supervise.map(key => FUNCTIONS[key])
  const functions = supervised.map(({ name, module, ...options }) => {
    const [service, fn] = name.split('/')
    return { service, function: fn, module, concurrency, ...(isolation === undefined ? {} : { isolation }), ...options }
  })
  const clusterFile = Object.fromEntries(['replicas', 'prefix'].filter(key => cluster?.[key] !== undefined).map(key => [key, cluster[key]]))
  await writeFile(config, JSON.stringify({ functions, ...(Object.keys(clusterFile).length === 0 ? {} : { cluster: clusterFile }) }))
  const args = [...execArgv, bin, 'start', '--config', config, '--port', '0', '--data', join(dataDir, 'data'), '--log-level', 'warn']
  if (socket !== undefined) args.push('--socket', socket)
  if (cluster !== undefined) args.push('--cluster', cluster.servers.join(','), '--gateway-name', cluster.name)
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = once(child, 'exit').then(([code, signal]) => { throw new Error(`fnbus start exited with ${signal ?? `code ${code}`}`) })
  exited.catch(() => {})
  const url = await Promise.race([listeningUrl(child, 'mqtt://'), exited])
  const client = new FCClient({ url })
  try {
    for (const { name } of supervised) {
      if (name !== FUNCTIONS.driver.name) await Promise.race([client.invoke(name, null, { waitForWorker: 30_000 }), exited])
    }
    if (supervised.includes(FUNCTIONS.driver)) {
      await Promise.race([client.invoke(FUNCTIONS.driver.name, { target: FUNCTIONS.callback.name, size: 1, concurrency: 1, warmupMs: 0, durationMs: 1 }, { waitForWorker: 30_000 }), exited])
    }
    const status = await client.status()
    // each function's process (a thread-hosted one's is the gateway's own)
    const workerPids = Object.fromEntries(status.functions.map(fn => [fn.name, fn.instances[0]?.pid ?? child.pid]))
    return {
      info: { url, socketUrl: socket === undefined ? undefined : `mqtt+unix://${socket}`, gatewayPid: child.pid, workerPids },
      async close () {
        child.kill('SIGTERM')
        await exited.catch(() => {})
      },
    }
  } finally {
    await client.close()
  }
}

/** The first `fnbus gateway listening on URL` line on stdout whose URL starts with `scheme`. */
async function listeningUrl (child, scheme) {
  for await (const line of createInterface({ input: child.stdout })) {
    const url = /listening on (\S+)/.exec(line)?.[1]
    if (url?.startsWith(scheme)) {
      child.stdout.resume()
      return url
    }
  }
  throw new Error('fnbus start ended its output without a listening line')
}

/**
 * Drives `target`'s calls from the driver function (`functions/driver.mjs`) on the gateway at `url`: each run is one
 * invocation of the driver, which runs the closed loop inside its own process or thread and answers its figures.
 */
export async function driverCaller ({ url, target }) {
  const fc = new FCClient({ url })
  await fc.ready()
  return {
    run: ({ size, concurrency, warmupMs, durationMs }) => fc.invoke(FUNCTIONS.driver.name, { target, size, concurrency, warmupMs, durationMs },
      { timeout: warmupMs + durationMs + 30_000 }),
    close: () => fc.close(),
  }
}
