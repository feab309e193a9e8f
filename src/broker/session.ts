import type { Client as AedesClient } from 'aedes'
import type { Duplex } from 'node:stream'
import { FnbusError } from '../errors.js'
import { failure, type CallerPort, type Delivery, type Dispatcher, type LeaseLink, type Outcome, type QueueOwner, type WorkerPort } from '../dispatcher/index.js'
import { EnvelopeBatcher, inboxTopic, PROTOCOL_VERSION, type Envelope, type FunctionAddress } from '../protocol/index.js'
import type { Logger } from '../logger.js'
import { writeFrame } from './outbound.js'
import { identityOf } from '../security/identity.js'
import { threadSide } from '../protocol/lease.js'
import { sideChannelOf } from '../util/port-duplex.js'

/** How large a batch of envelopes to one client grows before it leaves within the tick. */
const OUTBOX_BYTES = 256 * 1024

export interface SessionOptions {
  readonly maxPayloadBytes: number
  /** Bytes written to the connection and not yet taken by the peer, past which it is cut (limits.maxBufferedBytesPerClient). */
  readonly maxBufferedBytes: number
  readonly dispatcher: Dispatcher
  /** The name the policy and the rate limit know the connection by. */
  readonly subject: string
  readonly logger: Logger
  /** A bound was reached (for the `limitReached` observation). */
  readonly onLimit: (limit: string, session: Session) => void
}

/**
 * The bus side of one MQTT connection. It is both a caller (answers go to its inbox) and a worker (work goes to
 * its inbox), and lives exactly as long as the connection: a reconnect with the same client id is a new session.
 *
 * What the gateway writes to a connection waits in the socket's buffer until the peer reads it. A peer that stops
 * reading must not make the gateway hold its answers without end: from half of `maxBufferedBytes` the session is
 * congested (it gets no new invocations, and its new calls are refused), past `maxBufferedBytes` it is cut.
 */
export class Session implements WorkerPort, QueueOwner {
  readonly label: string
  readonly registrations = new Map<string, FunctionAddress>()
  /** The name the policy and the rate limit know this connection by: its identity, or `$anonymous`. */
  readonly subject: string
  /** Calls this connection made that await their answer (bounded by limits.maxInFlightPerClient). */
  inFlight = 0
  /** Its calls waiting in functions' queues, and their payload bytes (the dispatcher keeps these). */
  queuedCalls = 0
  queuedBytes = 0
  alive = true
  /** Its unread output is over half its bound: no invocations go to it until the socket drains. */
  congested = false
  /**
   * A function thread's connection whose client said it knows the direct path: where leases are granted
   * (src/dispatcher/leases.ts).
   */
  leaseLink: LeaseLink | undefined = undefined
  readonly #client: AedesClient
  readonly #conn: Duplex
  readonly #outbox: EnvelopeBatcher
  readonly #options: SessionOptions
  readonly #congestedAt: number

