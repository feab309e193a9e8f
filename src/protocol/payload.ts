import { pack, unpackr, viewBytes } from './codec.js'
import { FnbusError } from '../errors.js'

/**
 * How a payload travels: its bytes plus a kind, so that a string arrives as a string and a Buffer as a Buffer.
 * The gateway forwards the bytes without decoding them.
 */
export const PayloadKind = {
  /** Raw bytes (a Buffer, a typed array's or DataView's memory, an ArrayBuffer); the receiver gets a Buffer. */
  Bytes: 0,
  /** UTF-8 text; the receiver gets a string. */
  Text: 1,
  /** A MessagePack value (numbers, booleans, null, arrays, maps…). */
  MsgPack: 2,
} as const
// the values and their type under one name, as an enum would be
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type PayloadKind = typeof PayloadKind[keyof typeof PayloadKind]

export function isPayloadKind (value: unknown): value is PayloadKind {
  return value === 0 || value === 1 || value === 2
}

const NULL_MSGPACK = Buffer.from([0xc0])

/**
 * A payload that converts lazily between the value a handler sees and the bytes on the wire, and remembers both:
 * an in-process call never encodes, a forwarded call never decodes.
 */
export class Payload {
  #value: unknown
  #hasValue: boolean
  #bytes: Buffer | undefined
  #kind: PayloadKind | undefined

  private constructor (hasValue: boolean, value: unknown, kind: PayloadKind | undefined, bytes: Buffer | undefined) {
    this.#hasValue = hasValue
    this.#value = value
    this.#kind = kind
    this.#bytes = bytes
  }

  static of (value: unknown): Payload {
    return new Payload(true, value, undefined, undefined)
  }

  static fromWire (kind: PayloadKind, bytes: Buffer): Payload {
    return new Payload(false, undefined, kind, bytes)
  }

  get value (): unknown {
    if (!this.#hasValue) {
      this.#value = decodePayload(this.#kind as PayloadKind, this.#bytes as Buffer)
      this.#hasValue = true
    }
    return this.#value
  }

  /**
   * The value as a handler of its own gets it: what a remote worker would decode, never an object the caller still
   * holds. Decoded bytes are the receiver's already; text, numbers, booleans, null and undefined cannot be changed
   * and pass as they are; a Buffer, typed array or DataView is copied into a Buffer of its own (its bytes, as a remote
   * worker gets them); any other value (objects, arrays) takes the MessagePack round trip a remote call makes (its
   * bytes, once encoded, are kept).
   */
  get ownValue (): unknown {
    if (!this.#hasValue) return this.value
    const value = this.#value
    if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return value
    if (value instanceof Uint8Array) {
      // allocUnsafe + set: from the shared pool, and quicker than Buffer.from's generic path (measured ~90 vs ~140 ns at 64 B)
      const copy = Buffer.allocUnsafe(value.byteLength)
      copy.set(value)
      return copy
    }
    if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return Buffer.from(this.bytes)
    return decodePayload(this.kind, this.bytes)
  }

  get kind (): PayloadKind {
    if (this.#kind === undefined) this.#encode()
    return this.#kind as PayloadKind
  }

  get bytes (): Buffer {
    if (this.#bytes === undefined) this.#encode()
    return this.#bytes as Buffer
  }

  /** Size on the wire when it is known without encoding (bytes that came off the wire), else 0. */
  get encodedLength (): number {
    return this.#bytes === undefined ? 0 : this.#bytes.length
  }

  /** Size on the wire, the figure limits apply to. */
  get byteLength (): number {
    return this.bytes.length
  }

  #encode (): void {
    const [kind, bytes] = encodePayload(this.#value)
    this.#kind = kind
    this.#bytes = bytes
  }
}

/**
 * A string travels as text, and any memory as its bytes: a Buffer, every typed array (Float64Array's bytes, not its
 * numbers truncated to bytes) and DataView as the bytes it covers, in memory order, and an ArrayBuffer whole. Anything
 * else is one MessagePack value, with a typed array inside it written as `bin` of its bytes the same way.
 */
export function encodePayload (value: unknown): [PayloadKind, Buffer] {
  if (typeof value === 'string') return [PayloadKind.Text, Buffer.from(value, 'utf8')]
  if (Buffer.isBuffer(value)) return [PayloadKind.Bytes, value]
  if (ArrayBuffer.isView(value)) return [PayloadKind.Bytes, viewBytes(value)]
  if (value instanceof ArrayBuffer) return [PayloadKind.Bytes, Buffer.from(value)]
  if (value === undefined || value === null) return [PayloadKind.MsgPack, NULL_MSGPACK]
  try {
    return [PayloadKind.MsgPack, pack(value)]
  } catch (err) {
    throw new FnbusError('FNBUS_INVALID_ARGUMENT', `payload cannot be encoded: ${(err as Error).message}`, { cause: err })
  }
}

export function decodePayload (kind: PayloadKind, bytes: Buffer): unknown {
  switch (kind) {
    case PayloadKind.Bytes: return bytes
    case PayloadKind.Text: return bytes.toString('utf8')
    case PayloadKind.MsgPack:
      try {
        return unpackr.unpack(bytes)
      } catch (err) {
        throw new FnbusError('FNBUS_BAD_MESSAGE', `payload is not valid MessagePack: ${(err as Error).message}`, { cause: err })
      }
  }
}
