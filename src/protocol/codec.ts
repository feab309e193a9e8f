import { Packr, Unpackr, type Options } from 'msgpackr'

/**
 * The one MessagePack configuration of the bus: plain maps (no msgpackr records, so any MessagePack library
 * reads it), stateless between messages, binary fields decoded as views of the received buffer (no copy).
 * Map fields set to `undefined` are left out; an `undefined` value elsewhere travels as nil.
 *
 * Integers cross languages as integers: a 64-bit integer decodes as a number when it is within ±2^53 (a double
 * holds it exactly), as a BigInt beyond; `pack` writes every safe integer as a MessagePack integer.
 */
// skipValues and int64AsType 'auto' are msgpackr options its type declarations do not list yet
export const packr = new Packr({ useRecords: false, variableMapSize: true, encodeUndefinedAsNil: true, skipValues: [undefined] } as Options)
export const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' } as unknown as Options)

/**
 * A value as the bus writes it: msgpackr's bytes, with two corrections. msgpackr writes an integer beyond 32 bits as
 * a float64, which a strictly typed decoder on the other side refuses where it expects an integer (an epoch-ms
 * timestamp): here every safe integer is a MessagePack integer. And msgpackr 2.1 writes a multi-byte typed array
 * (Float64Array…) or a DataView as a `bin` of the wrong bytes (element values truncated to bytes, then whatever
 * its buffer held): here each is the `bin` of its own bytes, in memory order. The result is a view of msgpackr's
 * buffer, as `packr.pack` returns.
 */
export function pack (value: unknown): Buffer {
  const bytes = packr.pack(value)
  // msgpackr writes any view as a bin: only a value whose bytes hold a bin can have held a view to correct
  if (!integersAsIntegers(bytes) || typeof value !== 'object' || value === null) return bytes
  const corrected = viewsAsBytes(value)
  if (corrected === value) return bytes
  const again = packr.pack(corrected)
  integersAsIntegers(again)
  return again
}

/** A typed array whose elements are bytes, which msgpackr copies correctly (Buffer, Uint8Array, Int8Array, Uint8ClampedArray). */
function isByteArray (view: ArrayBufferView): boolean {
  return (view as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT === 1
}

/** The bytes a typed array or DataView covers, as a Buffer over the same memory. */
export function viewBytes (view: ArrayBufferView): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength)
}

/**
 * `value`, or a copy of it in which every array-buffer view msgpackr would write wrongly is a Buffer of its bytes.
 * Only what contains such a view is copied; anything else is returned as it is, with nothing allocated. A cyclic
 * value exhausts the stack here as it would in msgpackr; the caller reports either the same way.
 */
function viewsAsBytes (value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value
  if (ArrayBuffer.isView(value)) return isByteArray(value) ? value : viewBytes(value)
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i]
      if (typeof item !== 'object' || item === null) continue
      const written = viewsAsBytes(item)
      if (written !== item) (copy ??= value.slice())[i] = written
    }
    return copy ?? value
  }
  if (value instanceof Map) {
    let copy: Map<unknown, unknown> | undefined
    for (const [key, item] of value) {
      const written = viewsAsBytes(item)
      if (written !== item) (copy ??= new Map(value)).set(key, written)
    }
    return copy ?? value
  }
  if (value instanceof Set) {
    let changed = false
    const items = Array.from(value, item => {
      const written = viewsAsBytes(item)
      if (written !== item) changed = true
      return written
    })
    return changed ? new Set(items) : value
  }
  // a Date, an ArrayBuffer, a RegExp…: msgpackr's own forms, nothing inside to look at
  const proto: unknown = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null && !isObjectLike(value)) return value
  let copy: Record<string, unknown> | undefined
  const fields = value as Record<string, unknown>
  for (const key in fields) {
    const item = fields[key]
    if (typeof item !== 'object' || item === null) continue
    const written = viewsAsBytes(item)
    if (written !== item) (copy ??= { ...fields })[key] = written
  }
  return copy ?? value
}

/** An instance of a class that msgpackr writes as a plain map of its fields (not one of its built-in forms). */
function isObjectLike (value: object): boolean {
  return !(value instanceof Date || value instanceof RegExp || value instanceof Error || value instanceof ArrayBuffer)
}

const TWO_32 = 0x100000000

/**
 * Rewrites, in place, every float64 in `bytes` (one MessagePack value) that holds a safe integer as the 64-bit integer
 * of the same size (uint64 when positive, int64 when negative). msgpackr writes integers up to 32 bits as integers
 * already, so these are exactly the integers it wrote as floats. Returns whether the value holds a `bin`. One walk
 * over the value's heads, skipping strings and bins by their length: ~45 ns for a map of five fields.
 */
export function integersAsIntegers (bytes: Buffer): boolean {
  let holdsBin = false
  let pos = 0
  let pending = 1
  const end = bytes.length
  while (pending > 0 && pos < end) {
    pending--
    const head = bytes[pos] as number
    if (head < 0x80 || head >= 0xe0 || head === 0xc0 || head === 0xc2 || head === 0xc3) { pos += 1; continue }
    if ((head & 0xf0) === 0x80) { pending += (head & 0x0f) * 2; pos += 1; continue }
    if ((head & 0xf0) === 0x90) { pending += head & 0x0f; pos += 1; continue }
    if ((head & 0xe0) === 0xa0) { pos += 1 + (head & 0x1f); continue }
    switch (head) {
      case 0xcb: {
        const n = bytes.readDoubleBE(pos + 1)
        if (Number.isSafeInteger(n)) {
          const high = Math.floor(n / TWO_32)
          if (n < 0) {
            bytes[pos] = 0xd3; bytes.writeInt32BE(high, pos + 1)
          } else {
            bytes[pos] = 0xcf; bytes.writeUInt32BE(high, pos + 1)
          }
          bytes.writeUInt32BE(n - high * TWO_32, pos + 5)
        }
        pos += 9
        break
      }
      case 0xcc: case 0xd0: pos += 2; break
      case 0xcd: case 0xd1: pos += 3; break
      case 0xce: case 0xd2: case 0xca: pos += 5; break
      case 0xcf: case 0xd3: pos += 9; break
      case 0xd4: pos += 3; break
      case 0xd5: pos += 4; break
      case 0xd6: pos += 6; break
      case 0xd7: pos += 10; break
      case 0xd8: pos += 18; break
      case 0xd9: pos += 2 + (bytes[pos + 1] as number); break
      case 0xda: pos += 3 + bytes.readUInt16BE(pos + 1); break
      case 0xdb: pos += 5 + bytes.readUInt32BE(pos + 1); break
      case 0xc4: holdsBin = true; pos += 2 + (bytes[pos + 1] as number); break
      case 0xc5: holdsBin = true; pos += 3 + bytes.readUInt16BE(pos + 1); break
      case 0xc6: holdsBin = true; pos += 5 + bytes.readUInt32BE(pos + 1); break
      case 0xc7: pos += 3 + (bytes[pos + 1] as number); break
      case 0xc8: pos += 4 + bytes.readUInt16BE(pos + 1); break
      case 0xc9: pos += 6 + bytes.readUInt32BE(pos + 1); break
      case 0xdc: pending += bytes.readUInt16BE(pos + 1); pos += 3; break
      case 0xdd: pending += bytes.readUInt32BE(pos + 1); pos += 5; break
      case 0xde: pending += bytes.readUInt16BE(pos + 1) * 2; pos += 3; break
      case 0xdf: pending += bytes.readUInt32BE(pos + 1) * 2; pos += 5; break
      default: return holdsBin // 0xc1: never written
    }
  }
  return holdsBin
}
