import type { Duplex } from 'node:stream'

/** Above this, the payload is written as its own chunk instead of being copied into the frame. */
const COPY_LIMIT = 16 * 1024

/** The fixed header and topic of a QoS 0 PUBLISH to one topic, computed once per destination. */
export class PublishFrameWriter {
  readonly #topic: Buffer

  constructor (topic: string) {
    const bytes = Buffer.from(topic, 'utf8')
    this.#topic = Buffer.allocUnsafe(2 + bytes.length)
    this.#topic.writeUInt16BE(bytes.length, 0)
    bytes.copy(this.#topic, 2)
  }

  /**
   * Writes one QoS 0 PUBLISH straight to the connection, bypassing aedes' topic matching: the gateway already
   * knows the one recipient. Returns false when the connection is not writable.
   */
  write (conn: Duplex, payload: Buffer): boolean {
    if (conn.destroyed || !conn.writable) return false
    const remaining = this.#topic.length + payload.length
    const lengthBytes = remaining < 128 ? 1 : remaining < 16384 ? 2 : remaining < 2097152 ? 3 : 4
    const headerLength = 1 + lengthBytes + this.#topic.length
    const copy = payload.length <= COPY_LIMIT
    const frame = Buffer.allocUnsafe(headerLength + (copy ? payload.length : 0))
    frame[0] = 0x30 // PUBLISH, QoS 0, no DUP, no RETAIN
    let offset = 1
    let rest = remaining
    do {
      let byte = rest % 128
      rest = Math.floor(rest / 128)
      if (rest > 0) byte |= 0x80
      frame[offset++] = byte
    } while (rest > 0)
    this.#topic.copy(frame, offset)
    if (copy) {
      payload.copy(frame, headerLength)
      conn.write(frame)
    } else {
      conn.cork()
      conn.write(frame)
      conn.write(payload)
      process.nextTick(uncork, conn)
    }
    return true
  }
}

function uncork (conn: Duplex): void {
  conn.uncork()
}
