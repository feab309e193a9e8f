import { isUtf8 } from 'node:buffer'
import type { Duplex } from 'node:stream'
import { isPrototypeName } from '../protocol/names.js'

export interface FrameGuardOptions {
  /** Largest MQTT remaining length accepted; a frame declaring more cuts the connection. */
  readonly maxFrameBytes: number
  /** ms a new connection has to deliver its whole CONNECT; undefined: no bound here. */
  readonly connectTimeoutMs?: number
  /** `kind` is a stable word for metrics; `reason` says what happened. */
  readonly onViolation: (reason: string, kind: FrameViolation) => void
}

/**
 * Why the guard cut a connection, as a stable word: a frame over the limit, a frame or packet that does not parse,
 * a string with bad bytes, packets out of MQTT's order, a CONNECT refused with CONNACK 2 for its client id, or a
 * CONNECT that did not arrive in time.
 */
export type FrameViolation = 'frame_too_large' | 'malformed_frame' | 'bad_string' | 'protocol_violation' | 'identifier_rejected' | 'connect_timeout'

const enum Phase { Type, Length, Body }

/** MQTT control packet types whose strings the guard checks. */
const CONNECT = 1
const PUBLISH = 3
const SUBSCRIBE = 8
const UNSUBSCRIBE = 10

/** CONNACK "identifier rejected" [MQTT-3.2.2-3, table 3.1]. */
const CONNACK_IDENTIFIER_REJECTED = Buffer.from([0x20, 0x02, 0x00, 0x02])

/** A packet the guard refuses: why, and whether the client is owed a CONNACK saying its client id was rejected. */
interface Refusal { readonly reason: string, readonly kind: FrameViolation, readonly rejectIdentifier?: boolean }

/**
 * Reads MQTT frames on the raw byte stream, before aedes buffers or decodes anything:
 * - a frame whose declared length exceeds `maxFrameBytes` cuts the connection from its header: aedes 1.x has no
 *   maximum packet size, so one connection declaring a 256 MB PUBLISH would make it buffer that much (DESIGN.md,
 *   pitfall 3);
 * - the strings of CONNECT (client id, will topic, user name), PUBLISH (topic), SUBSCRIBE and UNSUBSCRIBE
 *   (filters) must be well-formed UTF-8 without NUL or control characters. mqtt-packet decodes strings with
 *   `toString('utf8')`, so broken bytes reach aedes' hooks as U+FFFD and only the bytes can tell (pitfall 10);
 * - the first packet must be a CONNECT [MQTT-3.1.0-1], arriving whole within `connectTimeoutMs`, and only one
 *   [MQTT-3.1.0-2]; an empty client id asks for a clean session [MQTT-3.1.3-8] (aedes would invent one).
 *
 * aedes pulls bytes with `conn.read()` on 'readable', so the guard wraps `read` on the connection itself. Writes
 * stay on the socket untouched: no extra stream, no copy, and direct writes keep their order. A refused packet is
 * never handed to aedes: the chunk that completes its inspected part is withheld, and aedes only acts on whole
 * packets.
 */
export function guardFrames (conn: Duplex, options: FrameGuardOptions): void {
  let phase: Phase = Phase.Type
  let type = 0
  let length = 0
  let multiplier = 1
  let remaining = 0
  let lengthBytes = 0
  let violated = false
  let connected = false
  /** Body bytes of the current packet the guard still needs to see, and those it has collected so far. */
  let wanted = 0
  let parts: Buffer[] = []
  let collected = 0

  let connectTimer: NodeJS.Timeout | undefined
  if (options.connectTimeoutMs !== undefined) {
    connectTimer = setTimeout(() => {
      if (!connected && !violated) violate({ reason: `no complete CONNECT within ${options.connectTimeoutMs} ms`, kind: 'connect_timeout' })
    }, options.connectTimeoutMs)
    connectTimer.unref()
    conn.once('close', () => clearTimeout(connectTimer))
  }

  const violate = (refusal: Refusal): null => {
    violated = true
    clearTimeout(connectTimer)
    options.onViolation(refusal.reason, refusal.kind)
    if (refusal.rejectIdentifier === true && conn.writable) {
      // the client learns why; the socket is destroyed if it does not close its side soon
      conn.end(CONNACK_IDENTIFIER_REJECTED)
      setTimeout(() => conn.destroy(), 1000).unref()
    } else {
      conn.destroy()
    }
    return null
  }

  /** How many body bytes of a packet of `type` the guard must see; PUBLISH is measured again once its topic length is known. */
  const bodyToInspect = (): number => {
    switch (type) {
      case CONNECT: case SUBSCRIBE: case UNSUBSCRIBE: return length
      case PUBLISH: return Math.min(length, 2)
      default: return 0
    }
  }

  const read = conn.read
  conn.read = function guardedRead (this: Duplex, size?: number) {
    const chunk: unknown = read.call(this, size)
    if (violated) return null
    if (!Buffer.isBuffer(chunk)) return chunk
    let i = 0
    while (i < chunk.length) {
      switch (phase) {
        case Phase.Type: {
          type = (chunk[i++] as number) >> 4
          if (!connected && type !== CONNECT) return violate({ reason: 'the first packet must be CONNECT', kind: 'protocol_violation' })
          if (connected && type === CONNECT) return violate({ reason: 'a second CONNECT', kind: 'protocol_violation' })
          phase = Phase.Length
          length = 0
          multiplier = 1
          lengthBytes = 0
          break
        }
        case Phase.Length: {
          const byte = chunk[i++] as number
          length += (byte & 0x7f) * multiplier
          multiplier *= 128
          lengthBytes++
          if ((byte & 0x80) === 0) {
            if (length > options.maxFrameBytes) {
              return violate({ reason: `frame of ${length} bytes exceeds the limit of ${options.maxFrameBytes}`, kind: 'frame_too_large' })
            }
            remaining = length
            wanted = bodyToInspect()
            parts = []
            collected = 0
            if (remaining === 0) {
              phase = Phase.Type
              if (type === CONNECT) return violate({ reason: 'malformed CONNECT', kind: 'malformed_frame' })
            } else {
              phase = Phase.Body
            }
          } else if (lengthBytes === 4) {
            // [MQTT-2.2.3] the remaining length takes at most four bytes
            return violate({ reason: 'malformed remaining length', kind: 'malformed_frame' })
          }
          break
        }
        case Phase.Body: {
          if (collected < wanted) {
            const need = Math.min(wanted - collected, chunk.length - i)
            parts.push(chunk.subarray(i, i + need))
            collected += need
            i += need
            remaining -= need
            if (collected === wanted) {
              const body = parts.length === 1 ? parts[0] as Buffer : Buffer.concat(parts)
              parts = [body]
              if (type === PUBLISH && wanted === 2 && length > 2) {
                // the topic's length is known now: the topic is inspected once it is here
                wanted = Math.min(length, 2 + body.readUInt16BE(0))
              }
              if (collected === wanted) {
                parts = []
                const refusal = inspect(type, body)
                if (refusal !== undefined) return violate(refusal)
                if (type === CONNECT) {
                  connected = true
                  clearTimeout(connectTimer)
                }
              }
            }
          } else {
            const take = Math.min(remaining, chunk.length - i)
            i += take
            remaining -= take
          }
          if (remaining === 0) phase = Phase.Type
          break
        }
      }
    }
    return chunk
  }
}

