// The direct path between co-hosted function threads (docs/isolation.md, "The direct path"): what the gateway and a
// function's thread say beside their MQTT stream (side messages of the thread link, src/util/port-duplex.ts), and
// what a caller's thread and a worker's thread say over the MessageChannel a lease gives them. None of it leaves the
// process: a worker in another language never sees it. Every reader checks what it gets with the guards below: a
// thread is a function's code, buggy or hostile, like a remote client.
import type { MessagePort } from 'node:worker_threads'
import { pack, unpackr } from './codec.js'

/** Gateway → caller's thread: a lease of `slots` calls in flight to `fn`'s worker at the other end of `port`. */
export interface LeaseGrant {
  readonly t: 'lease'
  readonly id: number
  readonly fn: string
  readonly slots: number
  /** ms: a call's timeout when the caller asks for none, and the most it may ask for (the gateway's rules for `fn`). */
  readonly timeout: number
  readonly maxTimeout: number
  /** The calls' `context.requestId`s: this prefix, then a counter the caller keeps. */
  readonly rid: string
  readonly port: MessagePort
}

/** Gateway → caller's thread: `slots` more for lease `id`. */
export interface LeaseGrow {
  readonly t: 'lease-grow'
  readonly id: number
  readonly slots: number
}

/** Gateway → caller's thread: take no new calls on lease `id`; end it (`lease-end`) once those in flight settled. */
export interface LeaseRevoke {
  readonly t: 'lease-revoke'
  readonly id: number
}

/** Gateway → worker's thread: serve `fn` to calls arriving on `port`, at most `slots` at once. */
export interface LeaseServe {
  readonly t: 'lease-serve'
  readonly id: number
  readonly fn: string
  readonly slots: number
  readonly port: MessagePort
}

/**
 * A thread's client → gateway, once its session is up: it knows the direct path (a function may bundle an older copy
 * of the SDK, whose thread link would take a grant for a broken protocol): only then are leases granted to it.
 */
export interface LeaseReady {
  readonly t: 'lease-ready'
}

/** Caller's thread → gateway: lease `id` is over (the slots return); the caller closed its port. */
export interface LeaseEnd {
  readonly t: 'lease-end'
  readonly id: number
}

/**
 * Caller's thread → gateway: the calls settled on lease `id` since the last report, for the tallies, metrics and
 * observers: flat triples of request id, outcome (`ok`, `handled`, `unhandled` or a bus error code) and ms taken.
 */
export interface LeaseTally {
  readonly t: 'lease-tally'
  readonly id: number
  readonly calls: readonly (string | number)[]
}

export type GatewaySide = LeaseGrant | LeaseGrow | LeaseRevoke | LeaseServe
export type ThreadSide = LeaseReady | LeaseEnd | LeaseTally

/** The most triples one `lease-tally` carries: a caller sends a report per 100 ms, or when this many settled. */
export const MAX_TALLY_CALLS = 1024

/** Caller → worker, on a lease's port: calls, `[id, requestId, dl (epoch ms), pk, p, ctx]` each (ctx null when none). */
export type DirectCall = [id: number, rid: string, dl: number, pk: number, p: Uint8Array, ctx: Record<string, unknown> | undefined | null]
/** Worker → caller: answers, `[id, fe, pk, p]` (fe: a function error's kind, or null) or `[id, code, msg]` (a bus error). */
export type DirectAnswer = [id: number, fe: 'Handled' | 'Unhandled' | null, pk: number, p: Uint8Array] | [id: number, code: string, msg: string]

/**
 * A batch (the calls or answers of one turn) as one message: MessagePack in an ArrayBuffer of its own, transferred.
 * The structured clone of an array of arrays, each with a Uint8Array, cost the caller's thread a quarter of its time
 * at 64 calls in flight (V8's serializer, a buffer cloned per call); one MessagePack buffer is one copy.
 */
export function packBatch (batch: readonly unknown[]): ArrayBuffer {
  const bytes = pack(batch)
  const buffer = new ArrayBuffer(bytes.length)
  new Uint8Array(buffer).set(bytes)
  return buffer
}

/** What one call or answer may add to a batch besides its payload (ids, deadline, context, MessagePack framing). */
export const BATCH_ENTRY_OVERHEAD = 64 * 1024

/**
 * A batch as packBatch made it; undefined for anything else, or for more than `maxBytes` (the port is then closed:
 * a peer's batch holds at most its slots' calls or answers, each within the gateway's payload limit).
 */
export function unpackBatch (message: unknown, maxBytes = Infinity): unknown[] | undefined {
  if (!(message instanceof ArrayBuffer) || message.byteLength > maxBytes) return undefined
  try {
    const batch: unknown = unpackr.unpack(Buffer.from(message))
    return Array.isArray(batch) ? batch : undefined
  } catch {
    return undefined
  }
}

/** A batch's bytes as a Buffer: what MessagePack decoded is one already (a view of the batch), else a view is made. */
export function asBuffer (bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

function isId (value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0
}

function isSlots (value: unknown): value is number {
  return isId(value) && value <= 1_000_000
}

/** What the gateway may send a thread, checked (a thread trusts its gateway, but a copy of the SDK is old or new). */
export function gatewaySide (message: object, MessagePortClass: typeof MessagePort): GatewaySide | undefined {
  const m = message as Record<string, unknown>
  if (!isId(m.id)) return undefined
  switch (m.t) {
    case 'lease':
      return typeof m.fn === 'string' && isSlots(m.slots) && isId(m.timeout) && isId(m.maxTimeout) && typeof m.rid === 'string' &&
        m.port instanceof MessagePortClass
        ? m as unknown as LeaseGrant
        : undefined
    case 'lease-grow':
      return isSlots(m.slots) ? m as unknown as LeaseGrow : undefined
    case 'lease-revoke':
      return m as unknown as LeaseRevoke
    case 'lease-serve':
      return typeof m.fn === 'string' && isSlots(m.slots) && m.port instanceof MessagePortClass ? m as unknown as LeaseServe : undefined
    default:
      return undefined
  }
}

/** What a thread may send the gateway, checked: undefined for anything else (the gateway then cuts the link). */
export function threadSide (message: object): ThreadSide | undefined {
  const m = message as Record<string, unknown>
  if (m.t === 'lease-ready') return m as unknown as LeaseReady
  if (!isId(m.id)) return undefined
  if (m.t === 'lease-end') return m as unknown as LeaseEnd
  if (m.t !== 'lease-tally' || !Array.isArray(m.calls)) return undefined
  const calls = m.calls as unknown[]
  if (calls.length % 3 !== 0 || calls.length > MAX_TALLY_CALLS * 3) return undefined
  for (let i = 0; i < calls.length; i += 3) {
    const rid = calls[i]
    const outcome = calls[i + 1]
    const ms = calls[i + 2]
    if (typeof rid !== 'string' || rid.length > 128 || typeof outcome !== 'string' || typeof ms !== 'number' || !(ms >= 0)) return undefined
  }
  return m as unknown as LeaseTally
}
