// MQTT 3.1.1 frames built by hand, so tests can send what no well-behaved client library would.
import { connect } from 'node:net'

export function u16 (n) {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}

/** A length-prefixed MQTT string from text or raw bytes. */
export function str (value) {
  const bytes = Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8')
  return Buffer.concat([u16(bytes.length), bytes])
}

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

export function frame (firstByte, body) {
  return Buffer.concat([Buffer.from([firstByte]), remainingLength(body.length), body])
}

export function connectFrame ({ clientId = 'raw', clean = true, username, password, will, keepalive = 60 } = {}) {
  let flags = clean ? 0x02 : 0
  const payload = [str(clientId)]
  if (will !== undefined) {
    flags |= 0x04
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
  return frame(0x10, Buffer.concat([str('MQTT'), Buffer.from([4, flags]), u16(keepalive), ...payload]))
}

export function publishFrame (topic, payload = Buffer.alloc(0)) {
  return frame(0x30, Buffer.concat([str(topic), Buffer.isBuffer(payload) ? payload : Buffer.from(payload)]))
}

export function subscribeFrame (id, filters) {
  return frame(0x82, Buffer.concat([u16(id), ...filters.flatMap(filter => [str(filter), Buffer.from([0])])]))
}

export function unsubscribeFrame (id, filters) {
  return frame(0xa2, Buffer.concat([u16(id), ...filters.map(str)]))
}

/** A raw socket to the gateway that records what comes back and when it closes; destroyed after the test. */
export async function rawSocket (t, port) {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {}) // the gateway may reset the connection
  t.after(() => socket.destroy())
  const received = []
  socket.on('data', chunk => received.push(chunk))
  const closed = new Promise(resolve => socket.once('close', resolve))
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  return { socket, closed, received: () => Buffer.concat(received) }
}

/** Resolves true when `promise` settles within `ms`, false otherwise. */
export async function within (promise, ms) {
  let timer
  const timeout = new Promise(resolve => { timer = setTimeout(resolve, ms, false) })
  const result = await Promise.race([promise.then(() => true), timeout])
  clearTimeout(timer)
  return result
}
