// A gateway's inbox on the cluster (`PREFIX.gw.NAME`): batches of envelopes from its peers. An `invoke` is a call a
// peer's dispatcher handed to this gateway: it runs here, on this gateway's own workers only, under this gateway's
// policy for the caller's identity, and its outcome goes back as a `result`. A `result` answers a call this gateway
// handed to that peer. Anything else, or anything malformed, is dropped and counted: peers are other processes.
import { resultOutcome, type CallerPort, type Dispatcher, type Outcome } from '../dispatcher/index.js'
import { FnbusError } from '../errors.js'
import type { Logger } from '../logger.js'
import { decodeMessage, parseEnvelope, parseFunctionName, Payload, PROTOCOL_VERSION, type Invoke, type Result } from '../protocol/index.js'
import { ANONYMOUS_IDENTITY as ANONYMOUS, type Policy } from '../security/policy.js'
import type { Peer } from './peer.js'

export interface InboxOptions {
  readonly dispatcher: Dispatcher
  readonly policy: Policy | undefined
  readonly logger: Logger
  readonly maxPayloadBytes: number
  readonly maxContextBytes: number
  /** Calls one peer may have running or waiting here at once (limits.maxInFlightPerClient, as for a connection). */
  readonly maxInFlightPerPeer: number
}

export class ClusterInbox {
  readonly #options: InboxOptions
  /** Messages and envelopes dropped: malformed, from no known peer, or over a bound. */
  dropped = 0
  #lastWarning = 0

  constructor (options: InboxOptions) {
    this.#options = options
  }

  /** One NATS message from `peer` (undefined: its reply subject names no gateway this one knows). */
  receive (data: Uint8Array, peer: Peer | undefined): void {
    if (peer === undefined) {
      this.#drop('a message from no known gateway')
      return
    }
    let raws: Record<string, unknown>[]
    try {
      raws = decodeMessage(Buffer.from(data.buffer, data.byteOffset, data.byteLength))
    } catch (err) {
      this.#drop(`a message from ${peer.name} that is not a bus message: ${(err as Error).message}`)
      return
    }
    for (const raw of raws) {
      let env
      try {
        env = parseEnvelope(raw, { maxContextBytes: this.#options.maxContextBytes })
      } catch (err) {
        this.#drop(`an envelope from ${peer.name}: ${(err as Error).message}`)
        continue
      }
      if (env.t === 'invoke') this.#serve(env, raw.idn, peer)
      else if (env.t === 'result') this.#answered(env, peer)
      else this.#drop(`a ${env.t} envelope from ${peer.name}`)
    }
  }

  #answered (result: Result, peer: Peer): void {
    // false: a late answer (the call timed out here) or one for a call it was not given; both ignored
    if (this.#options.dispatcher.complete(result.id, peer, resultOutcome(result, this.#options.maxPayloadBytes))) {
      peer.counts.answered++
      peer.times.end(result.id)
    }
  }

  #serve (invoke: Invoke, idn: unknown, peer: Peer): void {
    const { dispatcher, policy, maxPayloadBytes, maxInFlightPerPeer } = this.#options
    const id = invoke.id
    const identity = typeof idn === 'string' && idn.length <= 256 ? idn : undefined
    const refuse = (code: FnbusError['code'], message: string): void => {
      peer.answer({ v: PROTOCOL_VERSION, t: 'result', id, code, msg: message })
    }
    let fn
    try {
      fn = parseFunctionName(invoke.fn, 'fn')
    } catch (err) {
      refuse('FNBUS_INVALID_ARGUMENT', (err as Error).message)
      return
    }
    if (invoke.p.length > maxPayloadBytes) {
      refuse('FNBUS_PAYLOAD_TOO_LARGE', `payload of ${invoke.p.length} bytes exceeds limits.maxPayloadBytes (${maxPayloadBytes}) of gateway ${peer.name}'s peer`)
      return
    }
    // the caller's gateway checked its policy; this one decides again, and checks nothing weaker
    if (policy !== undefined && !policy.mayInvoke(identity ?? ANONYMOUS, fn)) {
      refuse('FNBUS_NOT_AUTHORIZED', `${identity ?? ANONYMOUS} may not invoke ${fn.name}`)
      return
    }
    if (peer.inFlight >= maxInFlightPerPeer) {
      refuse('FNBUS_RATE_LIMITED', `gateway ${peer.name} has ${maxInFlightPerPeer} calls in flight here (limits.maxInFlightPerClient)`)
      return
    }
    peer.inFlight++
    peer.counts.served++
    dispatcher.call({
      fn,
      type: invoke.it,
      payload: Payload.fromWire(invoke.pk, invoke.p),
      context: invoke.ctx,
      // the caller's deadline, as time left on this gateway's clock: epoch clocks of two machines may differ a little
      timeoutMs: Math.max(1, invoke.dl - Date.now()),
      waitForWorkerMs: undefined,
      identity,
      localOnly: true,
    }, new PeerCaller(peer, id), invoke.rid)
  }

  #drop (what: string): void {
    this.dropped++
    const now = Date.now()
    // at most one line a minute: a peer that keeps sending garbage must not flood the log
    if (now - this.#lastWarning < 60_000) return
    this.#lastWarning = now
    this.#options.logger.warn({ dropped: this.dropped }, `cluster: dropped ${what}`)
  }
}

/** The caller of a call a peer sent: its outcome goes back to the peer as a `result`. */
class PeerCaller implements CallerPort {
  constructor (readonly peer: Peer, readonly id: number) {}

  get label (): string {
    return this.peer.label
  }

  get alive (): boolean {
    return this.peer.present
  }

  get owner (): Peer {
    return this.peer
  }

  settle (outcome: Outcome): void {
    const peer = this.peer
    peer.inFlight--
    const id = this.id
    if (!outcome.ok) {
      peer.answer({ v: PROTOCOL_VERSION, t: 'result', id, code: outcome.error.code, msg: outcome.error.message })
      return
    }
    let kind, bytes
    try {
      // an in-process handler's answer is encoded only now, for this caller
      kind = outcome.payload.kind
      bytes = outcome.payload.bytes
    } catch (err) {
      peer.answer({ v: PROTOCOL_VERSION, t: 'result', id, fe: 'Unhandled', pk: 1, p: Buffer.from(`the function's answer cannot be encoded: ${(err as Error).message}`) })
      return
    }
    peer.answer({ v: PROTOCOL_VERSION, t: 'result', id, fe: outcome.functionError, pk: kind, p: bytes })
  }
}
