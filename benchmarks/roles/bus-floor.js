// A second floor, not a peer: fnbus' own SDK worker and caller through the least gateway that speaks the bus
// protocol. It frames MQTT on the socket (CONNECT → CONNACK, SUBSCRIBE → SUBACK, PINGREQ → PINGRESP), decodes every
// `$fn/up` message into its envelopes with fnbus' codec and answers or forwards each one: `hello` → `welcome`,
// `reg` → `ack`, `call` → `invoke` to the function's worker, `result` → `reply` to the caller, each envelope in a
// PUBLISH of its own written straight to the socket. No aedes, no authentication, no frame or payload limits, no
// policy, no dispatcher (one worker per function, no concurrency limit, queue or deadline), no Async. The distance
// between this row and raw-forward is what the bus protocol and the SDK cost; between fnbus and this row, what the
// gateway's broker and guarantees cost. Sync only, and only for the benchmark's well-behaved clients.
import { createServer } from 'node:net'
// fnbus' envelope codec, from the repository's build (internal modules, not the package's API)
import { encodeEnvelope } from '../../dist/protocol/envelope.js'
import { decodeEnvelopes } from '../../dist/protocol/envelope-codec.js'

const CONNECT = 1
const PUBLISH = 3
const SUBSCRIBE = 8
const PINGREQ = 12

export async function gateway () {
  /** Function name → the connection serving it. */
  const workers = new Map()
  /** Delivery id → the caller's connection and its call id. */
  const calls = new Map()
  let nextDelivery = 1
  const sockets = new Set()

  const server = createServer(socket => {
    socket.setNoDelay(true)
    socket.on('error', () => {})
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    const conn = { socket, inbox: '' }
    const send = (to, env) => to.socket.write(publishFrame(to.inbox, encodeEnvelope(env)))

    const onPublish = body => {
      const payload = body.subarray(2 + body.readUInt16BE(0))
      for (const env of decodeEnvelopes(payload) ?? []) {
        switch (env.t) {
          case 'hello':
            send(conn, { v: 1, t: 'welcome', id: env.id, gw: 'bus-floor', maxPayload: 16 * 2 ** 20, maxFrame: 17 * 2 ** 20 })
            break
          case 'reg':
            workers.set(env.fn, conn)
            send(conn, { v: 1, t: 'ack', id: env.id })
            break
          case 'call': {
            const worker = workers.get(env.fn)
            if (worker === undefined) {
              send(conn, { v: 1, t: 'error', id: env.id, code: 'FNBUS_FUNCTION_NOT_FOUND', msg: `no worker serves ${env.fn}` })
              break
            }
            const id = nextDelivery++
            calls.set(id, { conn, id: env.id })
            send(worker, { v: 1, t: 'invoke', id, fn: env.fn, it: 'Sync', rid: String(id), dl: Date.now() + 30_000, pk: env.pk, p: env.p })
            break
          }
          case 'result': {
            const call = calls.get(env.id)
            if (call === undefined) break
            calls.delete(env.id)
            send(call.conn, { v: 1, t: 'reply', id: call.id, pk: env.pk, p: env.p, fe: env.fe })
            break
          }
        }
      }
    }

    // the bytes of an incomplete packet, kept as chunks and joined once the packet is whole (a 64 KiB frame
    // arrives in several reads: joining at every read would copy it over and over)
    let parts = []
    let partsLength = 0
    let needed = 0
    socket.on('data', chunk => {
      if (parts.length > 0) {
        parts.push(chunk)
        partsLength += chunk.length
        if (partsLength < needed) return
      }
      const buf = parts.length === 0 ? chunk : Buffer.concat(parts, partsLength)
      let at = 0
      for (;;) {
        const header = remainingLength(buf, at)
        if (header === undefined || buf.length < header.bodyAt + header.length) {
          needed = header === undefined ? 0 : header.bodyAt + header.length - at
          break
        }
        const type = buf[at] >> 4
        const body = buf.subarray(header.bodyAt, header.bodyAt + header.length)
        at = header.bodyAt + header.length
        if (type === PUBLISH) onPublish(body)
        else if (type === CONNECT) {
          // protocol name, level, flags, keep-alive, then the client id
          const idAt = 2 + body.readUInt16BE(0) + 4
          conn.inbox = `$fn/in/${body.toString('utf8', idAt + 2, idAt + 2 + body.readUInt16BE(idAt))}`
          socket.write(Buffer.from([0x20, 2, 0, 0]))
        } else if (type === SUBSCRIBE) socket.write(Buffer.from([0x90, 3, body[0], body[1], 0]))
        else if (type === PINGREQ) socket.write(Buffer.from([0xd0, 0]))
      }
      if (at === buf.length) {
        parts = []
        partsLength = 0
      } else {
        parts = [buf.subarray(at)]
        partsLength = buf.length - at
      }
    })
  })
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
  return {
    info: { url: `mqtt://127.0.0.1:${server.address().port}` },
    close: () => {
      for (const socket of sockets) socket.destroy()
      return new Promise(resolve => server.close(resolve))
    },
  }
}

/** The body's offset and length of the packet at `at`, or undefined while its fixed header is incomplete. */
function remainingLength (buf, at) {
  let length = 0
  let multiplier = 1
  for (let i = at + 1; i < buf.length && i < at + 5; i++) {
    length += (buf[i] & 0x7f) * multiplier
    multiplier *= 128
    if ((buf[i] & 0x80) === 0) return { bodyAt: i + 1, length }
  }
  return undefined
}

/** A QoS 0 PUBLISH of `payload` to `topic`. */
function publishFrame (topic, payload) {
  const topicLength = Buffer.byteLength(topic)
  const length = 2 + topicLength + payload.length
  const lengthBytes = length < 128 ? 1 : length < 16_384 ? 2 : length < 2_097_152 ? 3 : 4
  const frame = Buffer.allocUnsafe(1 + lengthBytes + length)
  frame[0] = 0x30
  let at = 1
  for (let rest = length; ; rest = Math.floor(rest / 128)) {
    frame[at++] = (rest % 128) | (rest >= 128 ? 0x80 : 0)
    if (rest < 128) break
  }
  frame.writeUInt16BE(topicLength, at)
  at += 2 + frame.write(topic, at + 2)
  payload.copy(frame, at)
  return frame
}
