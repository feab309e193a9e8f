import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { Readable, Writable } from 'node:stream'
import type { FunctionConfig } from '../config.js'
import { isRuntimeLogLine } from '../log-settings.js'
import type { Logger } from '../logger.js'
import type { IssuedCredentials } from '../security/authenticate.js'
import type { WorkerHealth } from './worker-host.js'

/** Messages between the supervisor and a runtime it started (the child's IPC channel). */
export type SupervisorMessage = { readonly t: 'ping' }
export type RuntimeMessage =
  | { readonly t: 'ready' }
  /** The function could not start (its module did not load); the process exits next. */
  | { readonly t: 'failed', readonly reason: string }
  | ({ readonly t: 'health' } & WorkerHealth)

/** The function a supervisor runs: the parts of a `functions[]` entry it needs, with a module. */
export type SupervisedFunction = Pick<FunctionConfig, 'service' | 'function' | 'name' | 'instances' | 'concurrency' | 'env' | 'memoryLimitMb'> & {
  readonly module: string
}

export interface SupervisorOptions {
  /** The gateway's address, given to every instance as `--url` and `FNBUS_URL`. */
  readonly url: string
  /** Where instances' output goes, each line prefixed `[Service/function#n] `. Default: process.stderr. */
  readonly output?: Writable
  /** Where the supervisor's own announcements go (starts, exits, restarts). Default: lines on `output`. */
  readonly log?: (message: string) => void
  /**
   * Where the announcements go as structured entries instead (wins over `log`): the message, plus `instance`
   * (`Service/function#n`) and what applies of `childPid`, `code`, `signal`, `delayMs`, `reason`.
   */
  readonly logger?: Logger
  /** Added to every instance's environment, beneath the function's own `env` (`FNBUS_LOG_LEVEL`, `FNBUS_CA`, …). */
  readonly env?: Readonly<Record<string, string>>
  /** First restart delay after a crash; it doubles on each crash in a row, up to `maxRestartDelayMs`. */
  readonly restartDelayMs?: number
  readonly maxRestartDelayMs?: number
  /** An instance that ran this long without crashing starts again from `restartDelayMs`. */
  readonly stableAfterMs?: number
  /** How often a ready instance is asked for its health. */
  readonly heartbeatIntervalMs?: number
  /** A ready instance that answered no heartbeat for this long is killed and restarted (its event loop is stuck). */
  readonly unresponsiveAfterMs?: number
  /** An instance whose last this-many invocations all overran their deadline is restarted. */
  readonly maxConsecutiveOverruns?: number
  /** How long a stopped instance may drain after SIGTERM before SIGKILL. */
  readonly stopGraceMs?: number
  /** The command that runs one instance; `args` get `run MODULE --service … --function …` appended. */
  readonly runtime?: { readonly command: string, readonly args: readonly string[] }
  /**
   * Issues credentials for an identity (the gateway's `issueCredentials`). Each process an instance starts gets
   * its own, as the identity of its function (`Service/function`), in `FNBUS_USERNAME` and `FNBUS_PASSWORD`;
   * they are revoked when the process exits. Without it instances connect as whatever their environment says.
   */
  readonly credentials?: (identity: string) => IssuedCredentials
}

export const SUPERVISOR_DEFAULTS = Object.freeze({
  restartDelayMs: 500,
  maxRestartDelayMs: 30_000,
  stableAfterMs: 30_000,
  heartbeatIntervalMs: 1000,
  unresponsiveAfterMs: 5000,
  maxConsecutiveOverruns: 3,
  stopGraceMs: 10_000,
})

type ResolvedOptions = Required<Omit<SupervisorOptions, 'log' | 'logger' | 'runtime' | 'credentials' | 'env'>> & Pick<SupervisorOptions, 'log' | 'logger' | 'runtime' | 'credentials' | 'env'>

const BIN = fileURLToPath(new URL('../../bin/fnbus.js', import.meta.url))
const MIB = 1024 * 1024

export interface InstanceInfo {
  readonly label: string
  readonly pid: number | undefined
  readonly ready: boolean
  readonly restarts: number
  /** Why its last process ended or failed to start, while it is not ready. */
  readonly lastFailure?: string
  /** Resident memory of its process at its last heartbeat, bytes. */
  readonly rssBytes?: number
}

/**
 * Runs each supervised function's instances as child processes (`fnbus run`), restarts those that crash, hang or
 * outgrow their memory limit, and relays their output line by line, prefixed with the function and instance.
 *
 * Events: `ready` (label, pid), `exit` (label, code, signal), `restart` (label, reason, delayMs), `firstLoadFailed`
 * (label, reason): an instance's first process could not load its module (a mistake to report, not to retry).
 */
