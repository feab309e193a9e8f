import { PacketReader, PacketType } from '../protocol/mqtt-packets.js'

/**
 * Takes the QoS 0 PUBLISH frames to one topic (the client's inbox) off a socket before MQTT.js parses them, and
 * hands their payloads to `onPayload` as they complete; every other packet's bytes go on to MQTT.js unchanged.
 *
 * Why: MQTT.js reads each packet through a pipe into a Writable, mqtt-packet's parser and a BufferList, a queue
 * drained one packet per tick, its handlers and an event. A serial call is mostly such per-message work, not the
 * socket hops (four raw hops through a byte-copying forwarder: 78 µs p50; a serial fnbus call: ~230 µs); skipping
 * MQTT.js' share of it on the worker and the caller made serial calls 1.1–1.3× as fast (p50 −7 to −9%), 64 in
 * flight 1.19×. The inbox carries only the gateway's QoS 0 bus messages, which need none of MQTT.js' state (no
 * packet id, no acknowledgement, no store).
 *
 * It must be installed before the stream's first byte arrives, so that it always knows where packets begin. Only a
 * socket (TCP, TLS, Unix socket: a stream with `setNoDelay`) is read so, its data entering through `push`, which is
 * wrapped; WebSocket streams keep MQTT.js' path. The stream is split into packets by the SDK's packet reader
 * (protocol/mqtt-packets.ts, the socket transport's too); MQTT.js gets each of its packets whole, as soon as it is.
 * Returns whether it was installed.
 */
export function readInbox (stream: unknown, topic: string, onPayload: (payload: Buffer) => void): boolean {
  const socket = stream as { setNoDelay?: unknown, push?: unknown } | undefined
  if (typeof socket?.setNoDelay !== 'function' || typeof socket.push !== 'function') return false
  const readable = stream as ReadableLike
  const topicBytes = Buffer.from(topic, 'utf8')
  const push = readable.push
  // MQTT.js bounds no packet's size, and this reader in front of it does not either
  const reader = new PacketReader(() => Number.MAX_SAFE_INTEGER)
  /** The stream stopped parsing (a fifth length byte): from there on MQTT.js reads alone, and closes the connection. */
  let broken = false

  /** Only a QoS 0 PUBLISH, not retained, not dup (flags 0), to the inbox's topic: what the gateway sends to an inbox. */
  const isInbox = (type: number, flags: number, body: Buffer): boolean => type === PacketType.Publish && flags === 0 &&
    body.length >= 2 + topicBytes.length && body.readUInt16BE(0) === topicBytes.length &&
    body.subarray(2, 2 + topicBytes.length).equals(topicBytes)

  readable.push = function inboxPush (this: ReadableLike, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (broken || !Buffer.isBuffer(chunk)) {
      // the end of the stream (null), or a chunk this reader cannot frame: from here on MQTT.js reads alone
      if (!broken && chunk !== null) {
        broken = true
        const held = reader.take()
        if (held !== undefined) push.call(this, held)
      }
      return push.call(this, chunk, encoding)
    }
    const out: Buffer[] = []
    const refused = reader.push(chunk, (type, flags, body, packet) => {
      if (isInbox(type, flags, body)) deliverSafely(body.subarray(2 + topicBytes.length))
      else out.push(packet)
    })
    if (refused !== undefined) {
      broken = true
      const rest = reader.take()
      if (rest !== undefined) out.push(rest)
    }
    if (out.length === 0) return true
    return push.call(this, out.length === 1 ? out[0] : Buffer.concat(out), encoding)
  }

  /** A payload's handler must not throw into the socket's read path. */
  const deliverSafely = (payload: Buffer): void => {
    try {
      onPayload(payload)
    } catch (err) {
      queueMicrotask(() => { throw err })
    }
  }
  return true
}

interface ReadableLike { push: (chunk: unknown, encoding?: BufferEncoding) => boolean }
