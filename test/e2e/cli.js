// Helpers for end-to-end tests: the `fnbus` command run as a user runs it, a real process each time.
// (Not a test file; node --test loads it and finds no tests.)
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect, createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { portOf } from '../helpers.js'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const BIN = fileURLToPath(new URL('../../bin/fnbus.js', import.meta.url))
export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url))

/** A loopback port free right now (Mosquitto holds 1883 on the development machine). */
export async function freePort () {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = portOf(server)
  await new Promise(resolve => server.close(() => resolve(undefined)))
  return port
}

/**
 * Spawns `fnbus ARGS…` and collects its output. The process is killed after the test if still running.
 * `env` adds to (and overrides) the test's environment; FNBUS_URL is removed unless given, so a stray one never
 * points a test at the machine's Mosquitto.
 * @param {import('node:test').TestContext} t
 * @param {string[]} args
 * @param {{ env?: Record<string, string | undefined>, cwd?: string, input?: string | Buffer }} [options]
 */
export function spawnCli (t, args, { env = {}, cwd = ROOT, input } = {}) {
  const childEnv = { ...process.env }
  delete childEnv.FNBUS_URL
  Object.assign(childEnv, env)
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] })
  const out = { stdout: Buffer.alloc(0), stderr: '' }
  child.stdout.on('data', chunk => { out.stdout = Buffer.concat([out.stdout, chunk]) })
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', chunk => { out.stderr += chunk })
  if (input !== undefined) child.stdin.end(input)
  else child.stdin.end()
  const exited = new Promise(resolve => child.once('close', (code, signal) => resolve({ code, signal })))
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  return {
    child,
    exited,
    get stdout () { return out.stdout.toString('utf8') },
    get stdoutBytes () { return out.stdout },
    get stderr () { return out.stderr },
    /** Resolves once `pattern` appears in stderr (or stdout with `{ stream: 'stdout' }`); returns the match. */
    async waitFor (pattern, { stream = 'stderr', timeoutMs = 10_000 } = {}) {
      const until = Date.now() + timeoutMs
      for (;;) {
        const text = stream === 'stderr' ? out.stderr : out.stdout.toString('utf8')
        const match = typeof pattern === 'string' ? (text.includes(pattern) ? [pattern] : null) : pattern.exec(text)
        if (match !== null) return match
        if (child.exitCode !== null || child.signalCode !== null || Date.now() > until) {
          throw new Error(`${pattern} did not appear in ${stream} of fnbus ${args.join(' ')}\n--- stdout:\n${out.stdout}\n--- stderr:\n${out.stderr}`)
        }
        await new Promise(resolve => setTimeout(resolve, 20))
      }
    },
  }
}

/** Runs a one-shot command to its end: `{ code, stdout, stderr, stdoutBytes }`. */
export async function runCli (t, args, options) {
  const run = spawnCli(t, args, options)
  const { code, signal } = await run.exited
  return { code, signal, stdout: run.stdout, stdoutBytes: run.stdoutBytes, stderr: run.stderr }
}

/**
 * `fnbus start --port <free> ARGS…` (add `--memory` or `--data` yourself), resolved once it prints its address.
 * Returns the running process with `url` and `env` (FNBUS_URL for commands aimed at it).
 */
export async function startCli (t, args = [], options = {}) {
  const port = await freePort()
  const gateway = spawnCli(t, ['start', '--port', String(port), ...args], options)
  const [, url] = await gateway.waitFor(/fnbus gateway listening on (\S+)\n/, { stream: 'stdout' })
  return Object.assign(gateway, { port, url, env: { FNBUS_URL: url } })
}

/** Sends SIGTERM and resolves with the exit. */
export async function terminate (run, signal = 'SIGTERM') {
  run.child.kill(signal)
  return await run.exited
}

/**
 * Resolves once something accepts connections on `port` of 127.0.0.1; throws with `log()` when `died()` or 10 s passed.
 * @param {number} port
 * @param {() => boolean} died
 * @param {() => string} log
 * @param {string} what names it in the error
 */
export async function waitForPort (port, died, log, what) {
  const until = Date.now() + 10_000
  for (;;) {
    const up = await new Promise(resolve => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (up) return
    if (died() || Date.now() > until) throw new Error(`${what} did not start on ${port}:\n${log()}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}
