import { pack, unpackr } from './codec.js'

/**
 * The bus's hot-path MessagePack codec for envelopes: flat maps of short string keys to small scalars, strings and
 * byte strings, which every call crosses up to four times. msgpackr's general path (type dispatch, its shared
 * buffer, then a copy into ours) was the gateway's largest cost under load (a profile of the gateway under load: ~18%).
 *
 * It produces exactly the bytes the bus's `pack` produces (msgpackr with the bus's options, integers as integers:
 * codec.ts; a test holds the two against each other), and hands anything outside the envelope shape to msgpackr:
 * nested values (`ctx`, a queue answer), 64-bit integers beyond ±2^53, float32 and extensions are delegated value
 * by value, so they decode exactly as msgpackr decodes them.
 */

/**
 * Slab sizes: a writer starts small and doubles its slabs up to the largest, so an idle connection's writer holds a
 * kilobyte or so (from Node's shared buffer pool), and a busy one allocates rarely.
 */
const FIRST_SLAB_BYTES = 1024
const TWO_32 = 0x100000000
const SLAB_BYTES = 64 * 1024

/**
 * Writes MessagePack into slabs of memory and hands out finished pieces as views of them. A piece may begin with
 * room reserved for a header the caller fills in afterwards (the MQTT PUBLISH header, whose length depends on the
 * size of what follows), so a whole frame is one buffer written once: no concatenation, no copy into a frame.
 */
export class SlabWriter {
  #slab: Buffer = Buffer.allocUnsafe(0)
  #nextSlabBytes = FIRST_SLAB_BYTES
  /** Start of the piece being written (its reserved prefix included). */
  #start = 0
  pos = 0

  get buffer (): Buffer {
    return this.#slab
  }

  /** Where the current piece begins in `buffer` (it moves when the piece moves to a fresh slab). */
  get start (): number {
    return this.#start
  }

  /** Bytes written to the current piece, its prefix included. */
  get length (): number {
    return this.pos - this.#start
  }

  /** Starts a piece with `prefix` bytes reserved in front. */
  begin (prefix: number): void {
    this.#start = this.pos
    this.ensure(prefix)
    this.pos += prefix
  }