/** Checks the strings of one packet's (inspected) body; undefined when they are acceptable. */
function inspect (type: number, body: Buffer): Refusal | undefined {
  try {
    switch (type) {
      case CONNECT: return inspectConnect(body)
      case PUBLISH: return stringProblem(body, 0, 'topic')
      case SUBSCRIBE: return inspectFilters(body, true)
      case UNSUBSCRIBE: return inspectFilters(body, false)
      default: return undefined
    }
  } catch (err) {
    if (err instanceof RangeError) return { reason: `malformed packet of type ${type}`, kind: 'malformed_frame' }
    throw err
  }
}

function inspectConnect (body: Buffer): Refusal | undefined {
  let at = 2 + body.readUInt16BE(0) // protocol name
  at += 1 // protocol level
  const flags = body.readUInt8(at)
  at += 1 + 2 // flags, keep alive
  const clean = (flags & 0x02) !== 0
  const clientIdLength = body.readUInt16BE(at)
  const clientIdProblem = stringProblem(body, at, 'client id')
  if (clientIdProblem !== undefined) return { reason: clientIdProblem.reason, kind: 'identifier_rejected', rejectIdentifier: true }
  const clientId = body.toString('utf8', at + 2, at + 2 + clientIdLength)
  if (clientIdLength === 0 && !clean) return { reason: 'an empty client id with a persistent session', kind: 'identifier_rejected', rejectIdentifier: true }
  if (isPrototypeName(clientId)) return { reason: `client id ${clientId} is reserved`, kind: 'identifier_rejected', rejectIdentifier: true }
  at += 2 + clientIdLength
  if ((flags & 0x04) !== 0) {
    const willTopicProblem = stringProblem(body, at, 'will topic')
    if (willTopicProblem !== undefined) return willTopicProblem
    at += 2 + body.readUInt16BE(at)
    at += 2 + body.readUInt16BE(at) // will message: bytes, any
  }
  if ((flags & 0x80) !== 0) return stringProblem(body, at, 'user name')
  return undefined
}

function inspectFilters (body: Buffer, withQos: boolean): Refusal | undefined {
  let at = 2 // packet identifier
  while (at < body.length) {
    const problem = stringProblem(body, at, 'topic filter')
    if (problem !== undefined) return problem
    at += 2 + body.readUInt16BE(at) + (withQos ? 1 : 0)
  }
  if (at !== body.length) return { reason: 'malformed topic filter list', kind: 'malformed_frame' }
  return undefined
}

/** The length-prefixed string at `at`: well-formed UTF-8 [MQTT-1.5.3-1], no NUL [MQTT-1.5.3-2], no control characters. */
function stringProblem (body: Buffer, at: number, what: string): Refusal | undefined {
  const length = body.readUInt16BE(at)
  const end = at + 2 + length
  if (end > body.length) return { reason: `${what} runs past its packet`, kind: 'malformed_frame' }
  const bytes = body.subarray(at + 2, end)
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i] as number
    // C0 controls (NUL included) and DEL; C1 controls U+0080–U+009F are encoded C2 80–C2 9F
    if (byte < 0x20 || byte === 0x7f || (byte === 0xc2 && (bytes[i + 1] ?? 0) >= 0x80 && (bytes[i + 1] ?? 0) <= 0x9f)) {
      return { reason: `${what} holds a control character`, kind: 'bad_string' }
    }
  }
  if (!isUtf8(bytes)) return { reason: `${what} is not well-formed UTF-8`, kind: 'bad_string' }
  return undefined
}
