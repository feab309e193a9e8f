// The orchestrator's side of the process protocol. Every broker, worker and caller runs in a forked child
// (lib/child.js) that loads one role from roles/ and answers requests over the IPC channel:
//
//   parent → child  { id, op: 'start', args: { module, role, opts } }   → the role's `info`
//                   { id, op: 'call',  args: { method, args } }          → what the method resolved with
//                   { id, op: 'memory' }                                 → process.memoryUsage() after a GC
//                   { id, op: 'stop' }                                   → the role closed; the child exits
//   child → parent  { id, ok: true, value } | { id, ok: false, error: { message, stack, code } }
//
// No child may outlive the run: each is killed when the orchestrator exits for any reason, and a child whose
// IPC channel closes (the orchestrator died without cleaning up) exits by itself.
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const childMain = fileURLToPath(new URL('./child.js', import.meta.url))
const live = new Set()

export class RoleProcess {
  #child
  #pending = new Map()
  #nextId = 0
  #exit

  constructor (child, name) {
    this.#child = child
    this.name = name
    this.info = {}
    this.#exit = new Promise(resolve => {
      child.once('exit', (code, signal) => {
        live.delete(this)
        const error = new Error(`${name} (pid ${child.pid}) exited with ${signal ?? `code ${code}`}`)
        for (const { reject } of this.#pending.values()) reject(error)
        this.#pending.clear()
        resolve()
      })
    })
    child.on('message', ({ id, ok, value, error }) => {
      const pending = this.#pending.get(id)
      if (pending === undefined) return
      this.#pending.delete(id)
      if (ok) pending.resolve(value)
      else pending.reject(Object.assign(new Error(`${name}: ${error.message}`), { code: error.code, remoteStack: error.stack }))
    })
    // a child that dies while the parent writes to it must not crash the parent: the exit handler reports it
    child.on('error', () => {})
  }

  get pid () { return this.#child.pid }
  get exited () { return this.#child.exitCode !== null || this.#child.signalCode !== null }

  /** Sends one request; a child that does not answer within `timeoutMs` is killed, so no run hangs. */
  request (op, args, timeoutMs) {
    if (this.exited) return Promise.reject(new Error(`${this.name} is not running`))
    const id = ++this.#nextId
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        this.kill()
        reject(new Error(`${this.name}: no answer to ${op}${args?.method ? ` ${args.method}` : ''} within ${timeoutMs} ms; killed it`))
      }, timeoutMs)
      this.#pending.set(id, {
        resolve: value => { clearTimeout(timer); resolve(value) },
        reject: err => { clearTimeout(timer); reject(err) },
      })
      this.#child.send({ id, op, args })
    })
  }

  /** Calls a method of the role. */
  call (method, args = {}, { timeoutMs = 60_000 } = {}) {
    return this.request('call', { method, args }, timeoutMs)
  }

  /** process.memoryUsage() of the child, after a full GC when it runs with --expose-gc. */
  memory () {
    return this.request('memory', {}, 30_000)
  }

  /** Closes the role and waits for the process to exit; SIGKILL when it does not within the grace. */
  async stop ({ graceMs = 10_000 } = {}) {
    if (this.exited) return
    await this.request('stop', {}, graceMs).catch(() => this.kill())
    const timer = setTimeout(() => this.kill(), 3_000)
    await this.#exit
    clearTimeout(timer)
  }

  kill () {
    if (!this.exited) this.#child.kill('SIGKILL')
  }
}

/**
 * Forks a child running `roles/<module>.js`'s export `role(opts)` and resolves once it is ready, with the handle.
 * `execArgv` adds Node flags (--expose-gc, --cpu-prof).
 */
export async function startRole (module, role, opts = {}, { execArgv = [], timeoutMs = 60_000 } = {}) {
  const child = fork(childMain, [`${module}:${role}`], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // Buffers and typed arrays cross the channel as they are
    serialization: 'advanced',
    execArgv,
  })
  const proc = new RoleProcess(child, `${module}:${role}`)
  live.add(proc)
  try {
    proc.info = await proc.request('start', { module, role, opts }, timeoutMs)
  } catch (err) {
    proc.kill()
    throw err
  }
  return proc
}

/**
 * The processes one workload starts: `close()` stops them all (in reverse order: callers before workers before
 * brokers), whether the workload finished or failed.
 */
export class ProcessGroup {
  #procs = []

  async start (module, role, opts, options) {
    const proc = await startRole(module, role, opts, options)
    this.#procs.push(proc)
    return proc
  }

  async close () {
    const procs = this.#procs.reverse()
    this.#procs = []
    for (const proc of procs) await proc.stop()
  }
}

/** Kills every child still running: the last resort on exit, a signal or a crash of the orchestrator. */
export function killAll () {
  for (const proc of live) proc.kill()
}

process.on('exit', killAll)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    killAll()
    process.stderr.write(`\nbench: ${signal}; stopped every benchmark process\n`)
    process.exit(130)
  })
}