  constructor (client: AedesClient, options: SessionOptions) {
    this.#client = client
    this.#conn = client.conn as Duplex
    this.label = client.id
    this.subject = options.subject
    this.#options = options
    this.#congestedAt = Math.floor(options.maxBufferedBytes / 2)
    this.#outbox = new EnvelopeBatcher(inboxTopic(client.id), frame => this.#write(frame), () => OUTBOX_BYTES)
    const side = sideChannelOf(this.#conn)
    side?.on('side', message => this.#fromThread(message, side))
  }

  /** What the thread says of its leases; anything else cuts the connection, as a malformed frame would. */
  #fromThread (message: object, side: LeaseLink): void {
    if (!this.alive) return
    const known = threadSide(message)
    if (known?.t === 'lease-ready') {
      this.leaseLink = side
      return
    }
    if (known !== undefined && this.#options.dispatcher.fromThread(this, known)) return
    this.#options.logger.warn({ client: this.label }, 'connection closed: its thread sent a side message it may not send')
    this.alive = false
    this.#conn.destroy()
  }

  /** The identity the connection authenticated as; undefined when anonymous. */
  get identity (): string | undefined {
    return identityOf(this.#client)
  }

  /** Bytes written to the connection that the peer has not taken yet. */
  get buffered (): number {
    return this.#conn.writableLength
  }

  /**
   * Queues `env` for the connection. Never throws: an envelope that cannot be encoded is logged and, when it
   * answers a request, replaced by a coded error (the caller's call must not wait out its deadline).
   */
  send (env: Envelope): void {
    if (!this.alive) return
    try {
      this.#outbox.add(env)
    } catch (err) {
      this.#unencodable(env, err)
    }
  }

  #unencodable (env: Envelope, err: unknown): void {
    this.#options.logger.error({ err, client: this.label, envelope: env.t }, 'a bus envelope could not be encoded')
    if (env.t === 'error' || env.id === 0) return
    try {
      this.#outbox.add({ v: PROTOCOL_VERSION, t: 'error', id: env.id, code: 'FNBUS_BAD_MESSAGE', msg: `the gateway could not encode its ${env.t}: ${(err as Error).message}` })
    } catch (again) {
      this.#options.logger.error({ err: again, client: this.label }, 'an error envelope could not be encoded')
    }
  }

  /** Sends what the tick has batched so far, now (before the connection is closed). */
  flush (): void {
    if (this.alive) this.#outbox.flush()
  }

  #write (frame: Buffer): void {
    const conn = this.#conn
    if (!writeFrame(conn, frame)) return
    const buffered = conn.writableLength
    if (buffered <= this.#congestedAt) return
    if (buffered > this.#options.maxBufferedBytes) {
      this.#options.logger.warn({ client: this.label, buffered, limit: this.#options.maxBufferedBytes },
        'connection cut: it does not read what the gateway writes to it (limits.maxBufferedBytesPerClient)')
      this.#options.onLimit('maxBufferedBytesPerClient', this)
      this.alive = false
      this.#outbox.clear()
      conn.destroy()
      return
    }
    if (!this.congested) {
      this.congested = true
      conn.once('drain', this.#drained)
    }
  }

  readonly #drained = (): void => {
    this.congested = false
    if (this.alive) this.#options.dispatcher.workerReady(this)
  }

  deliver (delivery: Delivery): void {
    // Only here does an in-process caller's payload meet the wire, so only here is it encoded and measured.
    let size: number
    try {
      size = delivery.payload.byteLength
    } catch (err) {
      this.#refuse(delivery, { ok: false, error: err as FnbusError })
      return
    }
    if (size > this.#options.maxPayloadBytes) {
      this.#refuse(delivery, failure('FNBUS_PAYLOAD_TOO_LARGE', `payload of ${size} bytes exceeds limits.maxPayloadBytes (${this.#options.maxPayloadBytes})`))
      return
    }
    if (!this.alive) return // the dispatcher hears of the lost connection from its close event
    try {
      // literal envelopes on the hot path: one object of a fixed shape, no spread
      this.#outbox.add({
        v: PROTOCOL_VERSION,
        t: 'invoke',
        id: delivery.deliveryId,
        fn: delivery.fn.name,
        it: delivery.type,
        rid: delivery.requestId,
        dl: delivery.deadline,
        ctx: delivery.context,
        pk: delivery.payload.kind,
        p: delivery.payload.bytes,
      })
    } catch (err) {
      // the invoker context is checked when a call arrives; this is the last guard, for contexts from elsewhere
      this.#refuse(delivery, failure('FNBUS_INVALID_ARGUMENT', `the invocation cannot be encoded: ${(err as Error).message}`))
    }
  }

  #refuse (delivery: Delivery, outcome: Outcome): void {
    queueMicrotask(() => this.#options.dispatcher.complete(delivery.deliveryId, this, outcome))
  }

  caller (requestId: number): CallerPort {
    return new RemoteCaller(this, requestId)
  }
}

/** One call made by a session: settles by writing the answer to the caller's inbox. */
class RemoteCaller implements CallerPort {
  constructor (readonly session: Session, readonly requestId: number) {}

  get label (): string {
    return this.session.label
  }

  get alive (): boolean {
    return this.session.alive
  }

  get owner (): Session {
    return this.session
  }

  settle (outcome: Outcome): void {
    this.session.inFlight--
    const id = this.requestId
    if (!outcome.ok) {
      this.session.send({ v: PROTOCOL_VERSION, t: 'error', id, code: outcome.error.code, msg: outcome.error.message })
      return
    }
    let kind, bytes
    try {
      // an in-process handler's answer is encoded only now, for this caller
      kind = outcome.payload.kind
      bytes = outcome.payload.bytes
    } catch (err) {
      // what a remote worker answers when its handler returns what cannot be encoded
      this.session.send({ v: PROTOCOL_VERSION, t: 'reply', id, fe: 'Unhandled', pk: 1, p: Buffer.from(`the function's answer cannot be encoded: ${(err as Error).message}`) })
      return
    }
    this.session.send({ v: PROTOCOL_VERSION, t: 'reply', id, fe: outcome.functionError, pk: kind, p: bytes })
  }
}
