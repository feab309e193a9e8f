import type { MessagePort } from 'node:worker_threads'
import { errorFromWire, FnbusError } from '../errors.js'
import { PROTOCOL_VERSION, type Envelope, type Payload } from '../protocol/index.js'
import { asBuffer, BATCH_ENTRY_OVERHEAD, MAX_TALLY_CALLS, packBatch, unpackBatch, type DirectAnswer, type DirectCall, type LeaseGrant, type LeaseTally } from '../protocol/lease.js'
import type { Clock } from '../util/clock.js'
import { Deadlines, type Timed } from '../util/deadlines.js'
import { IdTable } from '../util/id-table.js'

/**
 * A batch leaves once it holds this many, without waiting for the end of the turn: the other thread starts on them
 * while this one makes the rest. Measured at 64 in flight (alternated, a loaded machine): 16 gave 1.05–1.27× the
 * rate of one batch a turn; 8 less than either.
 */
const BATCH = 16

/** How often a lease's settled calls are reported to the gateway (its tallies, metrics and observers), ms. */
const TALLY_EVERY_MS = 100

/** A call on a lease, from the moment it is posted to its answer, its deadline, or the end of the lease's port. */
interface DirectPending extends Timed {
  id: number
  readonly lease: CallerLease
  readonly rid: string
  readonly startedAt: number
  readonly resolve: (env: Envelope) => void
  readonly reject: (err: FnbusError) => void
}

/** One lease this client holds (src/dispatcher/leases.ts): room for `capacity` calls to `fn` at the port's other end. */
interface CallerLease {
  readonly id: number
  readonly fn: string
  readonly port: MessagePort
  /** The connection the grant came on: its reports go on that connection only. */
  readonly epoch: number
  readonly timeout: number
  readonly maxTimeout: number
  readonly rid: string
  capacity: number
  revoked: boolean
  nextRid: number
  readonly calls: IdTable<DirectPending>
  outbox: DirectCall[]
  tally: (string | number)[]
}

export interface DirectCallerOptions {
  readonly clock: Clock
  /** The current connection, and its side channel to the gateway (undefined when it has none). */
  readonly epoch: () => number
  readonly postSide: (message: object) => void
  /** The gateway's payload limit (`welcome.maxPayload`), which a direct call holds to as one through the gateway. */
  readonly maxPayload: () => number
}

/**
 * A caller's side of the direct path (docs/isolation.md): the leases the gateway granted this client's connection,
 * and the Sync calls that travel them straight to a worker's thread. A call goes direct only while a lease for its
 * function has room and is not revoked; any other goes through the gateway as always. Calls of a turn leave as one
 * message; each carries its deadline, which is also kept here (FNBUS_TIMEOUT on time, without the worker). What
 * settled is reported to the gateway every TALLY_EVERY_MS.
 */
export class DirectCaller {
  readonly #options: DirectCallerOptions
  readonly #leases = new Map<string, CallerLease>()
  readonly #deadlines: Deadlines<DirectPending>
  #flushing = false
  readonly #pending = new Set<CallerLease>()
  #tallyTimer: ReturnType<typeof setTimeout> | undefined

