// The data of an event on NATS: one flags byte, then the MQTT payload as it is. The flags are a byte rather than
// NATS headers because headers cost more than the rest of a small message's path: measured on nats-server 2.9.10
// and nats.js 3.4, one process publishing to and receiving from loopback, 64-byte payloads: 1.7–2.4 µs of CPU per
// message with the byte against 3.9–4.5 µs with one header (`HPUB`, a MsgHdrsImpl built, encoded and parsed), and
// 500–650k against 270–285k messages/s end to end; at 4 KiB the two are even (~10 µs, the copy of the payload
// into a new buffer costing what the headers' encoding saves). A byte is also 1 byte on the wire against ~30.
import type { Limits } from '../limits.js'

/** Bits 0–1: the QoS (0, 1 or 2). */
const QOS_MASK = 0b0000_0011
/** Bit 2: the message was published retained. */
const RETAIN = 0b0000_0100
/** Bits 3–7: zero in this version; a frame with any of them set comes from a newer gateway or from no gateway. */
const RESERVED = 0b1111_1000

export interface EventFrame {
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
  readonly payload: Buffer
}

/** The data to publish for `payload` with `qos` and `retain`. */
export function encodeFrame (payload: Buffer | string, qos: number, retain: boolean): Buffer {
  const length = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length
  const data = Buffer.allocUnsafe(1 + length)
  data[0] = (qos & QOS_MASK) | (retain ? RETAIN : 0)
  if (typeof payload === 'string') data.write(payload, 1)
  else payload.copy(data, 1)
  return data
}

/**
 * The frame in `data`, or a reason it is not one. The payload is a copy: nats.js hands over a view of its socket's
 * chunk, which aedes would otherwise pin for as long as it keeps the message (retained, or queued for a session).
 */
export function decodeFrame (data: Uint8Array): EventFrame | string {
  if (data.length === 0) return 'no flags byte'
  const flags = data[0] as number
  if ((flags & RESERVED) !== 0) return `flags 0x${flags.toString(16)} have reserved bits set`
  const qos = flags & QOS_MASK
  if (qos === 3) return 'QoS 3'
  return { qos: qos as 0 | 1 | 2, retain: (flags & RETAIN) !== 0, payload: Buffer.copyBytesFrom(data, 1) }
}

/**
 * Why a message from the cluster is not published here, undefined when it may be: what the gateway would refuse from
 * one of its own clients (limits.ts; access.ts closes such a client's connection), and any topic in the `$`
 * space, which belongs to this broker (`$SYS/`) or to the bus (`$fn/`) and never crosses gateways.
 */
export function importProblem (topic: string, payloadBytes: number, limits: Pick<Limits, 'maxPayloadBytes' | 'maxTopicBytes' | 'maxTopicLevels'>): string | undefined {
  if (topic.charCodeAt(0) === 36) return 'a $ topic'
  if (payloadBytes > limits.maxPayloadBytes) return `payload of ${payloadBytes} bytes exceeds limits.maxPayloadBytes (${limits.maxPayloadBytes})`
  const bytes = Buffer.byteLength(topic)
  if (bytes > limits.maxTopicBytes) return `topic of ${bytes} bytes exceeds limits.maxTopicBytes (${limits.maxTopicBytes})`
  let levels = 1
  for (let i = 0; i < topic.length; i++) {
    const code = topic.charCodeAt(i)
    if (code === 47) levels++
    // what no client may publish on: wildcards [MQTT-3.3.2-2], and the C0, DEL and C1 controls the frame guard
    // refuses in a client's topic (frame-guard.ts)
    else if (code === 43 || code === 35) return 'a wildcard in the topic'
    else if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return 'a control character in the topic'
  }
  if (levels > limits.maxTopicLevels) return `topic of ${levels} levels exceeds limits.maxTopicLevels (${limits.maxTopicLevels})`
  return undefined
}
