import type { Duplex } from 'node:stream'
import { MessageChannel, MessagePort, Worker, type ResourceLimits } from 'node:worker_threads'
import { THREAD_DATA_KEY, type ThreadData } from '../client/thread-link.js'
import { createPortDuplex } from '../util/port-duplex.js'
import { relayLines, type Run, type RunEvents, type Runner, type RunSpec, type RuntimeMessage, type SupervisorMessage } from './runner.js'

// thread-main.ts and all it imports, bundled into one module at build time (scripts/build-runtime.js): each module a
// thread loads costs it memory and start time
const THREAD_MAIN = new URL('../thread.js', import.meta.url)

/** Under this key of `workerData`: the function a thread runs (thread-main.ts reads it). */
export const THREAD_RUN_KEY = 'fnbus:run'
export interface ThreadRunData {
  readonly module: string
  readonly service: string
  readonly function: string
  readonly concurrency: number
}

export interface ThreadHostOptions {
  /**
   * Hands one connection of a thread's client to the gateway, as a listener hands it a socket (`bus.handle`):
   * authentication, policy, limits, the frame guard and the sessions apply to it unchanged. The only thing the
   * host needs of the gateway: a host in another process would pass each stream on to the gateway's socket instead.
   */
  readonly connect: (stream: Duplex) => void
  /** Connections one thread may hold open (its FCClients); one more is closed at once. Default 64. */
  readonly maxLinksPerThread?: number
  /** Messages a thread may post on its control port per second; past it the thread is ended. Default 1000. */
  readonly maxControlMessagesPerSecond?: number
}

/**
 * A thread function's heap bound, from its `memoryLimitMb`: the whole V8 heap stays within it, the young
 * generation (where short-lived objects start) taking an eighth of it, between 2 and 16 MB. Without a limit, only
 * the young generation is bounded, to 2 MB: V8's default (up to 48 MB on 64-bit) grows each thread's resident
 * memory by tens of MB. Measured with 10 sample threads through `fnbus start` (gateway included): 449 MB resident
 * with V8's default, 218–220 MB at 4 MB, 200–202 MB at 2 MB; a thread echo's rate (64 in flight, from a process)
 * was the same at 2 and 4 MB within this machine's noise (120–136k calls/s either way). A function that allocates
 * much sets `memoryLimitMb`, and gets a larger young generation with it. The stack keeps Node's 4 MB.
 */
export function threadResourceLimits (memoryLimitMb: number | undefined): ResourceLimits {
  if (memoryLimitMb === undefined) return { maxYoungGenerationSizeMb: 2 }
  const young = Math.min(16, Math.max(2, Math.floor(memoryLimitMb / 8)))
  return { maxOldGenerationSizeMb: Math.max(memoryLimitMb - young, 8), maxYoungGenerationSizeMb: young }
}

/**
 * Runs supervised functions as `node:worker_threads` Workers of this process: each a V8 isolate with its own heap
 * and event loop (~8 MB where a process costs ~85 MB). A thread reaches the gateway through its control port: each
 * of its clients asks for a connection there, handed a MessagePort whose other end becomes a byte stream the
 * gateway takes as a socket (`connect`). It holds no other reference to the gateway.
 */
export class ThreadHost implements Runner {
  readonly isolation = 'thread'
  readonly #connect: (stream: Duplex) => void
  readonly #maxLinks: number
  readonly #maxControlMessages: number

  constructor (options: ThreadHostOptions) {
    this.#connect = options.connect
    this.#maxLinks = options.maxLinksPerThread ?? 64
    this.#maxControlMessages = options.maxControlMessagesPerSecond ?? 1000
  }

  start (spec: RunSpec, events: RunEvents): Run {
    const { port1: control, port2 } = new MessageChannel()
    const thread: ThreadData = { v: 1, control: port2, url: spec.url }
    const run: ThreadRunData = { module: spec.fn.module, service: spec.fn.service, function: spec.fn.function, concurrency: spec.fn.concurrency }
    const limits = threadResourceLimits(spec.fn.memoryLimitMb)
    const worker = new Worker(THREAD_MAIN, {
      workerData: { [THREAD_DATA_KEY]: thread, [THREAD_RUN_KEY]: run },
      transferList: [port2],
      // process.env is the thread's own copy: the function's env and identity, as a process would have them
      env: { ...process.env, ...spec.env },
      stdout: true,
      stderr: true,
      resourceLimits: limits,
    })
    relayLines(worker.stdout, spec.output, `[${spec.label}] `)
    relayLines(worker.stderr, spec.output, `[${spec.label}] `)
    const links = new Set<Duplex>()
    let failure: Error | undefined
    let terminated = false
    let exited = false
    let windowStart = performance.now()
    let windowCount = 0
    let flooded = false

    const onControl = (message: unknown): void => {
      if (flooded) return
      const now = performance.now()
      if (now - windowStart >= 1000) {
        windowStart = now
        windowCount = 0
      }
      if (++windowCount > this.#maxControlMessages) {
        flooded = true
        events.misbehaved(`flooded its control port (over ${this.#maxControlMessages} messages in a second)`)
        return
      }
      if (message === null || typeof message !== 'object') return
      const { t } = message as { t?: unknown }
      if (t === 'link') {
        this.#link((message as { port?: unknown }).port, links)
        return
      }
      // what the runtime says of itself (thread-main.ts); anything else is ignored, as the IPC channel ignores it
      if (t === 'ready' || t === 'failed' || t === 'health') events.message(message as RuntimeMessage)
    }
    control.on('message', onControl)
    worker.on('error', err => { failure = err })
    worker.once('exit', code => {
      exited = true
      control.close()
      // its ports closed with it; a link whose stream has not seen that yet goes now
      for (const link of links) link.destroy()
      events.exited({ code, signal: null, how: describeExit(code, failure, terminated, spec.fn.memoryLimitMb) })
    })
    return {
      pid: process.pid,
      threadId: worker.threadId,
      get open () { return !exited && !flooded },
      send: (message: SupervisorMessage) => { if (!exited) control.postMessage(message) },
      stop: () => { if (!exited) control.postMessage({ t: 'stop' } satisfies SupervisorMessage) },
      kill: () => {
        if (exited) return
        terminated = true
        // stops even a loop that never yields; the exit event follows
        worker.terminate().catch(() => {})
      },
    }
  }

  /** A client of the thread asks for a connection: `port` becomes a stream handed to the gateway. */
  #link (port: unknown, links: Set<Duplex>): void {
    if (!(port instanceof MessagePort)) return
    if (links.size >= this.#maxLinks) {
      port.close()
      return
    }
    const stream = createPortDuplex(port)
    links.add(stream)
    stream.once('close', () => links.delete(stream))
    this.#connect(stream)
  }
}

function describeExit (code: number, failure: Error | undefined, terminated: boolean, memoryLimitMb: number | undefined): string {
  if (terminated) return 'was terminated'
  const errorCode = (failure as { code?: unknown } | undefined)?.code
  if (errorCode === 'ERR_WORKER_OUT_OF_MEMORY') {
    return `ran out of heap${memoryLimitMb === undefined ? '' : ` (over its memoryLimitMb of ${memoryLimitMb})`}`
  }
  if (failure !== undefined) return `threw ${failure.name}: ${failure.message}`.slice(0, 1000)
  return `exited with code ${code}`
}
