import { FnbusError, type ErrorCode } from '../errors.js'
import { unpackr } from './codec.js'
import { decodeEnvelopes, SlabWriter, writeEnvelope } from './envelope-codec.js'
import { measureContext } from './context.js'
import { describeValue, isIdempotencyKey, MAX_IDEMPOTENCY_KEY_LENGTH } from './names.js'
import { isPayloadKind, type PayloadKind } from './payload.js'

/**
 * The bus's wire contract: every MQTT message on a `$fn/` topic carries one or more MessagePack maps
 * (envelopes) back to back. Field names are short because they travel with every call; docs/protocol.md
 * documents each one.
 */
export const PROTOCOL_VERSION = 1
export const SUPPORTED_VERSIONS: readonly number[] = [PROTOCOL_VERSION]

export type InvocationType = 'Sync' | 'Async'
export type FunctionErrorKind = 'Handled' | 'Unhandled'

interface Base { v: number }

/** client → gateway: opens the bus session; answered by `welcome` (or `error` FNBUS_PROTOCOL_MISMATCH). */
export interface Hello extends Base { t: 'hello', id: number, sdk?: string }
/** gateway → client. */
export interface Welcome extends Base { t: 'welcome', id: number, gw: string, maxPayload: number, maxFrame: number }
/** client → gateway: invoke a function. `id` is the caller's correlation id, echoed in the answer. */
export interface Call extends Base {
  t: 'call', id: number, fn: string, it: InvocationType, pk: PayloadKind, p: Buffer
  /** Timeout in ms (the gateway's default when absent). */
  to?: number
  /** Sync only: how long to wait for a worker to appear instead of failing FNBUS_FUNCTION_NOT_FOUND. */
  ww?: number
  /** Invoker context, a map. */
  ctx?: Record<string, unknown>
  /** Async only: idempotency key. */
  ik?: string
}
/** gateway → caller: a Sync call's outcome. */
export interface Reply extends Base { t: 'reply', id: number, fe?: FunctionErrorKind, pk: PayloadKind, p: Buffer }
/** gateway → caller: an Async call is stored. */
export interface Accepted extends Base { t: 'accepted', id: number, iid: string }
/**
 * gateway → client: a request failed. `id` echoes the failed envelope's `id` when it was a non-negative safe integer
 * (even one out of range), else 0.
 */
export interface ErrorEnvelope extends Base { t: 'error', id: number, code: string, msg: string }
/** worker → gateway: serve `fn` with at most `conc` calls at once. */
export interface Register extends Base { t: 'reg', id: number, fn: string, conc: number }
/** worker → gateway: stop serving `fn` (calls in flight still complete). */
export interface Unregister extends Base { t: 'unreg', id: number, fn: string }
/** client → gateway: cancel a stored Async invocation that has not started; answered by `ack`. */
export interface Cancel extends Base { t: 'cancel', id: number, iid: string }
/** client → gateway: an operator request on stored Async invocations; answered by `reply` (a MessagePack value). */
export interface QueueRequest extends Base {
  t: 'queue', id: number, op: QueueOperation
  /** `Service/function`; all functions when absent. */
  fn?: string
  /** `retry` of one dead invocation. */
  iid?: string
  /** `dead`: how many to list. */
  limit?: number
}
export type QueueOperation = 'ls' | 'dead' | 'retry' | 'purge'
/** client → gateway: the gateway's status (functions, workers, queues, uptime); answered by `reply` (a MessagePack map). */
export interface StatusRequest extends Base { t: 'status', id: number }
/** client → gateway: start new processes of a supervised function (after its module changed); answered by `reply` `{restarted: n}`. */
export interface RestartRequest extends Base { t: 'restart', id: number, fn: string }
/** gateway → client: a `reg`/`unreg`/`cancel` took effect. */
export interface Ack extends Base { t: 'ack', id: number }
/** gateway → worker: run one invocation. `id` is the delivery id to answer with. */
export interface Invoke extends Base {
  t: 'invoke', id: number, fn: string, it: InvocationType, rid: string, dl: number, pk: PayloadKind, p: Buffer
  ctx?: Record<string, unknown>
}
/**
 * worker → gateway: the outcome of a delivery. Either a value (`pk`/`p`, with `fe` when the function failed),
 * or a bus error (`code`/`msg`) when the worker could not produce one (its deadline passed, the result was too large).
 */
export interface Result extends Base {
  t: 'result', id: number, fe?: FunctionErrorKind, pk?: PayloadKind, p?: Buffer, code?: string, msg?: string
}

