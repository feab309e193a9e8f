// Supervised thread (and process) functions on a test's gateway, as `fnbus start` runs them: a Supervisor whose
// threads reach the gateway through a ThreadHost, with the restart policy's timings shortened for tests.
import { PassThrough } from 'node:stream'
import { Supervisor } from '../dist/runtime/supervisor.js'
import { ThreadHost } from '../dist/runtime/thread-host.js'
/** @typedef {import('../dist/runtime/runner.js').SupervisedFunction} SupervisedFunction */

export const FAST = { restartDelayMs: 100, heartbeatIntervalMs: 100, unresponsiveAfterMs: 1500, stopGraceMs: 3000 }

/**
 * A supervisor of `functions` on `gw`; started, every instance ready, stopped after the test. `output()`: what the
 * supervisor and the functions wrote so far.
 * @param {import('node:test').TestContext} t
 * @param {readonly SupervisedFunction[]} functions
 * @param {Record<string, unknown>} [options]
 */
export async function supervise (t, gw, functions, options = {}) {
  const output = new PassThrough()
  let text = ''
  output.on('data', chunk => { text += chunk })
  const supervisor = new Supervisor(functions, {
    url: gw.url,
    output,
    credentials: identity => gw.issueCredentials(identity),
    threads: new ThreadHost({ connect: stream => gw.bus.handle(stream) }),
    ...FAST,
    ...options,
  })
  gw.attachInstances(supervisor)
  t.after(() => supervisor.stop())
  let ready = 0
  /** @type {Promise<void>} */
  const allReady = new Promise(resolve => supervisor.on('ready', () => { if (++ready === functions.length) resolve() }))
  supervisor.start()
  await allReady
  return { supervisor, output: () => text }
}
