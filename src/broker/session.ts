import type { Client as AedesClient } from 'aedes'
import { FnbusError } from '../errors.js'
import { failure, type CallerPort, type Delivery, type Dispatcher, type Outcome, type WorkerPort } from '../dispatcher/index.js'
import { EnvelopeBatcher, inboxTopic, PROTOCOL_VERSION, type Envelope, type FunctionAddress } from '../protocol/index.js'
import { writeFrame } from './outbound.js'
import { identityOf } from '../security/identity.js'

/** How large a batch of envelopes to one client grows before it leaves within the tick. */
const OUTBOX_BYTES = 256 * 1024

/**
 * The bus side of one MQTT connection. It is both a caller (answers go to its inbox) and a worker (work goes to
 * its inbox), and lives exactly as long as the connection: a reconnect with the same client id is a new session.
 */
export class Session implements WorkerPort {
  readonly label: string
  readonly registrations = new Map<string, FunctionAddress>()
  /** The name the policy and the rate limit know this connection by: its identity, or `$anonymous`. */
  readonly subject: string
  /** Calls this connection made that await their answer (bounded by limits.maxInFlightPerClient). */
  inFlight = 0
  alive = true
  readonly #client: AedesClient
  readonly #outbox: EnvelopeBatcher
  readonly #maxPayloadBytes: number
  readonly #dispatcher: Dispatcher

  constructor (client: AedesClient, maxPayloadBytes: number, dispatcher: Dispatcher, subject: string) {
    this.#client = client
    this.label = client.id
    this.subject = subject
    this.#outbox = new EnvelopeBatcher(inboxTopic(client.id), frame => writeFrame(client.conn, frame), () => OUTBOX_BYTES)
    this.#maxPayloadBytes = maxPayloadBytes
    this.#dispatcher = dispatcher
  }

  /** The identity the connection authenticated as; undefined when anonymous. */
  get identity (): string | undefined {
    return identityOf(this.#client)
  }

  send (env: Envelope): void {
    if (this.alive) this.#outbox.add(env)
  }

  /** Sends what the tick has batched so far, now (before the connection is closed). */
  flush (): void {
    if (this.alive) this.#outbox.flush()
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
    if (size > this.#maxPayloadBytes) {
      this.#refuse(delivery, failure('FNBUS_PAYLOAD_TOO_LARGE', `payload of ${size} bytes exceeds limits.maxPayloadBytes (${this.#maxPayloadBytes})`))
      return
    }
    // literal envelopes on the hot path: one object of a fixed shape, no spread
    this.send({
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
  }

  #refuse (delivery: Delivery, outcome: Outcome): void {
    queueMicrotask(() => this.#dispatcher.complete(delivery.deliveryId, this, outcome))
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

  settle (outcome: Outcome): void {
    this.session.inFlight--
    const id = this.requestId
    if (outcome.ok) {
      this.session.send({ v: PROTOCOL_VERSION, t: 'reply', id, fe: outcome.functionError, pk: outcome.payload.kind, p: outcome.payload.bytes })
    } else {
      this.session.send({ v: PROTOCOL_VERSION, t: 'error', id, code: outcome.error.code, msg: outcome.error.message })
    }
  }
}
