import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { relayLines, type Run, type RunEvents, type RunExit, type Runner, type RunSpec, type RuntimeMessage, type SupervisorMessage } from './runner.js'

const HOST_MAIN = fileURLToPath(new URL('./host-main.js', import.meta.url))

/** What the supervisor tells a host process of one run (host-main.ts reads it). */
export type ToHost =
  | { readonly t: 'start', readonly id: number, readonly spec: Omit<RunSpec, 'output'> }
  | { readonly t: 'send', readonly id: number, readonly message: SupervisorMessage }
  | { readonly t: 'stop' | 'kill', readonly id: number }
/** What a host process tells of its runs. */
export type FromHost =
  | { readonly t: 'started', readonly id: number, readonly threadId: number }
  | { readonly t: 'message', readonly id: number, readonly message: RuntimeMessage }
  | { readonly t: 'misbehaved', readonly id: number, readonly reason: string }
  | { readonly t: 'exited', readonly id: number, readonly exit: RunExit }

interface HostedRun {
  readonly events: RunEvents
  threadId: number | undefined
  exited: boolean
}

/**
 * Runs thread functions in a host process of their own (`runtimeHost` in their `functions[]` entries), not in the
 * gateway's: the functions that name the same host share it, each a thread with its own heap, and reach the gateway
 * over its socket as a process function does. The host is started with its first run and again after it died; a
 * thread that crashes ends alone, as in the gateway's own host, while a crash of the host process itself (a native
 * addon's) ends its threads and no other function. The supervisor's policy sees each thread as any other run.
 */
export class HostProcessRunner implements Runner {
  readonly isolation = 'thread'
  readonly #name: string
  #child: ChildProcess | undefined
  #runs = new Map<number, HostedRun>()
  #nextId = 1

  constructor (name: string) {
    this.#name = name
  }

  start (spec: RunSpec, events: RunEvents): Run {
    const child = this.#host(spec)
    const id = this.#nextId++
    const hosted: HostedRun = { events, threadId: undefined, exited: false }
    this.#runs.set(id, hosted)
    const { output: _output, ...portable } = spec
    const send = (message: ToHost): void => {
      if (!hosted.exited && child.connected) child.send(message, () => {})
    }
    send({ t: 'start', id, spec: portable })
    return {
      pid: child.pid,
      get threadId () { return hosted.threadId },
      get open () { return !hosted.exited && child.connected },
      send: message => send({ t: 'send', id, message }),
      stop: () => send({ t: 'stop', id }),
      kill: () => send({ t: 'kill', id }),
    }
  }

  /** The host has no more to run: it ends (the supervisor stopped its instances first). */
  close (): void {
    this.#child?.disconnect()
  }

  /** The host process, started if there is none (or the last one died). */
  #host (spec: RunSpec): ChildProcess {
    if (this.#child !== undefined) return this.#child
    const child = spawn(process.execPath, [HOST_MAIN, this.#name], {
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // as a process function's: a Ctrl-C reaches the supervisor, which stops the threads in order
      detached: true,
    })
    this.#child = child
    // each thread's lines come prefixed with its label already (the host's own ThreadHost relays them)
    relayLines(child.stdout, spec.output, '')
    relayLines(child.stderr, spec.output, `[host ${this.#name}] `)
    child.on('message', (message: FromHost) => this.#fromHost(message))
    child.on('error', err => {
      for (const run of this.#runs.values()) run.events.error(err)
    })
    child.once('close', (code, signal) => {
      this.#child = undefined
      const how = `its host process "${this.#name}" ${signal !== null ? `was killed by ${signal}` : `exited with code ${code ?? '?'}`}`
      const runs = [...this.#runs.values()]
      this.#runs = new Map()
      for (const run of runs) this.#exited(run, { code, signal, how })
    })
    return child
  }

  #fromHost (message: FromHost): void {
    const run = this.#runs.get(message?.id)
    if (run === undefined) return
    switch (message.t) {
      case 'started': run.threadId = message.threadId; break
      case 'message': run.events.message(message.message); break
      case 'misbehaved': run.events.misbehaved(message.reason); break
      case 'exited':
        this.#runs.delete(message.id)
        this.#exited(run, message.exit)
        break
    }
  }

  #exited (run: HostedRun, exit: RunExit): void {
    if (run.exited) return
    run.exited = true
    run.events.exited(exit)
  }
}
