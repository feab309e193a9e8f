// The stored (Async) work of one function on one gateway of a cluster: what it pulls from the function's durable
// JetStream consumer, for its own workers only (each gateway with a worker pulls for itself, so whichever has room
// delivers), handed to its dispatcher as the lane of a standalone gateway is; and each outcome settled in JetStream:
// acknowledged (done), redelivered after a backoff (nak with a delay), or dead-lettered.
import type { Consumer, JsMsg } from '@nats-io/jetstream'
import type { Dispatcher, Outcome, Work, WorkSource, CallerPort } from '../dispatcher/index.js'
import { retryDelay, type AsyncFunctionOptions } from '../dispatcher/async-options.js'
import { describePayload, messageOf, type Destinations } from '../dispatcher/destinations.js'
import { storedWork } from '../dispatcher/lane.js'
import type { Logger } from '../logger.js'
import type { GatewayEvents } from '../observations.js'
import type { FunctionAddress } from '../protocol/index.js'
import { decodeRecord, deadRecord, toDeadInvocation, toInvocation, type InvocationRecord } from '../store/records.js'
import type { InvocationError, StoredInvocation } from '../store/types.js'
import type { Clock } from '../util/clock.js'
import { Fifo } from '../util/fifo.js'

/** Invocations one lane pulls ahead of its workers at most, whatever their concurrency. */
const MAX_PULL = 256
/** How long one pull request waits at the server for work, ms. */
const PULL_EXPIRES_MS = 5000
/** The server's heartbeat on a waiting pull request, ms: three missed end it. */
const PULL_HEARTBEAT_MS = 1000

/** What a lane uses of the cluster's Async service. */
export interface ClusterLaneHost {
  readonly dispatcher: Dispatcher
  readonly destinations: Destinations
  readonly logger: Logger
  readonly events: GatewayEvents | undefined
  readonly clock: Clock
  /** The gateway shuts down: an interrupted invocation goes back to JetStream for another gateway. */
  readonly closed: boolean
  options (fn: string): AsyncFunctionOptions
  /** The function's durable consumer, made if need be. */
  consumer (fn: string): Promise<Consumer>
  /** Writes a dead letter (at most once per invocation: its seq names it). */
  publishDead (fn: string, record: InvocationRecord): Promise<void>
  /** The invocation id of the waiting message at `seq`. */
  idOf (seq: number): string
  /** The lane let go. */
  dropLane (fn: string, lane: ClusterLane): void
}

export class ClusterLane implements WorkSource {
  readonly localOnly = true
  readonly #fn: FunctionAddress
  readonly #host: ClusterLaneHost
  readonly #buffer = new Fifo<JsMsg>()
  #buffered = 0
  /** Ids of the invocations running here (cancel refuses them). */
  readonly #running = new Set<string>()
  #pulling = false
  #stopped = false
  #failedAt = -Infinity

  constructor (fn: FunctionAddress, host: ClusterLaneHost) {
    this.#fn = fn
    this.#host = host
  }

  get waiting (): boolean {
    return this.#buffered > 0
  }

  get inFlight (): number {
    return this.#running.size
  }

  isRunning (id: string): boolean {
    return this.#running.has(id)
  }

