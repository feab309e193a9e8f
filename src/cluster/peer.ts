// Another gateway of the cluster, as this gateway's dispatcher sees it: a worker (WorkerPort) whose slots are the
// functions it announced, and the owner of the calls it sends here (QueueOwner, bounded as a connection is). What
// goes to it, invocations and answers alike, leaves in batches: the envelopes of one tick in one NATS message.
import { failure, type Delivery, type Dispatcher, type QueueOwner, type WorkerPort } from '../dispatcher/index.js'
import { EnvelopeBatcher, PROTOCOL_VERSION, type Envelope } from '../protocol/index.js'
import { CallTimes } from './call-times.js'

/** How a peer's envelopes leave: `send(data)` publishes one batch to its inbox subject. */
export interface PeerLink {
  readonly dispatcher: Dispatcher
  /** Publishes a batch to `subject`; false when NATS refused it (closed, or over its max_payload). */
  send (subject: string, data: Uint8Array): boolean
  /** The largest batch to build, bytes (below the servers' max_payload). */
  readonly maxBatchBytes: () => number
  /** The largest invocation one message may carry: a call above it fails with FNBUS_PAYLOAD_TOO_LARGE here. */
  readonly maxEnvelopeBytes: () => number
}

/** Counts of one peer's traffic, for status and metrics. */
export interface PeerCounts {
  /** Calls this gateway sent it, and the ones it answered. */
  sent: number
  answered: number
  /** Calls it sent here. */
  served: number
  /** Batches that NATS refused. */
  unsent: number
}

export class Peer implements WorkerPort, QueueOwner {
  readonly name: string
  readonly label: string
  readonly remote = true
  readonly subject: string
  incarnation: string
  heartbeatMs: number
  /** When it was last heard from (monotonic ms). */
  lastSeen: number
  /** What it announced last. */
  functions: ReadonlyMap<string, number> = new Map()
  // QueueOwner: its calls waiting for a worker of this gateway, bounded as one connection's
  queuedCalls = 0
  queuedBytes = 0
  /** Its calls this gateway runs now (bounded by limits.maxInFlightPerClient). */
  inFlight = 0
  /** False once it left (or this gateway lost the cluster): its calls waiting here are dropped, late answers too. */
  present = true
  readonly counts: PeerCounts = { sent: 0, answered: 0, served: 0, unsent: 0 }
  /** Round trips of the calls this gateway handed it. */
  readonly times = new CallTimes()
  readonly #link: PeerLink
  readonly #outbox: EnvelopeBatcher

  constructor (name: string, subject: string, incarnation: string, heartbeatMs: number, now: number, link: PeerLink) {
    this.name = name
    this.label = `gw:${name}`
    this.subject = subject
    this.incarnation = incarnation
    this.heartbeatMs = heartbeatMs
    this.lastSeen = now
    this.#link = link
    this.#outbox = new EnvelopeBatcher(null, data => {
      if (!link.send(subject, data)) this.counts.unsent++
    }, link.maxBatchBytes)
  }

  deliver (delivery: Delivery): void {
    const bytes = delivery.payload.byteLength
    if (bytes > this.#link.maxEnvelopeBytes()) {
      // NATS would refuse the whole batch it travels in; the call fails alone, as a worker's session refuses one
      queueMicrotask(() => this.#link.dispatcher.complete(delivery.deliveryId, this, failure('FNBUS_PAYLOAD_TOO_LARGE',
        `a payload of ${bytes} bytes cannot cross the cluster (the NATS servers' max_payload is ${this.#link.maxEnvelopeBytes() + ENVELOPE_ROOM})`)))
      return
    }
    this.counts.sent++
    this.times.start(delivery.deliveryId)
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
      // the caller's identity: the peer's policy decides again (docs/cluster.md#security)
      idn: delivery.identity,
    } as Envelope)
  }

  /** An answer (`result`) to a call it sent here. */
  answer (env: Envelope): void {
    this.#outbox.add(env)
  }

  /** Sends what this tick added, now. */
  flush (): void {
    this.#outbox.flush()
  }

  /** Forgets what was not sent (it left). */
  clear (): void {
    this.#outbox.clear()
  }
}

/** Room an invocation's fields take besides its payload, within a NATS message. */
export const ENVELOPE_ROOM = 16 * 1024