export type Envelope = Hello | Welcome | Call | Reply | Accepted | ErrorEnvelope | Register | Unregister | Cancel | QueueRequest | StatusRequest | RestartRequest | Ack | Invoke | Result
export type EnvelopeType = Envelope['t']

/** An envelope's fields but the version, for each type of the union. */
export type EnvelopeFields = Envelope extends infer E ? E extends Envelope ? Omit<E, 'v'> : never : never

/** Builds an envelope with the current version; the caller supplies everything but `v`. */
export function envelope (fields: EnvelopeFields): Envelope {
  return { v: PROTOCOL_VERSION, ...fields } as Envelope
}

const scratch = new SlabWriter()

export function encodeEnvelope (env: Envelope): Buffer {
  return encodeMessage([env])
}

/** Several envelopes in one MQTT message (batching): they are simply concatenated. */
export function encodeMessage (envs: readonly Envelope[]): Buffer {
  scratch.begin(0)
  try {
    for (const env of envs) writeEnvelope(scratch, env)
  } catch (err) {
    scratch.discard()
    throw err
  }
  return scratch.finish()
}

/** A message that could not be taken apart; `id` is set when the offending envelope named its request. */
export class EnvelopeError extends FnbusError {
  readonly requestId: number
  constructor (code: ErrorCode, message: string, requestId = 0) {
    super(code, message)
    this.requestId = requestId
  }
}

