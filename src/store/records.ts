import { FnbusError, invalidArgument } from '../errors.js'
import { decodeEnvelopes, isPayloadKind, parseFunctionName, prepareEnvelope, SlabWriter, unpackr, writePreparedEnvelope, type PayloadKind, type PreparedEnvelope } from '../protocol/index.js'
import type { AppendOptions, DeadInvocation, InvocationError, NewInvocation, StoredInvocation } from './types.js'

/**
 * An invocation as both stores keep it: one MessagePack map with short field names (a backlog holds many), so
 * that the memory store behaves byte for byte like the LevelDB one (same copies, same encoding errors).
 */
export interface InvocationRecord {
  id: string
  fn: string
  seq: number
  /** createdAt */
  at: number
  pk: PayloadKind
  p: Buffer
  ctx?: Readonly<Record<string, unknown>>
  /** idempotencyKey */
  ik?: string
  /** caller */
  by?: string
  /** attempts */
  n: number
  /** notBefore */
  nb: number
  err?: InvocationError
  /** diedAt: present on dead records only */
  died?: number
}

/** What an idempotency key remembers. */
export interface IdempotencyEntry {
  readonly id: string
  /** Epoch ms at which the key is forgotten: createdAt + the window in force when it was stored. */
  readonly exp: number
}

/**
 * Records and idempotency entries are flat maps like envelopes, written and read by the envelope codec: the same bytes
 * msgpackr writes (what older stores hold and decodeRecord reads), at a fraction of its cost per append. Each is a
 * view of a slab that later records do not touch; the LevelDB batch copies it.
 */
const recordWriter = new SlabWriter()

export function encodeRecord (record: InvocationRecord): Buffer {
  let prepared: PreparedEnvelope
  try {
    prepared = prepareEnvelope(record)
  } catch (err) {
    // a context msgpack cannot hold (a BigInt out of range, a cycle): the caller's fault, nothing was stored
    throw new FnbusError('FNBUS_INVALID_ARGUMENT', `invocation cannot be stored: ${(err as Error).message}`, { cause: err })
  }
  return writeRecord(record, prepared)
}

function writeRecord (fields: object, prepared: PreparedEnvelope): Buffer {
  recordWriter.begin(0)
  writePreparedEnvelope(recordWriter, fields, prepared)
  return recordWriter.finish()
}

export function decodeRecord (value: Buffer): InvocationRecord {
  return readRecord(value) as unknown as InvocationRecord
}

/** The envelope codec's reader, as for messages (msgpackr's values, binary as views); msgpackr for anything else. */
function readRecord (value: Buffer): Record<string, unknown> {
  const maps = decodeEnvelopes(value)
  return maps?.length === 1 ? maps[0] as Record<string, unknown> : unpackr.unpack(value) as Record<string, unknown>
}

export function encodeIdempotencyEntry (entry: IdempotencyEntry): Buffer {
  // an id and a number: nothing for msgpackr to prepare
  return writeRecord(entry, undefined)
}

export function decodeIdempotencyEntry (value: Buffer): IdempotencyEntry {
  return readRecord(value) as unknown as IdempotencyEntry
}

export function newRecord (invocation: NewInvocation, id: string, seq: number): InvocationRecord {
  const record: InvocationRecord = {
    id,
    fn: invocation.fn,
    seq,
    at: invocation.createdAt,
    pk: invocation.payloadKind,
    p: invocation.payload,
    n: 0,
    nb: 0,
  }
  if (invocation.context !== undefined) record.ctx = invocation.context
  if (invocation.idempotencyKey !== undefined) record.ik = invocation.idempotencyKey
  if (invocation.caller !== undefined) record.by = invocation.caller
  return record
}

export function toInvocation (record: InvocationRecord): StoredInvocation {
  const invocation: { -readonly [K in keyof DeadInvocation]?: DeadInvocation[K] } = {
    id: record.id,
    fn: record.fn,
    seq: record.seq,
    createdAt: record.at,
    payloadKind: record.pk,
    payload: record.p,
    attempts: record.n,
    notBefore: record.nb,
  }
  if (record.ctx !== undefined) invocation.context = record.ctx
  if (record.ik !== undefined) invocation.idempotencyKey = record.ik
  if (record.by !== undefined) invocation.caller = record.by
  if (record.err !== undefined) invocation.lastError = record.err
  if (record.died !== undefined) invocation.diedAt = record.died
  return invocation as StoredInvocation
}

export function toDeadInvocation (record: InvocationRecord): DeadInvocation {
  return toInvocation(record) as DeadInvocation
}

