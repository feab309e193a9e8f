import type { MessagePort } from 'node:worker_threads'
import type { PayloadKind } from '../protocol/index.js'
import { FnbusError } from '../errors.js'
import { checkContextArgument } from '../protocol/context.js'
import { asBuffer, BATCH_ENTRY_OVERHEAD, packBatch, unpackBatch, type DirectAnswer, type DirectCall, type LeaseServe } from '../protocol/lease.js'
import type { ResultFields, Worker } from './worker.js'

/**
 * A batch leaves once it holds this many, without waiting for the end of the turn: the other thread starts on them
 * while this one makes the rest. Measured at 64 in flight (alternated, a loaded machine): 16 gave 1.05–1.27× the
 * rate of one batch a turn; 8 less than either.
 */
const BATCH = 16

/** A request id as long as the gateway's prefix and a counter make it, with room: longer is not a caller's. */
const MAX_RID_LENGTH = 128

/** One lease's port, on the worker's side: calls in, answers out, at most `slots` running. */
interface ServedLease {
  readonly port: MessagePort
  readonly fn: string
  readonly slots: number
  running: number
  outbox: DirectAnswer[]
  closed: boolean
}

/**
 * A worker's side of the direct path (docs/isolation.md): the ports the gateway handed this client's connection,
 * each from one caller's thread holding a lease on this worker's slots. Calls arriving there run as calls from the
 * gateway do (Worker.run: the same context, deadline and answer rules); their answers of a turn leave as one message.
 * A port that sends what is not a call, or more calls than the lease's slots, is closed: its caller's calls in flight
 * fail as if this worker were lost, and nothing else is touched.
 */
export class DirectWorker {
  readonly #worker: Worker
  /** The gateway's payload limit (`welcome.maxPayload`): a call past it is refused as the gateway would. */
  readonly #maxPayload: () => number
  readonly #leases = new Set<ServedLease>()
  readonly #flushQueue = new Set<ServedLease>()
  #flushing = false

  constructor (worker: Worker, maxPayload: () => number) {
    this.#worker = worker
    this.#maxPayload = maxPayload
  }

  serve (grant: LeaseServe): void {
    if (!this.#worker.serves(grant.fn)) {
      grant.port.close()
      return
    }
    const lease: ServedLease = { port: grant.port, fn: grant.fn, slots: grant.slots, running: 0, outbox: [], closed: false }
    this.#leases.add(lease)
    lease.port.on('message', (message: unknown) => this.#calls(lease, message))
    lease.port.once('close', () => {
      lease.closed = true
      this.#leases.delete(lease)
    })
    // the gateway's connection keeps the thread alive, not a caller's port
    lease.port.unref()
  }

  /** The client closes: every lease's port goes (their callers fail what they had in flight, as on a lost worker). */
  close (): void {
    for (const lease of this.#leases) this.#close(lease)
  }

  #calls (lease: ServedLease, message: unknown): void {
    if (lease.closed) return
    const maxPayload = this.#maxPayload()
    const batch = unpackBatch(message, lease.slots * (maxPayload + BATCH_ENTRY_OVERHEAD))
    if (batch === undefined) {
      this.#close(lease)
      return
    }
    for (const call of batch) {
      if (!isDirectCall(call) || lease.running >= lease.slots) {
        this.#close(lease)
        return
      }
      lease.running++
      const [id, rid, dl, pk, p, ctx] = call
      // what the gateway refuses of a call, the worker refuses here: the caller's thread is a client like any other
      const refusal = p.length > maxPayload
        ? new FnbusError('FNBUS_PAYLOAD_TOO_LARGE', `payload of ${p.length} bytes exceeds the gateway's limit of ${maxPayload}`)
        : contextRefusal(ctx, maxPayload)
      if (refusal !== undefined) {
        lease.running--
        this.#answer(lease, id, { code: refusal.code, msg: refusal.message })
        continue
      }
      this.#worker.run({ fn: lease.fn, rid, dl, it: 'Sync', ctx: ctx ?? undefined, pk: pk as PayloadKind, p: asBuffer(p) }, fields => {
        lease.running--
        this.#answer(lease, id, fields)
      })
    }
  }

  #answer (lease: ServedLease, id: number, fields: ResultFields): void {
    if (lease.closed) return
    const waiting = lease.outbox.push(fields.code === undefined
      ? [id, fields.fe ?? null, fields.pk as number, fields.p as Buffer]
      : [id, fields.code, fields.msg ?? ''])
    if (waiting >= BATCH) {
      this.#post(lease)
      return
    }
    this.#flushQueue.add(lease)
    if (!this.#flushing) {
      this.#flushing = true
      queueMicrotask(this.#flush)
    }
  }

  readonly #flush = (): void => {
    this.#flushing = false
    for (const lease of this.#flushQueue) this.#post(lease)
    this.#flushQueue.clear()
  }

  #post (lease: ServedLease): void {
    const outbox = lease.outbox
    if (outbox.length === 0 || lease.closed) return
    lease.outbox = []
    let batch: ArrayBuffer
    try {
      batch = packBatch(outbox)
    } catch {
      // answers are Payloads' bytes and strings: MessagePack writes them all; this is the last guard
      this.#close(lease)
      return
    }
    lease.port.postMessage(batch, [batch])
  }

  #close (lease: ServedLease): void {
    lease.closed = true
    this.#leases.delete(lease)
    lease.port.close()
  }
}

function contextRefusal (ctx: unknown, maxBytes: number): FnbusError | undefined {
  if (ctx === null || ctx === undefined) return undefined
  try {
    checkContextArgument(ctx, maxBytes)
    return undefined
  } catch (err) {
    return err as FnbusError
  }
}

function isDirectCall (value: unknown): value is DirectCall {
  if (!Array.isArray(value) || value.length !== 6) return false
  const [id, rid, dl, pk, p, ctx] = value as unknown[]
  return typeof id === 'number' && typeof rid === 'string' && rid.length <= MAX_RID_LENGTH && typeof dl === 'number' && Number.isFinite(dl) &&
    typeof pk === 'number' && p instanceof Uint8Array && (ctx === undefined || ctx === null || (typeof ctx === 'object' && !Array.isArray(ctx)))
}
