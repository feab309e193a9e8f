import { EventEmitter } from 'node:events'
import type { Writable } from 'node:stream'
import { invalidArgument } from '../errors.js'
import type { Logger } from '../logger.js'
import type { IssuedCredentials } from '../security/authenticate.js'
import { HostProcessRunner } from './host-process.js'
import { ProcessRunner } from './process-runner.js'
import { DEFAULT_ISOLATION, type Isolation, type Run, type RunExit, type Runner, type RuntimeMessage, type SupervisedFunction } from './runner.js'
import type { WorkerHealth } from './worker-host.js'

export type { RuntimeMessage, SupervisorMessage, SupervisedFunction, Isolation } from './runner.js'

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
  /** The command that runs one process instance; `args` get `run MODULE --service … --function …` appended. */
  readonly runtime?: { readonly command: string, readonly args: readonly string[] }
  /**
   * What runs the instances of `"thread"` functions (a ThreadHost: thread-host.ts). Required when one is
   * configured: only the program that embeds the gateway knows how a thread's connections reach it.
   */
  readonly threads?: Runner
  /**
   * Issues credentials for an identity (the gateway's `issueCredentials`). Each process an instance starts gets
   * its own, as the identity of its function (`Service/function`), in `FNBUS_USERNAME` and `FNBUS_PASSWORD`;
   * they are revoked when the process (or thread) ends. Without it instances connect as whatever their environment says.
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

type OptionalKeys = 'log' | 'logger' | 'runtime' | 'credentials' | 'env' | 'threads'
type ResolvedOptions = Required<Omit<SupervisorOptions, OptionalKeys>> & Pick<SupervisorOptions, OptionalKeys>

const MIB = 1024 * 1024

export interface InstanceInfo {
  readonly label: string
  readonly isolation: Isolation
  /** The process that hosts it: its own, or for a thread the gateway's (the thread host's). */
  readonly pid: number | undefined
  /** A thread's host process when it is not the gateway's: its `runtimeHost`. */
  readonly host?: string
  /** A thread's id within its host process, while it runs. */
  readonly threadId?: number
  readonly ready: boolean
  readonly restarts: number
  /** Why its last process or thread ended or failed to start, while it is not ready. */
  readonly lastFailure?: string
  /** Resident memory of its process at its last heartbeat, bytes (processes only: a thread shares its host's). */
  readonly rssBytes?: number
  /** Its V8 heap at its last heartbeat, bytes: used, and the most it may grow to. */
  readonly heapUsedBytes?: number
  readonly heapLimitBytes?: number
}

/**
 * Runs each supervised function's instances, as child processes (`fnbus run`) or as threads of a thread host
 * (`isolation`), restarts those that crash, hang or outgrow their memory limit — one policy for both — and relays
 * their output line by line, prefixed with the function and instance.
 *
 * Events: `ready` (label, pid), `exit` (label, code, signal), `restart` (label, reason, delayMs), `firstLoadFailed`
 * (label, reason): an instance's first process could not load its module (a mistake to report, not to retry).
 */
export class Supervisor extends EventEmitter {
  readonly #options: ResolvedOptions
  readonly #instances: Instance[] = []
  /** The host processes of thread functions that name one (`runtimeHost`), by name. */
  readonly #hosts = new Map<string, HostProcessRunner>()
  #stopping: Promise<void> | undefined