export function fromInvocation (invocation: StoredInvocation): InvocationRecord {
  const record = newRecord(invocation, invocation.id, invocation.seq)
  record.n = invocation.attempts
  record.nb = invocation.notBefore
  if (invocation.lastError !== undefined) record.err = invocation.lastError
  return record
}

/** The record after a failed delivery that will be retried. */
export function rescheduledRecord (invocation: StoredInvocation, error: InvocationError, notBefore: number): InvocationRecord {
  const record = fromInvocation(invocation)
  record.n = invocation.attempts + 1
  record.nb = notBefore
  record.err = plainError(error)
  return record
}

export function deadRecord (invocation: StoredInvocation, error: InvocationError, diedAt: number, countAttempt: boolean): InvocationRecord {
  const record = fromInvocation(invocation)
  record.n = invocation.attempts + (countAttempt ? 1 : 0)
  record.nb = 0
  record.err = plainError(error)
  record.died = diedAt
  return record
}

/**
 * A dead record back in the queue: a new seq (the end of the queue), no attempts, no backoff, and its age counted
 * from `now` — otherwise maxEventAge would dead-letter it again at once. Its last error stays, for the record.
 */
export function revivedRecord (dead: InvocationRecord, seq: number, now: number): InvocationRecord {
  const record: InvocationRecord = { ...dead, seq, at: now, n: 0, nb: 0 }
  delete record.died
  return record
}

/** Only code and message are stored: an Error instance would drag its stack and enumerable fields along. */
function plainError (error: InvocationError): InvocationError {
  return { code: String(error.code), message: String(error.message) }
}

// ---- validation at the store boundary: the key layout relies on it --------------------------------------------

/** With the `u` flag a surrogate pair is one code point, so only unpaired halves match. */
const LONE_SURROGATE = /\p{Cs}/u

export function checkNewInvocation (invocation: NewInvocation): void {
  if (typeof invocation !== 'object' || invocation === null) throw invalidArgument('invocation must be an object')
  checkFunction(invocation.fn)
  if (!isPayloadKind(invocation.payloadKind)) throw invalidArgument(`payloadKind must be 0, 1 or 2, got ${String(invocation.payloadKind)}`)
  if (!(invocation.payload instanceof Uint8Array)) throw invalidArgument('payload must be a Buffer')
  if (!Number.isFinite(invocation.createdAt)) throw invalidArgument('createdAt must be a number (epoch ms)')
  const context = invocation.context
  if (context !== undefined && (typeof context !== 'object' || context === null)) throw invalidArgument('context must be an object')
  const key = invocation.idempotencyKey
  // a lone surrogate cannot survive UTF-8 keys: two different keys would collide
  if (key !== undefined && (typeof key !== 'string' || LONE_SURROGATE.test(key))) {
    throw invalidArgument('idempotencyKey must be a well-formed string')
  }
}

/** What complete/reschedule/deadLetter need of the invocation they are given: it names a record key. */
export function checkStoredInvocation (invocation: StoredInvocation): void {
  if (typeof invocation !== 'object' || invocation === null) throw invalidArgument('invocation must be an object')
  checkFunction(invocation.fn)
  checkId(invocation.id)
  if (!Number.isSafeInteger(invocation.seq) || invocation.seq <= 0) throw invalidArgument(`invocation.seq must be a positive integer, got ${String(invocation.seq)}`)
}

export function checkAppendOptions (options: AppendOptions): void {
  if (!(options.maxStored >= 0)) throw invalidArgument(`maxStored must be a number >= 0, got ${String(options.maxStored)}`)
  if (!(options.idempotencyWindowMs >= 0)) throw invalidArgument(`idempotencyWindowMs must be a number >= 0, got ${String(options.idempotencyWindowMs)}`)
}

/** `Service/function`, as parseFunctionName accepts it: nothing that could reach into another key range. */
export function checkFunction (fn: unknown): asserts fn is string {
  parseFunctionName(fn, 'fn')
}

export function checkOptionalFunction (fn: unknown): asserts fn is string | undefined {
  if (fn !== undefined) checkFunction(fn)
}

export function checkLimit (limit: number): void {
  if (!(limit >= 0)) throw invalidArgument(`limit must be a number >= 0, got ${String(limit)}`)
}

export function checkSeq (seq: number): void {
  if (!Number.isSafeInteger(seq) || seq < 0) throw invalidArgument(`afterSeq must be an integer >= 0, got ${String(seq)}`)
}

export function checkId (id: unknown): asserts id is string {
  if (typeof id !== 'string' || id.length === 0) throw invalidArgument('an invocation id must be a non-empty string')
}

export function storeFailure (action: string, err: unknown): FnbusError {
  if (err instanceof FnbusError) return err
  return new FnbusError('FNBUS_STORE_FAILURE', `${action} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err })
}
