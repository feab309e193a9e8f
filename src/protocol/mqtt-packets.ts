/*
 * The MQTT 3.1.1 packets a client of the bus sends and reads, as pure functions: what the SDK's own socket transport
 * and the bridges' connections to remote brokers need and nothing more (no will, no MQTT 5). The `$fn/up` frames themselves are built by
 * the envelope batcher (batcher.ts, publish-frame.ts); this module builds the rest and splits what arrives into
 * packets. Nothing here touches a socket.
 */

/** Control packet types [MQTT-2.2.1]. */
export const enum PacketType {
  Connect = 1, Connack = 2, Publish = 3, Puback = 4, Pubrec = 5, Pubrel = 6, Pubcomp = 7,
  Subscribe = 8, Suback = 9, Unsubscribe = 10, Unsuback = 11, Pingreq = 12, Pingresp = 13, Disconnect = 14,
}

export const PINGREQ: Buffer = Buffer.from([0xc0, 0x00])
export const DISCONNECT: Buffer = Buffer.from([0xe0, 0x00])

/** What CONNACK's return codes 1–5 say [MQTT-3.2.2.3], in the words MQTT.js uses. */
export const CONNACK_MESSAGES: readonly string[] = Object.freeze([
  '', 'Unacceptable protocol version', 'Identifier rejected', 'Server unavailable', 'Bad username or password', 'Not authorized',
])

export interface ConnectFields {
  readonly clientId: string
  readonly username?: string
  readonly password?: string | Buffer
  /** Seconds. */
  readonly keepalive: number
  /** Default true; false asks the broker to keep the session (subscriptions, queued messages) across connections. */
  readonly clean?: boolean
}

/** A CONNECT of MQTT 3.1.1. */
export function encodeConnect (fields: ConnectFields): Buffer {
  let flags = fields.clean === false ? 0 : 0x02
  const strings: Buffer[] = [Buffer.from(fields.clientId, 'utf8')]
  if (fields.username !== undefined) {
    flags |= 0x80
    strings.push(Buffer.from(fields.username, 'utf8'))
  }
  if (fields.password !== undefined) {
    flags |= 0x40
    strings.push(typeof fields.password === 'string' ? Buffer.from(fields.password, 'utf8') : fields.password)
  }
  const variable = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, flags, (fields.keepalive >> 8) & 0xff, fields.keepalive & 0xff])
  return packet(0x10, [variable, ...strings.map(lengthPrefixed)])
}

/**
 * A PUBLISH; QoS 1 and 2 carry `packetId`. Written into one buffer (a bridge writes one per message forwarded: no
 * parts to join). `dup` marks a resend [MQTT-3.3.1-1].
 */
export function encodePublish (topic: string, payload: Buffer, qos: 0 | 1 | 2, retain: boolean, packetId = 0, dup = false): Buffer {
  const topicBytes = Buffer.byteLength(topic)
  const remaining = 2 + topicBytes + (qos > 0 ? 2 : 0) + payload.length
  const out = Buffer.allocUnsafe(1 + lengthBytes(remaining) + remaining)
  out[0] = 0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 1 : 0)
  let at = writeLength(out, 1, remaining)
  out[at++] = topicBytes >> 8
  out[at++] = topicBytes & 0xff
  at += out.write(topic, at, 'utf8')
  if (qos > 0) {
    out[at++] = (packetId >> 8) & 0xff
    out[at++] = packetId & 0xff
  }
  payload.copy(out, at)
  return out
}

/** A SUBSCRIBE of one filter or more at `qos`. */
export function encodeSubscribe (packetId: number, filters: readonly string[], qos: 0 | 1 | 2): Buffer {
  return encodeSubscriptions(packetId, filters.map(filter => ({ filter, qos })))
}

/** A SUBSCRIBE of filters each at its own QoS; its SUBACK grants them in the same order. */
export function encodeSubscriptions (packetId: number, subscriptions: ReadonlyArray<{ readonly filter: string, readonly qos: 0 | 1 | 2 }>): Buffer {
  const parts: Buffer[] = [u16(packetId)]
  for (const { filter, qos } of subscriptions) parts.push(lengthPrefixed(Buffer.from(filter, 'utf8')), Buffer.from([qos]))
  return packet(0x82, parts)
}

export function encodeUnsubscribe (packetId: number, filter: string): Buffer {
  return packet(0xa2, [u16(packetId), lengthPrefixed(Buffer.from(filter, 'utf8'))])
}

/** PUBACK, PUBREC, PUBREL or PUBCOMP of `packetId` (PUBREL's reserved flags are 0010 [MQTT-3.6.1-1]). */
export function encodeAck (type: PacketType.Puback | PacketType.Pubrec | PacketType.Pubrel | PacketType.Pubcomp, packetId: number): Buffer {
  return Buffer.from([(type << 4) | (type === PacketType.Pubrel ? 0x02 : 0), 2, (packetId >> 8) & 0xff, packetId & 0xff])
}

export interface InboundPublish {
  readonly topic: string
  /** A view of the packet's bytes. */
  readonly payload: Buffer
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
  readonly packetId: number
}

/** A PUBLISH's fields from its flags and body; undefined when they do not add up (QoS 3, a topic past the end). */
export function decodePublish (flags: number, body: Buffer): InboundPublish | undefined {
  const qos = (flags >> 1) & 0x03
  if (qos === 3 || body.length < 2) return undefined
  const topicLength = body.readUInt16BE(0)
  let at = 2 + topicLength
  if (at > body.length) return undefined
  const topic = body.toString('utf8', 2, at)
  let packetId = 0
  if (qos > 0) {
    if (at + 2 > body.length) return undefined
    packetId = body.readUInt16BE(at)
    at += 2
  }
  return { topic, payload: body.subarray(at), qos: qos as 0 | 1 | 2, retain: (flags & 1) === 1, packetId }
}

