// What the scripts share: free ports, sleeping, and a gateway process started the way an operator starts one.
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const root = fileURLToPath(new URL('..', import.meta.url))
export const cli = join(root, 'bin', 'fnbus.js')

/** @param {number} ms */
export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

export async function freePort () {
  const server = createServer()
  await new Promise(resolve => server.listen(0, '127.0.0.1', () => resolve(undefined)))
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address())
  await new Promise(resolve => server.close(resolve))
  return port
}

/**
 * `fnbus start` on `port` with `dataDir` and `config`; resolves once it listens, with the child and its exit.
 * @param {{ port: number, dataDir: string, config: string, onStderr?: (line: string) => void }} options
 */
export async function startGatewayProcess ({ port, dataDir, config, onStderr = () => {} }) {
  const child = spawn(process.execPath, [cli, 'start', '--port', String(port), '--data', dataDir, '--config', config],
    { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', chunk => { out += chunk })
  child.stderr.on('data', chunk => onStderr(String(chunk).trim()))
  const exited = new Promise(resolve => child.once('exit', resolve))
  for (const until = Date.now() + 15_000; !out.includes('listening'); await sleep(10)) {
    if (child.exitCode !== null || Date.now() > until) throw new Error(`the gateway did not start: ${out}`)
  }
  return { child, exited }
}
