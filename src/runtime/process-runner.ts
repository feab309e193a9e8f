import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { relayLines, type Run, type RunEvents, type Runner, type RunSpec, type RuntimeMessage, type SupervisorMessage } from './runner.js'

const BIN = fileURLToPath(new URL('../../bin/fnbus.js', import.meta.url))

export interface ProcessRunnerOptions {
  /** The command that runs one instance; `args` get `run MODULE --service … --function …` appended. */
  readonly runtime?: { readonly command: string, readonly args: readonly string[] }
}

/** Runs each instance as a child process, `fnbus run MODULE`, talking over its IPC channel. */
export class ProcessRunner implements Runner {
  readonly isolation = 'process'
  readonly #runtime: { readonly command: string, readonly args: readonly string[] }

  constructor (options: ProcessRunnerOptions = {}) {
    this.#runtime = options.runtime ?? { command: process.execPath, args: [BIN] }
  }

  start (spec: RunSpec, events: RunEvents): Run {
    const { fn } = spec
    const runtime = this.#runtime
    const nodeFlags = fn.memoryLimitMb === undefined || runtime.command !== process.execPath
      ? []
      // the heap limit ends a runaway heap between two heartbeats; RSS polling covers what lies outside the heap
      : [`--max-old-space-size=${fn.memoryLimitMb}`]
    const args = [
      ...nodeFlags, ...runtime.args,
      'run', fn.module, '--service', fn.service, '--function', fn.function,
      '--concurrency', String(fn.concurrency), '--url', spec.url,
    ]
    const child = spawn(runtime.command, args, {
      env: { ...process.env, ...spec.env },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // its own process group: a Ctrl-C in the gateway's terminal reaches the supervisor only, which stops the
      // instances itself, in order (they drain while the gateway still runs); the IPC channel ends them if the
      // gateway dies
      detached: true,
    })
    relayLines(child.stdout, spec.output, `[${spec.label}] `)
    relayLines(child.stderr, spec.output, `[${spec.label}] `)
    child.on('message', message => events.message(message as RuntimeMessage))
    // a spawn failure (ENOENT…) is followed by 'close'; only report it here
    child.on('error', err => events.error(err))
    child.once('close', (code, signal) => {
      events.exited({ code, signal, how: signal !== null ? `was killed by ${signal}` : `exited with code ${code ?? '?'}` })
    })
    return {
      pid: child.pid,
      threadId: undefined,
      get open () { return child.connected },
      // a send that fails means the channel closed under us: the process is exiting, and 'close' will tell
      send: (message: SupervisorMessage) => { if (child.connected) child.send(message, () => {}) },
      stop: () => { child.kill('SIGTERM') },
      kill: () => { child.kill('SIGKILL') },
    }
  }
}
