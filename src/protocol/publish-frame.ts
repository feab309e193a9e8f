/**
 * The fixed header and topic of an MQTT 3.1.1 QoS 0 PUBLISH to one topic, written in front of a payload that was
 * built in place behind room reserved for it: each side sends a batch of envelopes as one buffer, written once.
 */
export class PublishHeader {
  readonly #topic: Buffer
  /** Bytes to reserve in front of a payload: the longest header (a 4-byte remaining length) and the topic. */
  readonly reserve: number

  constructor (topic: string) {
    const bytes = Buffer.from(topic, 'utf8')
    this.#topic = Buffer.allocUnsafe(2 + bytes.length)
    this.#topic.writeUInt16BE(bytes.length, 0)
    bytes.copy(this.#topic, 2)
    this.reserve = 1 + 4 + this.#topic.length
  }

  /**
   * `piece` is `reserve` bytes of room followed by the payload. Writes the header at the end of the room and returns
   * the frame: the view of `piece` from the header's first byte.
   */
  frame (piece: Buffer): Buffer {
    const remaining = this.#topic.length + piece.length - this.reserve
    const lengthBytes = remaining < 128 ? 1 : remaining < 16384 ? 2 : remaining < 2097152 ? 3 : 4
    const start = this.reserve - 1 - lengthBytes - this.#topic.length
    piece[start] = 0x30 // PUBLISH, QoS 0, no DUP, no RETAIN
    let offset = start + 1
    let rest = remaining
    do {
      let byte = rest % 128
      rest = Math.floor(rest / 128)
      if (rest > 0) byte |= 0x80
      piece[offset++] = byte
    } while (rest > 0)
    this.#topic.copy(piece, offset)
    return piece.subarray(start)
  }
}
