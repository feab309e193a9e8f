// Free loopback ports for the processes a workload starts, and waiting until one of them listens.
import { connect, createServer } from 'node:net'

export async function freePort () {
  const server = createServer().listen(0, '127.0.0.1')
  await new Promise(resolve => server.once('listening', resolve))
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address())
  await new Promise(resolve => server.close(resolve))
  return port
}

/**
 * Resolves once something accepts connections on `port`; throws when `proc` exited first or 15 s passed.
 * @param {number} port
 * @param {{ exitCode: number | null }} proc
 * @param {string} what names it in the error
 */
export async function waitForPort (port, proc, what) {
  const until = Date.now() + 15_000
  for (;;) {
    const up = await new Promise(resolve => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (up) return
    if (proc.exitCode !== null || Date.now() > until) throw new Error(`${what} did not start on ${port}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}