/** A decoded MessagePack map (msgpackr also yields arrays, Buffers and its own marker objects). */
function isPlainMap (value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** Splits one MQTT payload into raw maps. Throws EnvelopeError(FNBUS_BAD_MESSAGE) when it is not MessagePack maps. */
export function decodeMessage (bytes: Buffer): Record<string, unknown>[] {
  const envelopes = decodeEnvelopes(bytes)
  if (envelopes !== undefined) return envelopes
  // anything unusual: msgpackr decodes it, or says what is wrong with it
  let values: unknown[]
  try {
    values = unpackr.unpackMultiple(bytes) as unknown[]
  } catch (err) {
    throw new EnvelopeError('FNBUS_BAD_MESSAGE', `bus message is not MessagePack: ${(err as Error).message}`)
  }
  if (values.length === 0) throw new EnvelopeError('FNBUS_BAD_MESSAGE', 'bus message is empty')
  for (const value of values) {
    if (!isPlainMap(value)) {
      throw new EnvelopeError('FNBUS_BAD_MESSAGE', 'bus message holds something other than envelopes (maps)')
    }
  }
  return values as Record<string, unknown>[]
}

const isUint = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
/** A request or delivery id: what every language holds in an unsigned 32-bit integer, 0 excluded (it means "none"). */
export const MAX_REQUEST_ID = 0xffffffff
const isRequestId = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 1 && x <= MAX_REQUEST_ID
const isString = (x: unknown): x is string => typeof x === 'string'
const isBytes = (x: unknown): x is Buffer => Buffer.isBuffer(x)
const isMap = (x: unknown): x is Record<string, unknown> => isPlainMap(x)
const isInvocationType = (x: unknown): x is InvocationType => x === 'Sync' || x === 'Async'
const isFunctionError = (x: unknown): x is FunctionErrorKind => x === 'Handled' || x === 'Unhandled'
const isQueueOperation = (x: unknown): x is QueueOperation => x === 'ls' || x === 'dead' || x === 'retry' || x === 'purge'

type Check = (x: unknown) => boolean
/** A field's check, whether it is required, and what the check demands when that is more than its type. */
interface FieldSpec { readonly [field: string]: readonly [Check, 'required' | 'optional', string?] }

const req = (check: Check, rule?: string) => [check, 'required', rule] as const
const opt = (check: Check, rule?: string) => [check, 'optional', rule] as const

const ID_RULE = `an integer from 1 to ${MAX_REQUEST_ID}`
const id = req(isRequestId, ID_RULE)

/** The fields of each envelope type. One table, so the validator and docs/protocol.md cannot drift apart silently. */
export const ENVELOPE_FIELDS: { readonly [T in EnvelopeType]: FieldSpec } = {
  hello: { id, sdk: opt(isString) },
  welcome: { id, gw: req(isString), maxPayload: req(isUint), maxFrame: req(isUint) },
  call: {
    id, fn: req(isString), it: req(isInvocationType), pk: req(isPayloadKind), p: req(isBytes),
    to: opt(isUint), ww: opt(isUint), ctx: opt(isMap),
    ik: opt(isIdempotencyKey, `1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters, no space`),
  },
  reply: { id, fe: opt(isFunctionError), pk: req(isPayloadKind), p: req(isBytes) },
  accepted: { id, iid: req(isString) },
  // the one id that may be 0 (no request named) or out of range (it echoes what the sender wrote)
  error: { id: req(isUint), code: req(isString), msg: req(isString) },
  reg: { id, fn: req(isString), conc: req(isUint) },
  unreg: { id, fn: req(isString) },
  cancel: { id, iid: req(isString) },
  queue: { id, op: req(isQueueOperation), fn: opt(isString), iid: opt(isString), limit: opt(isUint) },
  status: { id },
  restart: { id, fn: req(isString) },
  ack: { id },
  invoke: {
    id, fn: req(isString), it: req(isInvocationType), rid: req(isString), dl: req(isUint),
    pk: req(isPayloadKind), p: req(isBytes), ctx: opt(isMap),
  },
  result: {
    id, fe: opt(isFunctionError), pk: opt(isPayloadKind), p: opt(isBytes), code: opt(isString), msg: opt(isString),
  },
}

/** ENVELOPE_FIELDS as arrays: the check of every envelope walks them. */
const FIELD_CHECKS = Object.fromEntries(Object.entries(ENVELOPE_FIELDS).map(([type, fields]) => [
  type,
  Object.entries(fields).map(([name, [check, presence, rule]]) => ({ name, check, required: presence === 'required', rule })),
])) as unknown as { readonly [T in EnvelopeType]: readonly { readonly name: string, readonly check: Check, readonly required: boolean, readonly rule: string | undefined }[] }

/** What parsing needs to know of the receiver's limits. */
export interface EnvelopeLimits {
  /** The largest invoker context (`ctx`) a `call` may carry, as MessagePack bytes. */
  readonly maxContextBytes: number
}

const NO_LIMITS: EnvelopeLimits = { maxContextBytes: Infinity }

/**
 * Checks one raw map against its type's fields. A wrong version is FNBUS_PROTOCOL_MISMATCH; anything else
 * malformed is FNBUS_BAD_MESSAGE naming the field, and an invoker context over `limits.maxContextBytes`
 * FNBUS_PAYLOAD_TOO_LARGE. Unknown fields are ignored (forward compatibility). The error carries the envelope's `id`
 * whenever it was a non-negative safe integer, in range or not, so that the sender learns which request failed.
 */
export function parseEnvelope (raw: Record<string, unknown>, limits: EnvelopeLimits = NO_LIMITS): Envelope {
  const id = isUint(raw.id) ? raw.id : 0
  if (raw.v !== PROTOCOL_VERSION) {
    throw new EnvelopeError('FNBUS_PROTOCOL_MISMATCH',
      `bus protocol version ${describeValue(raw.v)} is not supported; this side speaks ${SUPPORTED_VERSIONS.join(', ')}`, id)
  }
  const type = raw.t
  if (typeof type !== 'string' || !Object.hasOwn(ENVELOPE_FIELDS, type)) {
    throw new EnvelopeError('FNBUS_BAD_MESSAGE', `unknown envelope type ${describeValue(type)}`, id)
  }
  for (const { name, check, required, rule } of FIELD_CHECKS[type as EnvelopeType]) {
    const value = raw[name]
    if (value === undefined || value === null) {
      if (required) throw new EnvelopeError('FNBUS_BAD_MESSAGE', `${type} envelope lacks field "${name}"`, id)
      // a nil field counts as absent; `delete` only where there is something to delete (it slows the object down)
      if (name in raw) delete raw[name]
    } else if (!check(value)) {
      const what = rule === undefined ? '' : ` (${rule}, got ${describeValue(value)})`
      throw new EnvelopeError('FNBUS_BAD_MESSAGE', `${type} envelope has a malformed field "${name}"${what}`, id)
    }
  }
  if (raw.ctx !== undefined && (type === 'call' || type === 'invoke')) checkContextField(type, raw.ctx, limits.maxContextBytes, id)
  return raw as unknown as Envelope
}

function checkContextField (type: string, ctx: unknown, maxBytes: number, id: number): void {
  const size = measureContext(ctx, maxBytes, true)
  if (typeof size === 'string') throw new EnvelopeError('FNBUS_BAD_MESSAGE', `${type} envelope's ctx ${size}`, id)
  if (size > maxBytes) {
    throw new EnvelopeError('FNBUS_PAYLOAD_TOO_LARGE', `${type} envelope's ctx exceeds ${maxBytes} bytes (limits.maxContextBytes)`, id)
  }
}