  /**
   * Makes room for `bytes` more in the current piece, moving it to a fresh slab if this one is too small. A piece
   * outgrowing the slab size gets twice what it needs: sized to fit exactly, every further envelope of a large frame
   * (64 calls of 1 KiB) moved the whole piece again — the gateway spent a tenth of its time copying.
   */
  ensure (bytes: number): void {
    if (this.pos + bytes <= this.#slab.length) return
    const used = this.pos - this.#start
    const needed = used + bytes
    const slab = Buffer.allocUnsafe(needed <= this.#nextSlabBytes ? this.#nextSlabBytes : Math.max(needed * 2, SLAB_BYTES))
    this.#nextSlabBytes = Math.min(this.#nextSlabBytes * 2, SLAB_BYTES)
    this.#slab.copy(slab, 0, this.#start, this.pos)
    this.#slab = slab
    this.#start = 0
    this.pos = used
  }

  /** Ends the current piece and returns it (a view; the writer never writes those bytes again). */
  finish (): Buffer {
    const piece = this.#slab.subarray(this.#start, this.pos)
    this.#start = this.pos
    return piece
  }

  /** Drops the current piece. */
  discard (): void {
    this.pos = this.#start
  }
}

/**
 * What of an envelope only msgpackr can encode, encoded ahead of writing: `undefined` when the envelope is all
 * scalars, strings and bytes (the common case), the packed nested values (`ctx`, a queue answer) in field order, or
 * — for a map of 16 fields or more, which no envelope of this protocol is — the whole map. This is the step that may
 * throw (a BigInt out of range, a cycle), so a sender can do it when the envelope is handed over and report it there.
 */
export type PreparedEnvelope = Buffer[] | Buffer | undefined

export function prepareEnvelope (env: object): PreparedEnvelope {
  const fields = env as Record<string, unknown>
  let nested: Buffer[] | undefined
  let count = 0
  for (const key in fields) {
    const value = fields[key]
    if (value === undefined) continue
    count++
    const writtenByHand = typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean' ||
      value === null || value instanceof Uint8Array
    // pack's output is a view of msgpackr's buffer, which its next call reuses: keep a copy
    if (!writtenByHand) (nested ??= []).push(Buffer.from(pack(value)))
  }
  return count >= 16 ? Buffer.from(pack(env)) : nested
}

/** Appends one envelope to `out`'s current piece (see writePreparedEnvelope); throws what prepareEnvelope throws. */
export function writeEnvelope (out: SlabWriter, env: object): void {
  writePreparedEnvelope(out, env, prepareEnvelope(env))
}

/**
 * Appends one envelope (a flat map; fields set to `undefined` are left out) to `out`'s current piece, with what
 * `prepareEnvelope` made of it; never throws. One pass: the map's header (a fixmap: envelopes have fewer than 16
 * fields) is written first and its count filled in at the end. `prepared` is required: `undefined` is what
 * prepareEnvelope returns for the common, all-scalar envelope, not "prepare it here".
 */
export function writePreparedEnvelope (out: SlabWriter, env: object, prepared: PreparedEnvelope): void {
  if (Buffer.isBuffer(prepared)) {
    out.ensure(prepared.length)
    out.pos += prepared.copy(out.buffer, out.pos)
    return
  }
  const fields = env as Record<string, unknown>
  const start = out.length
  out.ensure(1)
  out.pos++
  let count = 0
  let nestedIndex = 0
  for (const key in fields) {
    const value = fields[key]
    if (value === undefined) continue
    count++
    // the key, then room for the value: a bound by type, or the bytes msgpackr made of it
    let nested: Buffer | undefined
    let bound = 1 + key.length * 3
    switch (typeof value) {
      case 'number': bound += 9; break
      case 'string': bound += 5 + value.length * 3; break
      case 'boolean': bound += 1; break
      default:
        if (value === null) {
          bound += 1
        } else if (value instanceof Uint8Array) {
          bound += 5 + value.length
        } else {
          nested = (prepared as Buffer[])[nestedIndex++] as Buffer
          bound += nested.length
        }
    }
    out.ensure(bound)
    const buf = out.buffer
    let pos = writeString(buf, out.pos, key)
    switch (typeof value) {
      case 'number': pos = writeNumber(buf, pos, value); break
      case 'string': pos = writeString(buf, pos, value); break
      case 'boolean': buf[pos++] = value ? 0xc3 : 0xc2; break
      default:
        if (value === null) buf[pos++] = 0xc0
        else if (nested !== undefined) pos += nested.copy(buf, pos)
        else pos = writeBytes(buf, pos, value as Uint8Array)
    }
    out.pos = pos
  }
  out.buffer[out.start + start] = 0x80 | count
}

/** The bus's choice for a number: the smallest integer form for a safe integer (an epoch-ms `dl` is a uint64), else a float64. */
function writeNumber (buf: Buffer, pos: number, n: number): number {
  if (Number.isSafeInteger(n)) {
    if (n >= 0) {
      if (n < 0x80) { buf[pos] = n; return pos + 1 }
      if (n < 0x100) { buf[pos] = 0xcc; buf[pos + 1] = n; return pos + 2 }
      if (n < 0x10000) { buf[pos] = 0xcd; buf.writeUInt16BE(n, pos + 1); return pos + 3 }
      if (n < TWO_32) { buf[pos] = 0xce; buf.writeUInt32BE(n, pos + 1); return pos + 5 }
      const high = Math.floor(n / TWO_32)
      buf[pos] = 0xcf; buf.writeUInt32BE(high, pos + 1); buf.writeUInt32BE(n - high * TWO_32, pos + 5)
      return pos + 9
    } else {
      if (n >= -0x20) { buf[pos] = n & 0xff; return pos + 1 }
      if (n >= -0x80) { buf[pos] = 0xd0; buf.writeInt8(n, pos + 1); return pos + 2 }
      if (n >= -0x8000) { buf[pos] = 0xd1; buf.writeInt16BE(n, pos + 1); return pos + 3 }
      if (n >= -0x80000000) { buf[pos] = 0xd2; buf.writeInt32BE(n, pos + 1); return pos + 5 }
      const high = Math.floor(n / TWO_32)
      buf[pos] = 0xd3; buf.writeInt32BE(high, pos + 1); buf.writeUInt32BE(n - high * TWO_32, pos + 5)
      return pos + 9
    }
  }
  buf[pos] = 0xcb
  buf.writeDoubleBE(n, pos + 1)
  return pos + 9
}

function writeString (buf: Buffer, pos: number, s: string): number {
  const length = s.length
  if (length < 0x100) {
    // ASCII up to 255 characters (keys, names, codes, ids, idempotency keys): byte by byte, no encoder call
    const header = length < 32 ? 1 : 2
    let i = 0
    for (; i < length; i++) {
      const c = s.charCodeAt(i)
      if (c >= 0x80) break
      buf[pos + header + i] = c
    }
    if (i === length) {
      if (header === 1) {
        buf[pos] = 0xa0 | length
      } else {
        buf[pos] = 0xd9; buf[pos + 1] = length
      }
      return pos + header + length
    }
  }
  const bytes = Buffer.byteLength(s, 'utf8')
  const header = bytes < 32 ? 1 : bytes < 0x100 ? 2 : bytes < 0x10000 ? 3 : 5
  buf.write(s, pos + header, bytes, 'utf8')
  if (header === 1) {
    buf[pos] = 0xa0 | bytes
  } else if (header === 2) {
    buf[pos] = 0xd9; buf[pos + 1] = bytes
  } else if (header === 3) {
    buf[pos] = 0xda; buf.writeUInt16BE(bytes, pos + 1)
  } else {
    buf[pos] = 0xdb; buf.writeUInt32BE(bytes, pos + 1)
  }
  return pos + header + bytes
}

function writeBytes (buf: Buffer, pos: number, bytes: Uint8Array): number {
  const n = bytes.length
  if (n < 0x100) {
    buf[pos++] = 0xc4; buf[pos++] = n
  } else if (n < 0x10000) {
    buf[pos] = 0xc5; buf.writeUInt16BE(n, pos + 1); pos += 3
  } else {
    buf[pos] = 0xc6; buf.writeUInt32BE(n, pos + 1); pos += 5
  }
  buf.set(bytes, pos)
  return pos + n
}

/**
 * Splits a bus message into its envelopes (maps), or returns `undefined` when the bytes are anything but
 * well-formed maps with string keys: the caller then takes msgpackr's path, which decodes or rejects them exactly
 * as before. Byte strings are views of `bytes` (no copy), as msgpackr gives them.
 */
export function decodeEnvelopes (bytes: Buffer): Record<string, unknown>[] | undefined {
  const maps: Record<string, unknown>[] = []
  const reader = new Reader(bytes)
  while (reader.pos < bytes.length) {
    const map = reader.map()
    if (map === undefined) return undefined
    maps.push(map)
  }
  return maps.length === 0 ? undefined : maps
}

/** Marks a value the fast reader leaves to msgpackr (truncated, or an unusual form at the top level). */
const UNREAD = Symbol('unread')

class Reader {
  pos = 0
  constructor (readonly buf: Buffer) {}

  map (): Record<string, unknown> | undefined {
    const buf = this.buf
    const head = buf[this.pos] as number
    let count: number
    if ((head & 0xf0) === 0x80) {
      count = head & 0x0f
      this.pos += 1
    } else if (head === 0xde && this.pos + 3 <= buf.length) {
      count = buf.readUInt16BE(this.pos + 1)
      this.pos += 3
    } else {
      return undefined
    }
    const map: Record<string, unknown> = {}
    for (let i = 0; i < count; i++) {
      const key = this.key()
      if (key === undefined) return undefined
      const value = this.value()
      if (value === UNREAD) return undefined
      map[key] = value
    }
    return map
  }

  key (): string | undefined {
    const buf = this.buf
    const head = buf[this.pos]
    if (head === undefined || (head & 0xe0) !== 0xa0) return undefined
    const length = head & 0x1f
    const start = this.pos + 1
    const end = start + length
    if (end > buf.length) return undefined
    this.pos = end
    const key = shortString(buf, start, length) ?? buf.toString('utf8', start, end)
    // msgpackr guards this one: an assignment would set the object's prototype
    return key === '__proto__' ? undefined : key
  }

  value (): unknown {
    const buf = this.buf
    const pos = this.pos
    const head = buf[pos]
    if (head === undefined) return UNREAD
    if (head < 0x80) { this.pos = pos + 1; return head }
    if (head >= 0xe0) { this.pos = pos + 1; return head - 0x100 }
    if ((head & 0xe0) === 0xa0) return this.string(pos + 1, head & 0x1f)
    const left = buf.length - pos - 1
    switch (head) {
      case 0xc0: this.pos = pos + 1; return null
      case 0xc2: this.pos = pos + 1; return false
      case 0xc3: this.pos = pos + 1; return true
      case 0xcc: if (left < 1) return UNREAD; this.pos = pos + 2; return buf[pos + 1]
      case 0xcd: if (left < 2) return UNREAD; this.pos = pos + 3; return buf.readUInt16BE(pos + 1)
      case 0xce: if (left < 4) return UNREAD; this.pos = pos + 5; return buf.readUInt32BE(pos + 1)
      case 0xd0: if (left < 1) return UNREAD; this.pos = pos + 2; return buf.readInt8(pos + 1)
      case 0xd1: if (left < 2) return UNREAD; this.pos = pos + 3; return buf.readInt16BE(pos + 1)
      case 0xd2: if (left < 4) return UNREAD; this.pos = pos + 5; return buf.readInt32BE(pos + 1)
      case 0xcb: if (left < 8) return UNREAD; this.pos = pos + 9; return buf.readDoubleBE(pos + 1)
      case 0xcf: if (left < 8) return UNREAD; return this.uint64(pos)
      case 0xd3: if (left < 8) return UNREAD; return this.int64(pos)
      case 0xd9: if (left < 1) return UNREAD; return this.string(pos + 2, buf[pos + 1] as number)
      case 0xda: if (left < 2) return UNREAD; return this.string(pos + 3, buf.readUInt16BE(pos + 1))
      case 0xdb: if (left < 4) return UNREAD; return this.string(pos + 5, buf.readUInt32BE(pos + 1))
      case 0xc4: if (left < 1) return UNREAD; return this.bytes(pos + 2, buf[pos + 1] as number)
      case 0xc5: if (left < 2) return UNREAD; return this.bytes(pos + 3, buf.readUInt16BE(pos + 1))
      case 0xc6: if (left < 4) return UNREAD; return this.bytes(pos + 5, buf.readUInt32BE(pos + 1))
      default: return this.delegated()
    }
  }

  /** As msgpackr decodes it (`int64AsType: 'auto'`): a number up to 2^53, a BigInt beyond (left to msgpackr). */
  uint64 (pos: number): unknown {
    const high = this.buf.readUInt32BE(pos + 1)
    const low = this.buf.readUInt32BE(pos + 5)
    if (high > 0x200000 || (high === 0x200000 && low !== 0)) return this.delegated()
    this.pos = pos + 9
    return high * TWO_32 + low
  }

  /** As msgpackr decodes it: a number from -2^53 to 2^53, a BigInt beyond. */
  int64 (pos: number): unknown {
    const high = this.buf.readInt32BE(pos + 1)
    const low = this.buf.readUInt32BE(pos + 5)
    if (high > 0x200000 || (high === 0x200000 && low !== 0) || high < -0x200000) return this.delegated()
    this.pos = pos + 9
    return high * TWO_32 + low
  }

  string (start: number, length: number): unknown {
    const end = start + length
    if (end > this.buf.length) return UNREAD
    this.pos = end
    return (length <= 6 ? shortString(this.buf, start, length) : undefined) ?? this.buf.toString('utf8', start, end)
  }

  bytes (start: number, length: number): unknown {
    const end = start + length
    if (end > this.buf.length) return UNREAD
    this.pos = end
    return this.buf.subarray(start, end)
  }

  /** A nested map or array, or a rarer scalar: found by skipping it, decoded by msgpackr as before. */
  delegated (): unknown {
    const start = this.pos
    if (!this.skip()) return UNREAD
    try {
      return unpackr.unpack(this.buf.subarray(start, this.pos))
    } catch {
      return UNREAD
    }
  }

  /** Moves past one complete value; false when the bytes end first or hold no valid value. */
  skip (): boolean {
    const buf = this.buf
    let pending = 1
    while (pending > 0) {
      pending--
      const head = buf[this.pos]
      if (head === undefined) return false
      let size = 1
      let extra = 0
      if (head < 0x80 || head >= 0xe0 || head === 0xc0 || head === 0xc2 || head === 0xc3) size = 1
      else if ((head & 0xf0) === 0x80) pending += (head & 0x0f) * 2
      else if ((head & 0xf0) === 0x90) pending += head & 0x0f
      else if ((head & 0xe0) === 0xa0) size = 1 + (head & 0x1f)
      else {
        const left = buf.length - this.pos - 1
        const need = (n: number): boolean => left >= n
        switch (head) {
          case 0xcc: case 0xd0: size = 2; break
          case 0xcd: case 0xd1: size = 3; break
          case 0xce: case 0xd2: case 0xca: size = 5; break
          case 0xcf: case 0xd3: case 0xcb: size = 9; break
          case 0xd4: size = 3; break
          case 0xd5: size = 4; break
          case 0xd6: size = 6; break
          case 0xd7: size = 10; break
          case 0xd8: size = 18; break
          case 0xc4: case 0xd9: if (!need(1)) return false; size = 2 + (buf[this.pos + 1] as number); break
          case 0xc5: case 0xda: if (!need(2)) return false; size = 3 + buf.readUInt16BE(this.pos + 1); break
          case 0xc6: case 0xdb: if (!need(4)) return false; size = 5 + buf.readUInt32BE(this.pos + 1); break
          case 0xc7: if (!need(1)) return false; size = 3 + (buf[this.pos + 1] as number); break
          case 0xc8: if (!need(2)) return false; size = 4 + buf.readUInt16BE(this.pos + 1); break
          case 0xc9: if (!need(4)) return false; size = 6 + buf.readUInt32BE(this.pos + 1); break
          case 0xdc: if (!need(2)) return false; size = 3; extra = buf.readUInt16BE(this.pos + 1); break
          case 0xdd: if (!need(4)) return false; size = 5; extra = buf.readUInt32BE(this.pos + 1); break
          case 0xde: if (!need(2)) return false; size = 3; extra = buf.readUInt16BE(this.pos + 1) * 2; break
          case 0xdf: if (!need(4)) return false; size = 5; extra = buf.readUInt32BE(this.pos + 1) * 2; break
          default: return false // 0xc1 is never used
        }
      }
      if (this.pos + size > buf.length) return false
      this.pos += size
      pending += extra
      // a count larger than the bytes left cannot be real: stop before looping over it
      if (pending > buf.length - this.pos) return false
    }
    return true
  }
}

/**
 * Field names and the short values that recur in every envelope (`t`, `it`…), as the same string objects each time:
 * no decoding, and V8 looks a property up by a string it has seen much faster than by a new one. Keyed by the bytes
 * themselves (up to 6, in one number); bounded, so that a peer sending ever new names cannot grow it.
 */
const shortStrings = new Map<number, string>()
const SHORT_STRINGS_MAX = 4096

/** A string of at most 6 ASCII bytes from the cache; undefined when longer or not ASCII. */
function shortString (buf: Buffer, start: number, length: number): string | undefined {
  if (length > 6) return undefined
  let code = length
  for (let i = 0; i < length; i++) {
    const c = buf[start + i] as number
    if (c >= 0x80) return undefined
    code = code * 128 + c
  }
  let s = shortStrings.get(code)
  if (s === undefined) {
    s = buf.toString('latin1', start, start + length)
    if (shortStrings.size < SHORT_STRINGS_MAX) shortStrings.set(code, s)
  }
  return s
}