  constructor (options: DirectCallerOptions) {
    this.#options = options
    this.#deadlines = new Deadlines<DirectPending>(call => {
      this.#settle(call, 'FNBUS_TIMEOUT')
      call.reject(new FnbusError('FNBUS_TIMEOUT', `${call.lease.fn} did not answer within its deadline`))
    }, { unref: true, clock: options.clock })
  }

  /** Whether a Sync call of `fn` can go direct now. */
  has (fn: string): boolean {
    const lease = this.#leases.get(fn)
    return lease !== undefined && !lease.revoked && lease.calls.size < lease.capacity
  }

  /** A Sync call of `fn` on its lease (`has(fn)` said yes): resolves with a `reply` envelope as the gateway's would. */
  call (fn: string, payload: Payload, context: Record<string, unknown> | undefined, timeout: number | undefined): Promise<Envelope> {
    const lease = this.#leases.get(fn) as CallerLease
    const bytes = payload.bytes
    const limit = this.#options.maxPayload()
    if (bytes.length > limit) {
      return Promise.reject(new FnbusError('FNBUS_PAYLOAD_TOO_LARGE', `payload of ${bytes.length} bytes exceeds the gateway's limit of ${limit}`))
    }
    const ms = Math.min(timeout ?? lease.timeout, lease.maxTimeout)
    const now = this.#options.clock.now()
    return new Promise<Envelope>((resolve, reject) => {
      const call: DirectPending = {
        id: 0, lease, rid: lease.rid + String(lease.nextRid++), startedAt: now, resolve, reject,
        deadlineAt: 0, deadlinePrev: undefined, deadlineNext: undefined, deadlineLane: undefined,
      }
      const id = call.id = lease.calls.add(call)
      this.#deadlines.set(call, now + ms, now)
      if (lease.outbox.push([id, call.rid, Date.now() + ms, payload.kind, bytes, context]) >= BATCH) {
        this.#post(lease)
        return
      }
      this.#pending.add(lease)
      if (!this.#flushing) {
        this.#flushing = true
        queueMicrotask(this.#flush)
      }
    })
  }

  /** The gateway granted a lease. */
  granted (grant: LeaseGrant): void {
    const known = this.#leases.get(grant.fn)
    if (known !== undefined) {
      // one lease per function at a time: the gateway never grants two; a second is given back at once
      grant.port.close()
      this.#options.postSide({ t: 'lease-end', id: grant.id })
      return
    }
    const lease: CallerLease = {
      id: grant.id, fn: grant.fn, port: grant.port, epoch: this.#options.epoch(), timeout: grant.timeout, maxTimeout: grant.maxTimeout,
      rid: grant.rid, capacity: grant.slots, revoked: false, nextRid: 1, calls: new IdTable(), outbox: [], tally: [],
    }
    this.#leases.set(grant.fn, lease)
    lease.port.on('message', (message: unknown) => this.#answers(lease, message))
    lease.port.once('close', () => this.#portClosed(lease))
    lease.port.unref()
  }

  grown (id: number, slots: number): void {
    for (const lease of this.#leases.values()) if (lease.id === id) lease.capacity += slots
  }

  revoked (id: number): void {
    for (const lease of this.#leases.values()) {
      if (lease.id !== id) continue
      lease.revoked = true
      if (lease.calls.size === 0) this.#end(lease)
    }
  }

  /** The connection dropped: the gateway ended its leases; calls in flight on them still get their answers. */
  disconnected (): void {
    for (const lease of this.#leases.values()) {
      lease.revoked = true
      if (lease.calls.size === 0) this.#end(lease)
    }
  }

  /** The client closes: every lease ends, calls in flight on them fail with `reason`. */
  shutdown (reason: FnbusError): void {
    for (const lease of [...this.#leases.values()]) {
      for (const call of lease.calls.values()) {
        this.#deadlines.clear(call)
        lease.calls.delete(call.id)
        call.reject(reason)
      }
      lease.revoked = true
      this.#end(lease)
    }
    clearTimeout(this.#tallyTimer)
  }

  readonly #flush = (): void => {
    this.#flushing = false
    for (const lease of this.#pending) this.#post(lease)
    this.#pending.clear()
  }

  #post (lease: CallerLease): void {
    const outbox = lease.outbox
    if (outbox.length === 0) return
    lease.outbox = []
    let batch: ArrayBuffer
    try {
      batch = packBatch(outbox)
    } catch (err) {
      // a context MessagePack cannot write: those calls fail, not the others (the gateway would refuse them too)
      for (const [id] of outbox) this.#fail(lease, id, 'FNBUS_INVALID_ARGUMENT', `the call cannot be sent: ${(err as Error).message}`)
      return
    }
    lease.port.postMessage(batch, [batch])
  }

  #answers (lease: CallerLease, message: unknown): void {
    const batch = unpackBatch(message, lease.capacity * (this.#options.maxPayload() + BATCH_ENTRY_OVERHEAD))
    if (batch === undefined) {
      this.#broken(lease)
      return
    }
    for (const answer of batch as DirectAnswer[]) {
      if (!Array.isArray(answer) || typeof answer[0] !== 'number') {
        this.#broken(lease)
        return
      }
      const call = lease.calls.get(answer[0])
      if (call === undefined) continue // answered after its deadline
      if (answer.length === 4 && (answer[1] === null || answer[1] === 'Handled' || answer[1] === 'Unhandled') &&
        typeof answer[2] === 'number' && answer[3] instanceof Uint8Array) {
        const [, fe, pk, p] = answer
        this.#settle(call, fe === null ? 'ok' : fe === 'Handled' ? 'handled' : 'unhandled')
        call.resolve({ v: PROTOCOL_VERSION, t: 'reply', id: 0, fe: fe ?? undefined, pk, p: asBuffer(p) } as Envelope)
      } else if (answer.length === 3 && typeof answer[1] === 'string' && typeof answer[2] === 'string') {
        const err = errorFromWire(answer[1], answer[2])
        this.#settle(call, err.code)
        call.reject(err)
      } else {
        this.#broken(lease)
        return
      }
    }
  }

  #fail (lease: CallerLease, id: number, code: 'FNBUS_INVALID_ARGUMENT' | 'FNBUS_WORKER_LOST' | 'FNBUS_BAD_MESSAGE', message: string): void {
    const call = lease.calls.get(id)
    if (call === undefined) return
    this.#settle(call, code)
    call.reject(new FnbusError(code, message))
  }

  /** The worker's thread answered what is not an answer: the lease is unusable, its calls fail. */
  #broken (lease: CallerLease): void {
    for (const { id } of lease.calls.values()) this.#fail(lease, id, 'FNBUS_BAD_MESSAGE', `the worker of ${lease.fn} answered a direct call with a malformed message`)
    lease.revoked = true
    this.#end(lease)
  }

  /** The worker's thread is gone (it ended, crashed, was restarted): calls in flight on the lease are lost. */
  #portClosed (lease: CallerLease): void {
    for (const { id } of lease.calls.values()) this.#fail(lease, id, 'FNBUS_WORKER_LOST', `the worker running ${lease.fn} was lost`)
    lease.revoked = true
    this.#end(lease)
  }

  /** A call settled: out of its lease, into the next report; a revoked lease with nothing in flight ends. */
  #settle (call: DirectPending, outcome: string): void {
    const lease = call.lease
    this.#deadlines.clear(call)
    lease.calls.delete(call.id)
    lease.tally.push(call.rid, outcome, this.#options.clock.now() - call.startedAt)
    if (lease.tally.length >= MAX_TALLY_CALLS * 3) this.#report(lease)
    else this.#tallyTimer ??= setTimeout(this.#reportAll, TALLY_EVERY_MS).unref()
    if (lease.revoked && lease.calls.size === 0) this.#end(lease)
  }

  readonly #reportAll = (): void => {
    this.#tallyTimer = undefined
    for (const lease of this.#leases.values()) this.#report(lease)
  }

  #report (lease: CallerLease): void {
    if (lease.tally.length === 0) return
    const calls = lease.tally
    lease.tally = []
    // a lease of an earlier connection ended with it: the gateway no longer counts it
    if (lease.epoch === this.#options.epoch()) this.#options.postSide({ t: 'lease-tally', id: lease.id, calls } satisfies LeaseTally)
  }

  #end (lease: CallerLease): void {
    if (this.#leases.get(lease.fn) !== lease) return
    this.#leases.delete(lease.fn)
    this.#report(lease)
    if (lease.epoch === this.#options.epoch()) this.#options.postSide({ t: 'lease-end', id: lease.id })
    lease.port.close()
  }
}