/** The packet identifier that opens an acknowledgement's body (PUBACK…UNSUBACK, SUBACK); undefined if it is short. */
export function decodePacketId (body: Buffer): number | undefined {
  return body.length < 2 ? undefined : body.readUInt16BE(0)
}

/** CONNACK's return code; undefined when the body is not two bytes. */
export function decodeConnack (body: Buffer): number | undefined {
  return body.length === 2 ? body[1] : undefined
}

/**
 * Splits a byte stream into packets: the SDK's one MQTT framing, under its socket transport and under the inbox
 * reader that sits in front of MQTT.js (inbox-reader.ts). It keeps at most one unfinished packet, and refuses
 * (returns a reason; the stream cannot be read on from there, and what was not consumed is `take()`n) a packet whose
 * declared length exceeds `maxBytes()` — read when the packet's header is, so a bound that grows (the gateway's, once
 * it says it) applies from the next packet — or a length that takes a fifth byte. A whole packet inside one chunk is
 * handed on as a view of that chunk, not copied.
 */
export class PacketReader {
  readonly #maxBytes: () => number
  /** Bytes of an unfinished packet, header included. */
  #held: Buffer[] = []
  #heldBytes = 0
  /** The whole size of the unfinished packet once its header is here (0 before): pieces wait until it is reached. */
  #need = 0

  constructor (maxBytes: () => number) {
    this.#maxBytes = maxBytes
  }

  /** Bytes held for a packet not yet complete. */
  get pending (): number {
    return this.#heldBytes
  }

  /** Feeds `chunk`; `onPacket` gets each whole packet. Returns why the stream cannot go on, or undefined. */
  push (chunk: Buffer, onPacket: (type: number, flags: number, body: Buffer, packet: Buffer) => void): string | undefined {
    let bytes = chunk
    if (this.#heldBytes > 0) {
      this.#held.push(chunk)
      this.#heldBytes += chunk.length
      // a large packet comes in many chunks: joined once, when it is all here
      if (this.#heldBytes < this.#need) return undefined
      bytes = Buffer.concat(this.#held, this.#heldBytes)
      this.clear()
    }
    let at = 0
    while (at < bytes.length) {
      const header = readHeader(bytes, at)
      if (header === undefined) break
      if (header < 0) return this.#refuse(bytes.subarray(at), 'a packet length of more than four bytes')
      const length = Math.floor(header / 8)
      const headerBytes = header % 8
      const max = this.#maxBytes()
      if (length > max) return this.#refuse(bytes.subarray(at), `a packet of ${length} bytes, above the limit of ${max}`)
      const end = at + 1 + headerBytes + length
      if (end > bytes.length) {
        this.#need = end - at
        break
      }
      const first = bytes[at] as number
      onPacket(first >> 4, first & 0x0f, bytes.subarray(at + 1 + headerBytes, end), bytes.subarray(at, end))
      at = end
    }
    if (at < bytes.length) {
      const rest = bytes.subarray(at)
      this.#held = [rest]
      this.#heldBytes = rest.length
    }
    return undefined
  }

  /** Keeps what could not be read (from the refused packet on) for `take()`, and returns `reason`. */
  #refuse (rest: Buffer, reason: string): string {
    this.#held = [rest]
    this.#heldBytes = rest.length
    this.#need = 0
    return reason
  }

  /** The bytes held (an unfinished packet, or what followed a refused header), handed over and forgotten. */
  take (): Buffer | undefined {
    const held = this.#heldBytes === 0 ? undefined : Buffer.concat(this.#held, this.#heldBytes)
    this.clear()
    return held
  }

  /** Forgets an unfinished packet (its connection is gone). */
  clear (): void {
    this.#held = []
    this.#heldBytes = 0
    this.#need = 0
  }
}

/**
 * The remaining length of the packet at `at` and how many bytes encode it, as `length * 8 + bytes`; undefined when
 * the header is not all here, -1 when the length runs past four bytes [MQTT-2.2.3].
 */
function readHeader (bytes: Buffer, at: number): number | undefined {
  let length = 0
  let multiplier = 1
  for (let i = 1; i <= 4; i++) {
    if (at + i >= bytes.length) return undefined
    const byte = bytes[at + i] as number
    length += (byte & 0x7f) * multiplier
    if ((byte & 0x80) === 0) return length * 8 + i
    multiplier *= 128
  }
  return -1
}

function packet (first: number, parts: readonly Buffer[]): Buffer {
  let length = 0
  for (const part of parts) length += part.length
  const header = Buffer.allocUnsafe(1 + lengthBytes(length))
  header[0] = first
  writeLength(header, 1, length)
  return Buffer.concat([header, ...parts], header.length + length)
}

/** How many bytes the remaining length `n` takes [MQTT-2.2.3]. */
function lengthBytes (n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4
}

/** Writes the remaining length `n` at `at`; returns where the packet goes on. */
function writeLength (out: Buffer, at: number, n: number): number {
  let rest = n
  do {
    const digit = rest % 128
    rest = Math.floor(rest / 128)
    out[at++] = rest > 0 ? digit | 0x80 : digit
  } while (rest > 0)
  return at
}

function u16 (n: number): Buffer {
  return Buffer.from([(n >> 8) & 0xff, n & 0xff])
}

function lengthPrefixed (bytes: Buffer): Buffer {
  return Buffer.concat([u16(bytes.length), bytes])
}
