// The link to a bridge's remote broker: a connection (remote-client.ts) per attempt, backoff with jitter between
// attempts, and what went wrong kept for status, log and metrics. A connection never resends or reconnects on its
// own: what is sent again after a reconnection is decided by the bridge's queue alone, in its order.
import { RemoteClient, type LinkFailure, type RemoteClientEvents, type RemoteClientOptions, type RemoteConnection, type RemoteMessage } from './remote-client.js'

export type { LinkFailure } from './remote-client.js'

/** A connection the link can start: the real one, or a test's stand-in. */
export type StartableConnection = RemoteConnection & { start: () => void }

export interface LinkOptions {
  readonly url: string
  readonly client: RemoteClientOptions
  /** First pause after a failure; each failure doubles it up to maxDelayMs. */
  readonly minDelayMs: number
  readonly maxDelayMs: number
  /** A connection that lasted less than this before it dropped counts as dropped at once (a client id taken elsewhere). */
  readonly stableMs: number
  readonly random?: () => number
  /** Tests: makes each attempt's connection. */
  readonly connect?: (url: string, options: RemoteClientOptions, events: RemoteClientEvents) => StartableConnection
  readonly onUp: (connection: RemoteConnection) => void
  readonly onDown: (failure: LinkFailure, detail: string) => void
  /** A message from the remote broker; `done` once handled. */
  readonly onMessage: (message: RemoteMessage, done: () => void) => void
}

const SHORT_DROPS_REPORTED = 3

function connectRemote (url: string, options: RemoteClientOptions, events: RemoteClientEvents): StartableConnection {
  return new RemoteClient(url, options, events)
}

export class RemoteLink {
  readonly #options: LinkOptions
  #connection: StartableConnection | undefined
  #timer: NodeJS.Timeout | undefined
  #delayMs: number
  #closed = false
  #upSince = 0
  #shortDrops = 0
  /** Attempts that failed since the start, and connections made. */
  failures = 0
  connects = 0
  state: 'connecting' | 'connected' | 'waiting' | 'closed' = 'waiting'
  lastFailure: LinkFailure | undefined
  lastError: string | undefined
  lastConnectedAt: number | undefined

  constructor (options: LinkOptions) {
    this.#options = options
    this.#delayMs = options.minDelayMs
  }

  get connected (): boolean {
    return this.state === 'connected'
  }

  /** The pause before the next attempt, ms (status shows it). */
  get nextDelayMs (): number {
    return this.#delayMs
  }

  start (): void {
    if (this.#closed) return
    this.state = 'connecting'
    const options = this.#options
    // its events come once it is started, below: `connection` is set by then
    const current = (): boolean => this.#connection === connection
    const connection: StartableConnection = (options.connect ?? connectRemote)(options.url, options.client, {
      connected: () => {
        if (!current()) return
        this.state = 'connected'
        this.connects++
        this.#upSince = performance.now()
        this.lastConnectedAt = Date.now()
        options.onUp(connection)
      },
      closed: (failure, detail) => {
        if (!current()) return
        this.#connection = undefined
        if (this.#closed) return
        if (this.state === 'connected') {
          const short = performance.now() - this.#upSince < options.stableMs
          this.#shortDrops = short ? this.#shortDrops + 1 : 0
          if (!short) this.#delayMs = options.minDelayMs
          if (this.#shortDrops >= SHORT_DROPS_REPORTED && failure === 'dropped') {
            this.#failed('keeps_dropping', `the connection dropped ${this.#shortDrops} times in a row within ${options.stableMs} ms of connecting (is the client id in use elsewhere?)`)
            return
          }
        }
        this.#failed(failure, detail)
      },
      message: (message, done) => {
        if (current()) options.onMessage(message, done)
        else done()
      },
    })
    this.#connection = connection
    connection.start()
  }

  #failed (kind: LinkFailure, detail: string): void {
    this.failures++
    this.lastFailure = kind
    this.lastError = detail
    this.state = 'waiting'
    this.#options.onDown(kind, detail)
    if (this.#closed) return
    // full jitter over the upper half: links of many gateways that lost the same broker do not come back in step
    const delay = Math.round(this.#delayMs * (0.5 + 0.5 * (this.#options.random ?? Math.random)()))
    this.#delayMs = Math.min(this.#delayMs * 2, this.#options.maxDelayMs)
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.start()
    }, delay)
  }

  /** Closes the connection for good: what is in flight stays in the bridge's queue. */
  async close (): Promise<void> {
    this.#closed = true
    this.state = 'closed'
    clearTimeout(this.#timer)
    const connection = this.#connection
    this.#connection = undefined
    await connection?.end()
  }
}