  constructor (functions: readonly SupervisedFunction[], options: SupervisorOptions) {
    super()
    this.#options = { ...SUPERVISOR_DEFAULTS, output: process.stderr, ...options }
    const runners: Record<Isolation, Runner | undefined> = { process: new ProcessRunner({ runtime: options.runtime }), thread: options.threads }
    for (const fn of functions) {
      const isolation = fn.isolation ?? DEFAULT_ISOLATION
      const host = isolation === 'thread' ? fn.runtimeHost : undefined
      if (host !== undefined && !this.#hosts.has(host)) this.#hosts.set(host, new HostProcessRunner(host))
      const runner = host === undefined ? runners[isolation] : this.#hosts.get(host)
      if (runner === undefined) throw invalidArgument(`${fn.name}: isolation "${isolation}" needs a thread host (the supervisor's threads option)`)
      for (let n = 1; n <= fn.instances; n++) this.#instances.push(new Instance(this, fn, n, runner))
    }
  }

  /** Starts every instance; it does not wait for them to be ready (listen for `ready`). */
  start (): void {
    for (const instance of this.#instances) instance.start()
  }

  /** Stops every instance (SIGTERM, then SIGKILL after `stopGraceMs`) and stops restarting them. */
  stop (): Promise<void> {
    this.#stopping ??= Promise.all(this.#instances.map(i => i.stop())).then(() => {
      for (const host of this.#hosts.values()) host.close()
    })
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

/**
 * One instance slot of a function: it outlives the runs (processes or threads) it starts one after another, and
 * holds the policy they share: restart with backoff, the heartbeat, the memory limit, what the status says.
 */
class Instance {
  readonly label: string
  readonly #supervisor: Supervisor
  readonly #fn: SupervisedFunction
  readonly #index: number
  readonly #runner: Runner
  #run: Run | undefined
  /** The credentials of the current run, revoked when it ends. */
  #credentials: IssuedCredentials | undefined
  #ready = false
  #restarts = 0
  #crashesInARow = 0
  /** Why the last run failed to start or ended, until one is ready again. */
  #lastFailure: string | undefined
  /** A run of this instance was ready once: later failures are restarts, not a mistake in the configuration. */
  #everReady = false
  /** The current run sent why it failed. */
  #saidWhy = false
  /** The current run's last heartbeat. */
  #health: WorkerHealth | undefined
  /** The current run is being replaced on request (restart): its end is no crash. */
  #replacing = false
  /** Monotonic (performance.now()): a wall clock set forward must not make an instance look silent or stable. */
  #startedAt = 0
  #lastHeard = 0
  #restartTimer: NodeJS.Timeout | undefined
  #heartbeat: NodeJS.Timeout | undefined
  /** Ends the current run at once when it did not drain within stopGraceMs. */
  #graceTimer: NodeJS.Timeout | undefined
  /** Why the supervisor itself ended the current run, if it did. */
  #killReason: string | undefined
  #stopped = false
  #exited: Promise<void> = Promise.resolve()
  #onExited: () => void = () => {}

  constructor (supervisor: Supervisor, fn: SupervisedFunction, index: number, runner: Runner) {
    this.#supervisor = supervisor
    this.#fn = fn
    this.#index = index
    this.#runner = runner
    this.label = `${fn.name}#${index}`
  }

  get functionName (): string {
    return this.#fn.name
  }

  get module (): string {
    return this.#fn.module
  }

  info (): InstanceInfo {
    const run = this.#run
    const health = this.#health
    const info: { -readonly [K in keyof InstanceInfo]: InstanceInfo[K] } = {
      label: this.label, isolation: this.#runner.isolation, pid: run?.pid, ready: this.#ready, restarts: this.#restarts,
    }
    if (run?.threadId !== undefined) info.threadId = run.threadId
    if (this.#fn.runtimeHost !== undefined && this.#runner.isolation === 'thread') info.host = this.#fn.runtimeHost
    if (health !== undefined) {
      // a thread's resident memory is its host's, all threads together: not its own to show
      if (this.#runner.isolation === 'process') info.rssBytes = health.rssBytes
      if (health.heapUsedBytes !== undefined) info.heapUsedBytes = health.heapUsedBytes
      if (health.heapLimitBytes !== undefined) info.heapLimitBytes = health.heapLimitBytes
    }
    if (!this.#ready && this.#lastFailure !== undefined) info.lastFailure = this.#lastFailure
    return info
  }

  start (): void {
    if (this.#stopped) return
    const options = this.#supervisor.options
    const fn = this.#fn
    const credentials = options.credentials?.(fn.name)
    this.#credentials = credentials
    const identityEnv: Record<string, string> = credentials === undefined ? {} : { FNBUS_USERNAME: credentials.username, FNBUS_PASSWORD: credentials.password }
    this.#ready = false
    this.#saidWhy = false
    this.#killReason = undefined
    this.#health = undefined
    this.#startedAt = performance.now()
    this.#exited = new Promise(resolve => { this.#onExited = resolve })
    const run = this.#runner.start({
      fn,
      label: this.label,
      url: options.url,
      env: { ...options.env, ...fn.env, FNBUS_URL: options.url, FNBUS_FUNCTION: fn.name, FNBUS_INSTANCE: String(this.#index), ...identityEnv },
      output: options.output,
    }, {
      message: message => this.#onMessage(message),
      misbehaved: reason => this.#end(reason, true),
      error: err => this.#supervisor.announce('error', `${this.label} could not be started: ${err.message}`, { instance: this.label, err }),
      exited: exit => {
        this.#onExit(exit)
        this.#onExited()
      },
    })
    this.#run = run
    const where = run.threadId === undefined ? `pid ${run.pid ?? '?'}` : `thread ${run.threadId} of pid ${run.pid ?? '?'}`
    this.#supervisor.announce('info', `${this.label} started (${where}): ${fn.module}`, {
      instance: this.label, childPid: run.pid, ...(run.threadId === undefined ? {} : { threadId: run.threadId }), module: fn.module,
    })
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
      this.#supervisor.emit('ready', this.label, this.#run?.pid)
      return
    }
    if (message.t === 'health') this.#checkHealth(message)
  }

  #startHeartbeat (): void {
    const options = this.#supervisor.options
    clearInterval(this.#heartbeat)
    this.#heartbeat = setInterval(() => {
      const run = this.#run
      if (run === undefined || !run.open || this.#killReason !== undefined) return
      const silentFor = Math.round(performance.now() - this.#lastHeard)
      if (silentFor > options.unresponsiveAfterMs) {
        this.#end(`stopped answering (no heartbeat for ${silentFor} ms)`, true)
        return
      }
      run.send({ t: 'ping' })
    }, options.heartbeatIntervalMs)
    this.#heartbeat.unref()
  }

  #checkHealth (health: WorkerHealth): void {
    this.#health = health
    const options = this.#supervisor.options
    const limit = this.#fn.memoryLimitMb
    // a thread's heap is bounded by V8 itself (resourceLimits); its host's resident memory is not its own
    if (limit !== undefined && this.#runner.isolation === 'process' && health.rssBytes > limit * MIB) {
      this.#end(`uses ${Math.round(health.rssBytes / MIB)} MB, over its memoryLimitMb of ${limit}`, false)
    } else if (health.consecutiveOverruns >= options.maxConsecutiveOverruns) {
      this.#end(`stopped answering (its last ${health.consecutiveOverruns} invocations overran their deadline)`, true)
    }
  }

  /** Ends the current run for `reason` (`now`, or after a drain of at most stopGraceMs); its end restarts it like a crash. */
  #end (reason: string, now: boolean): void {
    const run = this.#run
    if (run === undefined || this.#killReason !== undefined) return
    this.#killReason = reason
    this.#supervisor.announce('warn', `${this.label} ${reason}; restarting it`, { instance: this.label, childPid: run.pid, reason })
    if (now) run.kill()
    else this.#drain(run)
  }

  /** Asks `run` to drain and end; ends it at once if it has not within stopGraceMs. */
  #drain (run: Run, onTimeout?: () => void): void {
    run.stop()
    clearTimeout(this.#graceTimer)
    this.#graceTimer = setTimeout(() => {
      onTimeout?.()
      run.kill()
    }, this.#supervisor.options.stopGraceMs)
    this.#graceTimer.unref()
  }

  #onExit ({ code, signal, how }: RunExit): void {
    // a secret outlives no run: the next one gets its own
    this.#credentials?.revoke()
    this.#credentials = undefined
    clearInterval(this.#heartbeat)
    this.#heartbeat = undefined
    clearTimeout(this.#graceTimer)
    this.#graceTimer = undefined
    this.#run = undefined
    this.#ready = false
    this.#health = undefined
    this.#supervisor.emit('exit', this.label, code, signal)
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
    // a run that said why it failed (its module did not load) keeps that reason over how it ended
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
   * Replaces the running process or thread with a new one (its module read again): the old one drains as on a stop,
   * and the new one starts as it ends. An instance waiting to restart starts now.
   */
  restart (): void {
    if (this.#stopped) return
    const run = this.#run
    if (run === undefined) {
      clearTimeout(this.#restartTimer)
      this.#restartTimer = undefined
      this.#crashesInARow = 0
      this.start()
      return
    }
    if (this.#replacing) return
    this.#replacing = true
    this.#drain(run)
  }

  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#restartTimer)
    const run = this.#run
    if (run === undefined) return
    this.#drain(run, () => {
      this.#supervisor.announce('warn', `${this.label} did not stop within ${this.#supervisor.options.stopGraceMs} ms; killing it`, { instance: this.label, childPid: run.pid })
    })
    await this.#exited
  }

  kill (): void {
    this.#stopped = true
    clearTimeout(this.#restartTimer)
    this.#run?.kill()
  }
}