export class Supervisor extends EventEmitter {
  readonly #options: ResolvedOptions
  readonly #instances: Instance[] = []
  #stopping: Promise<void> | undefined

  constructor (functions: readonly SupervisedFunction[], options: SupervisorOptions) {
    super()
    this.#options = { ...SUPERVISOR_DEFAULTS, output: process.stderr, ...options }
    for (const fn of functions) {
      for (let n = 1; n <= fn.instances; n++) this.#instances.push(new Instance(this, fn, n))
    }
  }

  /** Starts every instance; it does not wait for them to be ready (listen for `ready`). */
  start (): void {
    for (const instance of this.#instances) instance.start()
  }

  /** Stops every instance (SIGTERM, then SIGKILL after `stopGraceMs`) and stops restarting them. */
  stop (): Promise<void> {
    this.#stopping ??= Promise.all(this.#instances.map(i => i.stop())).then(() => {})
    return this.#stopping
  }

  /**
   * Replaces the processes of `name`'s instances with new ones (after its module changed): each drains, then starts
   * again at once. Resolves with how many instances it restarts; 0 when the supervisor runs no such function.
   */
  restart (name: string): number {
    const instances = this.#instances.filter(instance => instance.functionName === name)
    for (const instance of instances) instance.restart()
    return instances.length
  }

  /** The functions it supervises, by name, with their module files. */
  functions (): ReadonlyMap<string, string> {
    return new Map(this.#instances.map(instance => [instance.functionName, instance.module]))
  }

  /** Ends every instance at once (SIGKILL): for a second Ctrl-C. */
  kill (): void {
    for (const instance of this.#instances) instance.kill()
  }

  get stopping (): boolean {
    return this.#stopping !== undefined
  }

  instances (): InstanceInfo[] {
    return this.#instances.map(i => i.info())
  }

  /** @internal */
  get options (): ResolvedOptions {
    return this.#options
  }

  /** @internal */
  announce (level: 'info' | 'warn' | 'error', message: string, fields: Readonly<Record<string, unknown>>): void {
    if (this.#options.logger !== undefined) this.#options.logger[level](fields, message)
    else if (this.#options.log !== undefined) this.#options.log(message)
    else this.#options.output.write(`fnbus: ${message}\n`)
  }
}

/** One instance slot of a function: it outlives the processes it runs, one after another. */
class Instance {
  readonly label: string
  readonly #supervisor: Supervisor
  readonly #fn: SupervisedFunction
  readonly #index: number
  #child: ChildProcess | undefined
  /** The credentials of the current process, revoked when it exits. */
  #credentials: IssuedCredentials | undefined
  #ready = false
  #restarts = 0
  #crashesInARow = 0
  /** Why the last process failed to start or ended, until one is ready again. */
  #lastFailure: string | undefined
  /** A process of this instance was ready once: later failures are restarts, not a mistake in the configuration. */
  #everReady = false
  /** The current process sent why it failed. */
  #saidWhy = false
  /** The current process's resident memory, as its last heartbeat said. */
  #rssBytes: number | undefined
  /** The current process is being replaced on request (restart): its exit is no crash. */
  #replacing = false
  /** Monotonic (performance.now()): a wall clock set forward must not make an instance look silent or stable. */
  #startedAt = 0
  #lastHeard = 0
  #restartTimer: NodeJS.Timeout | undefined
  #heartbeat: NodeJS.Timeout | undefined
  /** Why the supervisor itself ended the current process, if it did. */
  #killReason: string | undefined
  #stopped = false
  #exited: Promise<void> = Promise.resolve()

  constructor (supervisor: Supervisor, fn: SupervisedFunction, index: number) {
    this.#supervisor = supervisor
    this.#fn = fn
    this.#index = index
    this.label = `${fn.name}#${index}`
  }

  get functionName (): string {
    return this.#fn.name
  }

  get module (): string {
    return this.#fn.module
  }

  info (): InstanceInfo {
    const info: InstanceInfo = this.#rssBytes === undefined
      ? { label: this.label, pid: this.#child?.pid, ready: this.#ready, restarts: this.#restarts }
      : { label: this.label, pid: this.#child?.pid, ready: this.#ready, restarts: this.#restarts, rssBytes: this.#rssBytes }
    return this.#ready || this.#lastFailure === undefined ? info : { ...info, lastFailure: this.#lastFailure }
  }

  start (): void {
    if (this.#stopped) return
    const options = this.#supervisor.options
    const fn = this.#fn
    const runtime = options.runtime ?? { command: process.execPath, args: [BIN] }
    const nodeFlags = fn.memoryLimitMb === undefined || runtime.command !== process.execPath
      ? []
      // the heap limit ends a runaway heap between two heartbeats; RSS polling covers what lies outside the heap
      : [`--max-old-space-size=${fn.memoryLimitMb}`]
    const args = [
      ...nodeFlags, ...runtime.args,
      'run', fn.module, '--service', fn.service, '--function', fn.function,
      '--concurrency', String(fn.concurrency), '--url', options.url,
    ]
    const credentials = options.credentials?.(fn.name)
    this.#credentials = credentials
    const identityEnv = credentials === undefined ? {} : { FNBUS_USERNAME: credentials.username, FNBUS_PASSWORD: credentials.password }
    const child = spawn(runtime.command, args, {
      env: {
        ...process.env, ...options.env, ...fn.env,
        FNBUS_URL: options.url, FNBUS_FUNCTION: fn.name, FNBUS_INSTANCE: String(this.#index), ...identityEnv,
      },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // its own process group: a Ctrl-C in the gateway's terminal reaches the supervisor only, which stops the
      // instances itself, in order (they drain while the gateway still runs); the IPC channel ends them if the
      // gateway dies
      detached: true,
    })
    this.#child = child
    this.#ready = false
    this.#saidWhy = false
    this.#killReason = undefined
    this.#startedAt = performance.now()
    relayLines(child.stdout, options.output, `[${this.label}] `)
    relayLines(child.stderr, options.output, `[${this.label}] `)
    child.on('message', message => this.#onMessage(message as RuntimeMessage))
    // a spawn failure (ENOENT…) is followed by 'close'; only report it here
    child.on('error', err => this.#supervisor.announce('error', `${this.label} could not be started: ${err.message}`, { instance: this.label, err }))
    this.#exited = new Promise(resolve => {
      child.once('close', (code, signal) => {
        this.#onExit(code, signal)
        resolve()
      })
    })
    this.#supervisor.announce('info', `${this.label} started (pid ${child.pid ?? '?'}): ${fn.module}`, { instance: this.label, childPid: child.pid, module: fn.module })
  }

  #onMessage (message: RuntimeMessage): void {
    this.#lastHeard = performance.now()
    if (message.t === 'failed') {
      this.#lastFailure = message.reason
      this.#saidWhy = true
      if (!this.#everReady && this.#restarts === 0) this.#supervisor.emit('firstLoadFailed', this.label, message.reason)
      return
    }
    if (message.t === 'ready') {
      this.#ready = true
      this.#everReady = true
      this.#lastFailure = undefined
      this.#startHeartbeat()
      this.#supervisor.emit('ready', this.label, this.#child?.pid)
      return
    }
    if (message.t === 'health') this.#checkHealth(message)
  }

  #startHeartbeat (): void {
    const options = this.#supervisor.options
    clearInterval(this.#heartbeat)
    this.#heartbeat = setInterval(() => {
      const child = this.#child
      if (child === undefined || !child.connected || this.#killReason !== undefined) return
      const silentFor = Math.round(performance.now() - this.#lastHeard)
      if (silentFor > options.unresponsiveAfterMs) {
        this.#end(`stopped answering (no heartbeat for ${silentFor} ms)`, 'SIGKILL')
        return
      }
      // a send that fails means the channel closed under us: the process is exiting, and 'close' will tell
      child.send({ t: 'ping' } satisfies SupervisorMessage, () => {})
    }, options.heartbeatIntervalMs)
    this.#heartbeat.unref()
  }

  #checkHealth (health: WorkerHealth): void {
    this.#rssBytes = health.rssBytes
    const options = this.#supervisor.options
    const limit = this.#fn.memoryLimitMb
    if (limit !== undefined && health.rssBytes > limit * MIB) {
      this.#end(`uses ${Math.round(health.rssBytes / MIB)} MB, over its memoryLimitMb of ${limit}`, 'SIGTERM')
    } else if (health.consecutiveOverruns >= options.maxConsecutiveOverruns) {
      this.#end(`stopped answering (its last ${health.consecutiveOverruns} invocations overran their deadline)`, 'SIGKILL')
    }
  }

  /** Ends the current process for `reason`; its exit then restarts it like a crash. */
  #end (reason: string, signal: NodeJS.Signals): void {
    const child = this.#child
    if (child === undefined || this.#killReason !== undefined) return
    this.#killReason = reason
    this.#supervisor.announce('warn', `${this.label} ${reason}; restarting it`, { instance: this.label, childPid: child.pid, reason })
    child.kill(signal)
    if (signal !== 'SIGKILL') {
      const timer = setTimeout(() => child.kill('SIGKILL'), this.#supervisor.options.stopGraceMs)
      timer.unref()
      child.once('close', () => clearTimeout(timer))
    }
  }

  #onExit (code: number | null, signal: NodeJS.Signals | null): void {
    // a secret outlives no process: the next one gets its own
    this.#credentials?.revoke()
    this.#credentials = undefined
    clearInterval(this.#heartbeat)
    this.#heartbeat = undefined
    this.#child = undefined
    this.#ready = false
    this.#rssBytes = undefined
    this.#supervisor.emit('exit', this.label, code, signal)
    const how = signal !== null ? `was killed by ${signal}` : `exited with code ${code ?? '?'}`
    const exit = { instance: this.label, code, signal }
    if (this.#stopped) {
      this.#supervisor.announce('info', `${this.label} stopped (${how.replace(/^was /, '')})`, exit)
      return
    }
    if (this.#replacing) {
      // asked for (a new version of its module): at once, and no crash
      this.#replacing = false
      this.#restarts++
      this.#crashesInARow = 0
      this.#supervisor.announce('info', `${this.label} stopped (${how.replace(/^was /, '')}); starting it again`, exit)
      this.start()
      return
    }
    const options = this.#supervisor.options
    if (performance.now() - this.#startedAt >= options.stableAfterMs) this.#crashesInARow = 0
    const delay = Math.min(options.restartDelayMs * 2 ** this.#crashesInARow, options.maxRestartDelayMs)
    this.#crashesInARow++
    this.#restarts++
    const reason = this.#killReason ?? how
    // a process that said why it failed (its module did not load) keeps that reason over its exit status
    if (!this.#saidWhy) this.#lastFailure = reason
    if (this.#killReason === undefined) this.#supervisor.announce('warn', `${this.label} ${how}; restarting in ${delay} ms`, { ...exit, delayMs: delay })
    else this.#supervisor.announce('warn', `${this.label} ended (${how.replace(/^was /, '')}); restarting in ${delay} ms`, { ...exit, delayMs: delay, reason })
    this.#supervisor.emit('restart', this.label, reason, delay)
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined
      this.start()
    }, delay)
  }

  /**
   * Replaces the running process with a new one (its module read again): the old one drains as on a stop (SIGTERM,
   * then SIGKILL after stopGraceMs), and the new one starts as it exits. An instance waiting to restart starts now.
   */
  restart (): void {
    if (this.#stopped) return
    const child = this.#child
    if (child === undefined) {
      clearTimeout(this.#restartTimer)
      this.#restartTimer = undefined
      this.#crashesInARow = 0
      this.start()
      return
    }
    if (this.#replacing) return
    this.#replacing = true
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), this.#supervisor.options.stopGraceMs)
    timer.unref()
    child.once('close', () => clearTimeout(timer))
  }

  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#restartTimer)
    const child = this.#child
    if (child === undefined) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => {
      this.#supervisor.announce('warn', `${this.label} did not stop within ${this.#supervisor.options.stopGraceMs} ms; killing it`, { instance: this.label, childPid: child.pid })
      child.kill('SIGKILL')
    }, this.#supervisor.options.stopGraceMs)
    await this.#exited
    clearTimeout(timer)
  }

  kill (): void {
    this.#stopped = true
    clearTimeout(this.#restartTimer)
    this.#child?.kill('SIGKILL')
  }
}

/**
 * Copies `source` to `target` line by line, each line prefixed; a last line without newline is flushed at the end.
 * The runtime's own JSON log entries pass as they are: they name their function and instance, and a prefix would
 * break them for log collectors. Everything the function itself writes is prefixed.
 */
function relayLines (source: Readable | null, target: Writable, prefix: string): void {
  if (source === null) return
  source.setEncoding('utf8')
  let partial = ''
  source.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n')
    partial = lines.pop() ?? ''
    if (lines.length > 0) target.write(lines.map(line => (isRuntimeLogLine(line) ? line : prefix + line) + '\n').join(''))
  })
  source.on('end', () => {
    if (partial !== '') target.write(prefix + partial + '\n')
    partial = ''
  })
}
