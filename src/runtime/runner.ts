import type { Writable } from 'node:stream'
import { isRuntimeLogLine } from '../log-settings.js'
import type { FunctionConfig } from '../config.js'
import type { WorkerHealth } from './worker-host.js'

/** How a supervised function's instances are isolated from the gateway and from each other. */
export type Isolation = 'process' | 'thread'
export const ISOLATIONS: readonly Isolation[] = Object.freeze(['process', 'thread'])
/**
 * What a function gets when its entry does not say: a process, the strongest containment, and the behaviour
 * configurations written before threads existed were written for (docs/isolation.md).
 */
export const DEFAULT_ISOLATION: Isolation = 'process'

/** Messages from the supervisor to a runtime it started (a child's IPC channel, a thread's control port). */
export type SupervisorMessage = { readonly t: 'ping' } | { readonly t: 'stop' }
export type RuntimeMessage =
  | { readonly t: 'ready' }
  /** The function could not start (its module did not load); the runtime ends next. */
  | { readonly t: 'failed', readonly reason: string }
  | ({ readonly t: 'health' } & WorkerHealth)

/** The function a supervisor runs: the parts of a `functions[]` entry it needs, with a module. */
export type SupervisedFunction = Pick<FunctionConfig, 'service' | 'function' | 'name' | 'instances' | 'concurrency' | 'env' | 'memoryLimitMb'> & {
  readonly module: string
  /** Default: DEFAULT_ISOLATION. */
  readonly isolation?: Isolation
  /** A thread function's host process (host-process.ts); undefined: the supervisor's own thread host. */
  readonly runtimeHost?: string
}

/** One run of one instance: everything a runner needs to start it. */
export interface RunSpec {
  readonly fn: SupervisedFunction
  /** `Service/function#n`. */
  readonly label: string
  /** The gateway's address. */
  readonly url: string
  /** The runtime's environment beyond the gateway's own (the function's `env`, its identity, FNBUS_*). */
  readonly env: Readonly<Record<string, string>>
  /** Where its output goes, line by line, prefixed with its label. */
  readonly output: Writable
}

/** How a run ended, for the log and the status: "exited with code 1", "threw: Error: boom", … */
export interface RunExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly how: string
}

/** What a run tells the instance it belongs to. */
export interface RunEvents {
  readonly message: (message: RuntimeMessage) => void
  /** The run misbehaved in a way the runner saw itself (a flooded control port): end it for `reason`. */
  readonly misbehaved: (reason: string) => void
  /** The runtime could not be started at all (ENOENT…); `exited` follows. */
  readonly error: (err: Error) => void
  readonly exited: (exit: RunExit) => void
}

/** One run of an instance: a process, or a thread; the supervisor's policy (supervisor.ts) sees only this. */
export interface Run {
  /** The process that hosts it (the gateway's own for a thread). */
  readonly pid: number | undefined
  /** A thread's id in its process; undefined for a process. */
  readonly threadId: number | undefined
  /** The channel to it is open: a ping may be sent. */
  readonly open: boolean
  send (message: SupervisorMessage): void
  /** Asks it to drain and end (SIGTERM for a process). */
  stop (): void
  /** Ends it now (SIGKILL, `worker.terminate()`). */
  kill (): void
}

/** Starts runs of one isolation. */
export interface Runner {
  readonly isolation: Isolation
  start (spec: RunSpec, events: RunEvents): Run
  /** Its instances all stopped: let go of what it holds (a host process). */
  close? (): void
}

/**
 * Copies `source` to `target` line by line, each line prefixed; a last line without newline is flushed at the end.
 * The runtime's own JSON log entries pass as they are: they name their function and instance, and a prefix would
 * break them for log collectors. Everything the function itself writes is prefixed.
 */
export function relayLines (source: NodeJS.ReadableStream | null, target: Writable, prefix: string): void {
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
