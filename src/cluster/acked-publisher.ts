// JetStream publishes awaiting their PubAck, leaner than `js.publish` (docs/cluster.md#async): every Async accept is
// one, so its cost per message is the gateway's cost per accept. nats.js' `js.publish` is a `nc.request`: a request
// object with a token on the connection's reply mux, a timer and a deferred each, and (async traces on, its default)
// two Error objects with their stack traces captured per request — measured at ~40% of a clustered gateway's time
// accepting Async calls (benchmarks/NOTES.md). Here the PubAcks come back on one subscription of this publisher's own
// inbox (`_INBOX.<nuid>.<n>`), matched by the reply subject's last token; one timer sweeps the deadlines.
import { createInbox, headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node'

/** What JetStream answers to a stored message. */
export interface PubAck {
  readonly stream: string
  readonly seq: number
  readonly duplicate: boolean
}

interface Waiting {
  readonly resolve: (ack: PubAck) => void
  readonly reject: (err: Error) => void
  /** Date.now() past which it fails. */
  readonly deadline: number
}

/** How often deadlines are checked, ms: a publish fails between its timeout and this much later. */
const SWEEP_MS = 250

/**
 * An error with JetStream's answer as its message (`storeError` maps the messages: a full stream, a 503). `code`: the
 * NATS status or JetStream's `err_code`, when there is one.
 */
export class PublishError extends Error {
  constructor (message: string, readonly code?: number) {
    super(message)
    this.name = 'PublishError'
  }
}

export class AckedPublisher {
  readonly #nc: NatsConnection
  readonly #prefix: string
  readonly #sub: Subscription
  readonly #timeoutMs: number
  /** By reply token; the Map's order is the publishes' (and their deadlines': one timeout for all). */
  readonly #waiting = new Map<number, Waiting>()
  #next = 0
  #timer: NodeJS.Timeout | undefined
  #closed: Error | undefined

  constructor (nc: NatsConnection, timeoutMs: number) {
    this.#nc = nc
    this.#timeoutMs = timeoutMs
    this.#prefix = createInbox()
    this.#sub = nc.subscribe(`${this.#prefix}.*`, { callback: (err, msg) => { this.#answered(err, msg) } })
    // the connection closed for good (nats.js resubscribes across reconnections): nothing will answer any more
    void this.#sub.closed.then(() => this.close(new PublishError('the NATS connection closed')), () => this.close(new PublishError('the NATS connection closed')))
  }

  /** Publishes `data` on `subject` (with `msgID` as `Nats-Msg-Id`, JetStream's deduplication); resolves with its PubAck. */
  publish (subject: string, data: Uint8Array, msgID?: string): Promise<PubAck> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed)
    const token = ++this.#next
    let headers: MsgHdrs | undefined
    if (msgID !== undefined) {
      headers = natsHeaders()
      headers.set('Nats-Msg-Id', msgID)
    }
    return new Promise<PubAck>((resolve, reject) => {
      try {
        this.#nc.publish(subject, data, { reply: `${this.#prefix}.${token}`, headers })
      } catch (err) {
        // a closed or draining connection, a subject nats.js refuses
        reject(err instanceof Error ? err : new PublishError(String(err)))
        return
      }
      this.#waiting.set(token, { resolve, reject, deadline: Date.now() + this.#timeoutMs })
      this.#timer ??= setInterval(() => { this.#sweep() }, SWEEP_MS).unref()
    })
  }

  #answered (err: Error | null, msg: Msg): void {
    if (err !== null) {
      this.close(err)
      return
    }
    const token = Number(msg.subject.slice(this.#prefix.length + 1))
    const waiting = this.#waiting.get(token)
    if (waiting === undefined) return // answered past its deadline
    this.#waiting.delete(token)
    try {
      waiting.resolve(parsePubAck(msg))
    } catch (failed) {
      waiting.reject(failed as Error)
    }
  }

  #sweep (): void {
    const now = Date.now()
    for (const [token, waiting] of this.#waiting) {
      if (waiting.deadline > now) break
      this.#waiting.delete(token)
      waiting.reject(new PublishError('timeout: JetStream did not acknowledge the write in time'))
    }
    if (this.#waiting.size === 0) {
      clearInterval(this.#timer)
      this.#timer = undefined
    }
  }

  /** Fails every publish still waiting, and all later ones, with `reason`. */
  close (reason: Error = new PublishError('the publisher is closed')): void {
    if (this.#closed !== undefined) return
    this.#closed = reason
    clearInterval(this.#timer)
    this.#timer = undefined
    for (const waiting of this.#waiting.values()) waiting.reject(reason)
    this.#waiting.clear()
    if (!this.#sub.isClosed()) this.#sub.unsubscribe()
  }
}

/** JetStream's answer to a publish: a PubAck, an API error (`{ error: { code, err_code, description } }`), or a status. */
export function parsePubAck (msg: Msg): PubAck {
  const data = msg.data
  if (data.length === 0) {
    // a status without a body: 503 when no JetStream server answers for the subject
    const code = msg.headers?.code ?? 0
    throw new PublishError(code === 503 ? '503 no responders: JetStream does not answer' : `NATS status ${code} ${msg.headers?.description ?? ''}`.trimEnd(), code)
  }
  const answer = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8')) as
    { stream?: string, seq?: number, duplicate?: boolean, error?: { code?: number, err_code?: number, description?: string } }
  if (answer.error !== undefined) throw new PublishError(answer.error.description ?? `JetStream error ${answer.error.err_code ?? answer.error.code ?? ''}`, answer.error.err_code)
  if (typeof answer.stream !== 'string' || answer.stream === '' || typeof answer.seq !== 'number') throw new PublishError('invalid ack response')
  return { stream: answer.stream, seq: answer.seq, duplicate: answer.duplicate === true }
}
