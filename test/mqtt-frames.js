// MQTT 3.1.1 frames built by hand, so tests can send what no well-behaved client library would.
import { connect } from 'node:net'

/** Text, or raw bytes (which need not be UTF-8 at all). @typedef {string | Buffer} Bytes */

/** @param {number} n */
export function u16 (n) {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}

/**
 * A length-prefixed MQTT string from text or raw bytes.
 * @param {Bytes} value
 */
export function str (value) {
  const bytes = Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8')
  return Buffer.concat([u16(bytes.length), bytes])
}

/** @param {number} n */
export function remainingLength (n) {
  const out = []
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    out.push(byte)
  } while (n > 0)
  return Buffer.from(out)
}

/**
 * @param {number} firstByte
 * @param {Buffer} body
 */
export function frame (firstByte, body) {
  return Buffer.concat([Buffer.from([firstByte]), remainingLength(body.length), body])
}

/**
 * A CONNECT. Besides the usual fields: `protocol` and `level` (default MQTT 3.1.1), `flags` to OR into the computed
 * connect flags (or `rawFlags` to replace them), `willQos`/`willRetain`, and `trailing` bytes after the last field.
 * @param {{
 *   clientId?: Bytes, clean?: boolean, username?: Bytes, password?: Bytes, keepalive?: number,
 *   will?: { topic: Bytes, payload?: Bytes, qos?: number, retain?: boolean },
 *   protocol?: Bytes, level?: number, flags?: number, rawFlags?: number, trailing?: Bytes | number[],
 * }} [fields]
 */
export function connectFrame ({
  clientId = 'raw', clean = true, username, password, will, keepalive = 60,
  protocol = 'MQTT', level = 4, flags: extraFlags = 0, rawFlags, trailing,
} = {}) {
  let flags = clean ? 0x02 : 0
  /** @type {Buffer[]} */
  const payload = [str(clientId)]
  if (will !== undefined) {
    flags |= 0x04 | ((will.qos ?? 0) << 3) | (will.retain === true ? 0x20 : 0)
    payload.push(str(will.topic), str(will.payload ?? Buffer.alloc(0)))
  }
  if (username !== undefined) {
    flags |= 0x80
    payload.push(str(username))
  }
  if (password !== undefined) {
    flags |= 0x40
    payload.push(str(password))
  }
  if (trailing !== undefined) payload.push(Buffer.from(trailing))
  return frame(0x10, Buffer.concat([str(protocol), Buffer.from([level, rawFlags ?? (flags | extraFlags)]), u16(keepalive), ...payload]))
}

/**
 * A PUBLISH; `qos` 1 or 2 needs `id` (the packet identifier); `dup` sets the DUP flag.
 * @param {Bytes} topic
 * @param {Bytes | Uint8Array} [payload]
 * @param {{ qos?: number, id?: number, dup?: boolean, retain?: boolean }} [options]
 */
export function publishFrame (topic, payload = Buffer.alloc(0), { qos = 0, id, dup = false, retain = false } = {}) {
  const first = 0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 1 : 0)
  /** @type {Buffer[]} */
  const body = [str(topic)]
  if (id !== undefined) body.push(u16(id))
  body.push(Buffer.isBuffer(payload) ? payload : Buffer.from(payload))
  return frame(first, Buffer.concat(body))
}

/**
 * @param {number} id
 * @param {Bytes[]} filters
 */
export function subscribeFrame (id, filters) {
  return frame(0x82, Buffer.concat([u16(id), ...filters.flatMap(filter => [str(filter), Buffer.from([0])])]))
}

/**
 * @param {number} id
 * @param {Bytes[]} filters
 */
export function unsubscribeFrame (id, filters) {
  return frame(0xa2, Buffer.concat([u16(id), ...filters.map(str)]))
}

/**
 * PUBACK, PUBREC, PUBREL or PUBCOMP (PUBREL carries its required flags 0010).
 * @param {'puback' | 'pubrec' | 'pubrel' | 'pubcomp'} kind
 * @param {number} id
 */
export function ackFrame (kind, id) {
  const first = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70 }[kind]
  return frame(first, u16(id))
}

export const PINGREQ = Buffer.from([0xc0, 0x00])

/**
 * A raw socket to the gateway that records what comes back and when it closes; destroyed after the test.
 * @param {import('node:test').TestContext} t
 * @param {number} port
 */
export async function rawSocket (t, port) {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {}) // the gateway may reset the connection
  t.after(() => socket.destroy())
  /** @type {Buffer[]} */
  const received = []
  socket.on('data', chunk => received.push(chunk))
  const closed = new Promise(resolve => socket.once('close', () => resolve(undefined)))
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  return { socket, closed, received: () => Buffer.concat(received) }
}

/**
 * Resolves true when `promise` settles within `ms`, false otherwise.
 * @param {Promise<unknown>} promise
 * @param {number} ms
 * @returns {Promise<boolean>}
 */
export async function within (promise, ms) {
  let timer
  const timeout = new Promise(resolve => { timer = setTimeout(resolve, ms, false) })
  const result = await Promise.race([promise.then(() => true), timeout])
  clearTimeout(timer)
  return result
}