  /** Pulls while this gateway's workers have room. */
  start (): void {
    if (this.#stopped) return
    void this.#pull()
  }

  #room (): number {
    const concurrency = Math.min(this.#host.dispatcher.localConcurrency(this.#fn.name), MAX_PULL)
    return concurrency - this.#buffered - this.#running.size
  }

  async #pull (): Promise<void> {
    if (this.#pulling || this.#stopped) return
    this.#pulling = true
    try {
      for (let room = this.#room(); room > 0 && !this.#stopped; room = this.#room()) {
        const consumer = await this.#host.consumer(this.#fn.name)
        // A pull request that reaches a server while the consumer has no leader (it was just made, or its server
        // went) is never answered: without heartbeats this gateway would wait on it for ever and pull nothing more
        // (seen here: one gateway of two took every invocation). The heartbeats end such a pull within 3 s.
        const batch = await consumer.fetch({ max_messages: room, expires: PULL_EXPIRES_MS, idle_heartbeat: PULL_HEARTBEAT_MS })
        for await (const msg of batch) {
          if (this.#stopped) {
            // let another gateway have it at once
            this.#tell(msg, 'nak')
            continue
          }
          this.#buffer.push(msg)
          this.#buffered++
          this.#host.dispatcher.poke(this.#fn.name)
        }
      }
    } catch (err) {
      const now = this.#host.clock.now()
      // one line a minute: JetStream away (a partition) fails every pull until it is back
      if (now - this.#failedAt > 60_000) this.#host.logger.warn({ err, fn: this.#fn.name }, 'cluster: pulling stored invocations failed; retrying')
      this.#failedAt = now
      this.#pulling = false
      if (!this.#stopped) setTimeout(() => { void this.#pull() }, 1000).unref()
      return
    }
    this.#pulling = false
  }

  next (): Work | undefined {
    if (this.#stopped) return undefined
    const options = this.#host.options(this.#fn.name)
    for (;;) {
      const msg = this.#buffer.shift()
      if (msg === undefined) {
        void this.#pull()
        return undefined
      }
      this.#buffered--
      let invocation: StoredInvocation
      try {
        invocation = this.#invocationOf(msg)
      } catch (err) {
        // not an invocation fnbus wrote: it can never run; ended rather than redelivered for ever
        this.#host.logger.error({ err, fn: this.#fn.name, seq: msg.seq }, 'cluster: a stored message that is not an invocation was dropped')
        this.#tell(msg, 'term')
        continue
      }
      if (this.#host.clock.epoch() - invocation.createdAt > options.maxEventAgeMs) {
        this.#deadLetter(msg, invocation, { code: 'FNBUS_TIMEOUT', message: 'older than maxEventAge before it could be delivered' }, false)
        continue
      }
      // its ack_wait starts again now: it may have waited behind Sync calls in this gateway's queue
      this.#tell(msg, 'working')
      this.#running.add(invocation.id)
      void this.#pull()
      return storedWork(this.#fn, invocation, new JetStreamCaller(this, msg, invocation))
    }
  }

  #invocationOf (msg: JsMsg): StoredInvocation {
    const record = decodeRecord(Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength))
    // the id and seq are JetStream's; the attempts are its deliveries before this one
    return toInvocation({ ...record, id: this.#host.idOf(msg.seq), seq: msg.seq, n: msg.info.deliveryCount - 1 })
  }

  /** The outcome of one delivery: acknowledged, delivered again after a backoff, or dead-lettered. */
  settle (msg: JsMsg, invocation: StoredInvocation, outcome: Outcome): void {
    this.#running.delete(invocation.id)
    void this.#pull()
    // the gateway's own shutdown: another gateway (or this one, restarted) delivers it
    if (!outcome.ok && outcome.error.code === 'FNBUS_SHUTTING_DOWN' && this.#host.closed) {
      this.#tell(msg, 'nak')
      return
    }
    if (outcome.ok && outcome.functionError === undefined) {
      this.#tell(msg, 'ack')
      this.#host.destinations.announce(this.#fn.name, 'onSuccess', invocation, () => ({ statusCode: 200, ...describePayload(outcome.payload) }))
      return
    }
    const error: InvocationError = outcome.ok
      ? { code: 'FNBUS_FUNCTION_ERROR', message: `${outcome.functionError as string}: ${messageOf(outcome.payload)}` }
      : { code: outcome.error.code, message: outcome.error.message }
    const options = this.#host.options(this.#fn.name)
    const attempts = invocation.attempts + 1
    if (attempts > options.maxRetries || this.#host.clock.epoch() - invocation.createdAt > options.maxEventAgeMs) {
      this.#deadLetter(msg, invocation, error, true)
      return
    }
    // a lost worker says nothing about the invocation: try again at once (the attempt still counts)
    const delay = error.code === 'FNBUS_WORKER_LOST' ? 0 : retryDelay(options.retryDelayMs, attempts)
    this.#tell(msg, 'nak', delay)
    this.#host.logger.info({ requestId: invocation.id, fn: this.#fn.name, attempt: attempts, delayMs: delay, error },
      `attempt ${attempts} of ${this.#fn.name} failed (${error.code}); retrying in ${delay} ms`)
    const events = this.#host.events
    if (events?.observed('retry') === true) events.emit('retry', { requestId: invocation.id, function: this.#fn.name, attempt: attempts, delayMs: delay, error })
  }

  #deadLetter (msg: JsMsg, invocation: StoredInvocation, error: InvocationError, countAttempt: boolean): void {
    const record = deadRecord(invocation, error, this.#host.clock.epoch(), countAttempt)
    this.#host.publishDead(this.#fn.name, record).then(() => {
      // written first, acknowledged after: a gateway dying between the two writes the dead letter again (kept once)
      this.#tell(msg, 'ack')
      this.#host.destinations.reportDead(this.#fn.name, invocation, toDeadInvocation(record), error)
    }, (err: unknown) => {
      this.#host.logger.error({ err, requestId: invocation.id, fn: this.#fn.name }, 'cluster: a dead letter could not be written; the invocation will be delivered again')
      this.#tell(msg, 'nak', 1000)
    }).catch((err: unknown) => {
      this.#host.logger.error({ err, requestId: invocation.id }, 'cluster: unexpected error after writing a dead letter')
    })
  }

  /**
   * Tells JetStream what became of a message. These publish on the connection, which throws once it is closed (the
   * gateway closing, or NATS gone for good): the message is then JetStream's to deliver again after its ack_wait,
   * and nothing may throw into the dispatcher that settled the call.
   */
  #tell (msg: JsMsg, what: 'ack' | 'nak' | 'term' | 'working', delay?: number): void {
    try {
      if (what === 'nak') msg.nak(delay)
      else msg[what]()
    } catch (err) {
      this.#host.logger.debug({ err, fn: this.#fn.name, seq: msg.seq, what }, 'cluster: JetStream could not be told of a delivery; it delivers it again after its ack_wait')
    }
  }

  /** The function has no worker left here: what was pulled goes back at once, for the other gateways. */
  release (): boolean {
    if (this.#running.size > 0) return false
    this.stop()
    this.#host.dropLane(this.#fn.name, this)
    return true
  }

  stop (): void {
    this.#stopped = true
    for (let msg = this.#buffer.shift(); msg !== undefined; msg = this.#buffer.shift()) this.#tell(msg, 'nak')
    this.#buffered = 0
  }
}

/** The caller of a stored invocation: its outcome goes back to JetStream. */
class JetStreamCaller implements CallerPort {
  readonly alive = true

  constructor (readonly lane: ClusterLane, readonly msg: JsMsg, readonly invocation: StoredInvocation) {}

  settle (outcome: Outcome): void {
    this.lane.settle(this.msg, this.invocation, outcome)
  }
}
