import { isUtf8 } from 'node:buffer'
import type { Duplex } from 'node:stream'
import { isPrototypeName } from '../protocol/names.js'
import { isValidFilter } from '../security/topic-filter.js'

export interface FrameGuardOptions {
  /** Largest MQTT remaining length accepted; a frame declaring more cuts the connection. */
  readonly maxFrameBytes: number
  /** ms a new connection has to deliver its whole CONNECT; undefined: no bound here. */
  readonly connectTimeoutMs?: number
  /** `kind` is a stable word for metrics; `reason` says what happened. */
  readonly onViolation: (reason: string, kind: FrameViolation) => void
  /** The connection delivered a whole, acceptable CONNECT: aedes takes it from here. */
  readonly onConnect?: () => void
}

/**
 * Why the guard cut a connection, as a stable word: a frame over the limit, a frame or packet that does not parse or
 * breaks MQTT's rules for its fields, a string with bad bytes, packets out of MQTT's order, a CONNECT refused with
 * CONNACK 2 for its client id or with CONNACK 1 for its protocol level, or a CONNECT that did not arrive in time.
 */
export type FrameViolation =
  | 'frame_too_large' | 'malformed_frame' | 'bad_string' | 'protocol_violation' | 'identifier_rejected'
  | 'unacceptable_protocol_version' | 'connect_timeout'

const enum Phase { Type, Length, Body }

/** MQTT control packet types the guard looks into. */
const CONNECT = 1
const PUBLISH = 3
const PUBACK = 4
const PUBREC = 5
const PUBREL = 6
const PUBCOMP = 7
const SUBSCRIBE = 8
const UNSUBSCRIBE = 10
const PINGREQ = 12
const DISCONNECT = 14

/** CONNACK "unacceptable protocol version" and "identifier rejected" [MQTT-3.2.2-3, table 3.1]. */
const CONNACK_UNACCEPTABLE_PROTOCOL = Buffer.from([0x20, 0x02, 0x00, 0x01])
const CONNACK_IDENTIFIER_REJECTED = Buffer.from([0x20, 0x02, 0x00, 0x02])

/** A packet the guard refuses: why, and the CONNACK the client is owed before the connection closes, if any. */
interface Refusal { readonly reason: string, readonly kind: FrameViolation, readonly connack?: Buffer }

/**
 * Reads MQTT frames on the raw byte stream, before aedes buffers or decodes anything:
 * - a frame whose declared length exceeds `maxFrameBytes` cuts the connection from its header: aedes 1.x has no
 *   maximum packet size, so one connection declaring a 256 MB PUBLISH would make it buffer that much;
 * - the strings of CONNECT (client id, will topic, user name), PUBLISH (topic), SUBSCRIBE and UNSUBSCRIBE
 *   (filters) must be well-formed UTF-8 without NUL or control characters. mqtt-packet decodes strings with
 *   `toString('utf8')`, so broken bytes would reach aedes' hooks as U+FFFD and only the bytes can tell;
 * - the first packet must be a CONNECT [MQTT-3.1.0-1], arriving whole within `connectTimeoutMs`, and only one
 *   [MQTT-3.1.0-2]; an empty client id asks for a clean session [MQTT-3.1.3-8] (aedes would invent one);
 * - every packet the specification says must close the connection does: fields that do not add up to the
 *   packet's length, flags that contradict each other, packet identifier 0, wildcards out of place, a protocol
 *   level other than MQTT 3.1 or 3.1.1 (answered CONNACK 1 first [MQTT-3.1.2-2]). A client id that is not
 *   well-formed UTF-8 or holds U+0000 closes the connection without a CONNACK [MQTT-1.5.3-1, MQTT-1.5.3-2]; one
 *   that is well-formed but holds other control characters is refused with CONNACK 2.
 *
 * aedes pulls bytes with `conn.read()` on 'readable', so the guard wraps `read` on the connection itself. Writes
 * stay on the socket untouched: no extra stream, no copy, and direct writes keep their order. A refused packet is
 * never handed to aedes: the chunk that completes its inspected part is withheld, and aedes only acts on whole
 * packets. That is how aedes reads, not a promise of its API (patch-points.ts, `conn.read`): the connection gate
 * warns when aedes registers a client whose CONNECT never passed the guard.
 */
export function guardFrames (conn: Duplex, options: FrameGuardOptions): void {
  let phase: Phase = Phase.Type
  let type = 0
  let flags = 0
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
  /** A PUBLISH's inspected part grows once its topic's length is known. */
  let measured = false

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
    if (refusal.connack !== undefined && conn.writable) {
      // the client learns why; the socket is destroyed if it does not close its side soon
      conn.end(refusal.connack)
      setTimeout(() => conn.destroy(), 1000).unref()
    } else {
      conn.destroy()
    }
    return null
  }

  /** What the fixed header alone shows to be wrong, once the remaining length is known. */
  const headerProblem = (): Refusal | undefined => {
    switch (type) {
      case CONNECT:
        return length === 0 ? malformed('an empty CONNECT') : undefined
      case PUBLISH: {
        const qos = (flags >> 1) & 0x03
        // [MQTT-3.3.1-4]
        if (qos === 3) return malformed('a PUBLISH with QoS 3')
        // [MQTT-3.3.1-2]
        if (qos === 0 && (flags & 0x08) !== 0) return malformed('a QoS 0 PUBLISH with DUP set')
        return length < 2 ? malformed('a PUBLISH too short for its topic') : undefined
      }
      case PUBACK: case PUBREC: case PUBREL: case PUBCOMP:
        return length === 2 ? undefined : malformed(`a packet of type ${type} with remaining length ${length}, not 2`)
      case PINGREQ: case DISCONNECT:
        return length === 0 ? undefined : malformed(`a packet of type ${type} with remaining length ${length}, not 0`)
      default:
        return undefined
    }
  }

  /** How many body bytes of a packet of `type` the guard must see; PUBLISH is measured again once its topic length is known. */
  const bodyToInspect = (): number => {
    switch (type) {
      case CONNECT: case SUBSCRIBE: case UNSUBSCRIBE: return length
      case PUBLISH: return 2
      case PUBACK: case PUBREC: case PUBREL: case PUBCOMP: return 2
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
          const first = chunk[i++] as number
          type = first >> 4
          flags = first & 0x0f
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
            const problem = headerProblem()
            if (problem !== undefined) return violate(problem)
            remaining = length
            wanted = bodyToInspect()
            measured = false
            parts = []
            collected = 0
            phase = remaining === 0 ? Phase.Type : Phase.Body
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
              if (type === PUBLISH && !measured) {
                // the topic's length is known now: the topic (and the packet id of QoS 1 and 2) is inspected once here
                measured = true
                const qos = (flags >> 1) & 0x03
                const need = 2 + body.readUInt16BE(0) + (qos > 0 ? 2 : 0)
                if (need > length) return violate(malformed(qos > 0 ? 'a PUBLISH too short for its topic and packet id' : 'a PUBLISH topic runs past its packet'))
                wanted = need
              }
              if (collected === wanted) {
                parts = []
                const refusal = inspect(type, flags, body)
                if (refusal !== undefined) return violate(refusal)
                if (type === CONNECT) {
                  connected = true
                  clearTimeout(connectTimer)
                  options.onConnect?.()
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

function malformed (reason: string): Refusal {
  return { reason, kind: 'malformed_frame' }
}

/** Checks one packet's (inspected) body; undefined when it is acceptable. */
function inspect (type: number, flags: number, body: Buffer): Refusal | undefined {
  try {
    switch (type) {
      case CONNECT: return inspectConnect(body)
      case PUBLISH: return inspectPublish(flags, body)
      case PUBACK: case PUBREC: case PUBREL: case PUBCOMP:
        return body.readUInt16BE(0) === 0 ? malformed(`packet identifier 0 in a packet of type ${type}`) : undefined
      case SUBSCRIBE: return inspectFilters(body, true)
      case UNSUBSCRIBE: return inspectFilters(body, false)
      default: return undefined
    }
  } catch (err) {
    if (err instanceof RangeError) return malformed(`malformed packet of type ${type}`)
    throw err
  }
}

/** The protocol names of MQTT 3.1.1 and 3.1, and the levels aedes speaks (with mosquitto's bridge bit, 0x80). */
const PROTOCOL_NAMES = new Set(['MQTT', 'MQIsdp'])
const PROTOCOL_LEVELS = new Set([3, 4, 0x83, 0x84])

function inspectConnect (body: Buffer): Refusal | undefined {
  // variable header
  const name = body.toString('latin1', 2, 2 + body.readUInt16BE(0))
  let at = 2 + body.readUInt16BE(0)
  // [MQTT-3.1.2-1]: not MQTT at all, nothing to answer
  if (!PROTOCOL_NAMES.has(name)) return { reason: `protocol name ${JSON.stringify(name)}`, kind: 'protocol_violation' }
  const level = body.readUInt8(at)
  // [MQTT-3.1.2-2]: the fields after the level may be laid out otherwise (MQTT 5's properties): answer before reading them
  if (!PROTOCOL_LEVELS.has(level)) return { reason: `protocol level ${level}`, kind: 'unacceptable_protocol_version', connack: CONNACK_UNACCEPTABLE_PROTOCOL }
  const connectFlags = body.readUInt8(at + 1)
  at += 2 + 2 // level, flags, keep alive
  const hasWill = (connectFlags & 0x04) !== 0
  const willQos = (connectFlags >> 3) & 0x03
  const willRetain = (connectFlags & 0x20) !== 0
  const hasUser = (connectFlags & 0x80) !== 0
  const hasPassword = (connectFlags & 0x40) !== 0
  const clean = (connectFlags & 0x02) !== 0
  if ((connectFlags & 0x01) !== 0) return malformed('the reserved CONNECT flag is set') // [MQTT-3.1.2-3]
  if (willQos === 3) return malformed('Will QoS 3') // [MQTT-3.1.2-14]
  if (!hasWill && (willQos !== 0 || willRetain)) return malformed('Will QoS or Will Retain without a will') // [MQTT-3.1.2-13, MQTT-3.1.2-15]
  if (hasPassword && !hasUser) return malformed('a password without a user name') // [MQTT-3.1.2-22]

  // payload: each field where its length says, and nothing after the last one
  const field = (what: string): Buffer | Refusal => {
    const size = body.readUInt16BE(at)
    const end = at + 2 + size
    if (end > body.length) return malformed(`the CONNECT's ${what} runs past its packet`)
    const bytes = body.subarray(at + 2, end)
    at = end
    return bytes
  }
  const clientId = field('client id')
  if (!Buffer.isBuffer(clientId)) return clientId
  const willTopic = hasWill ? field('will topic') : undefined
  if (willTopic !== undefined && !Buffer.isBuffer(willTopic)) return willTopic
  if (hasWill) {
    const willMessage = field('will message')
    if (!Buffer.isBuffer(willMessage)) return willMessage
  }
  const user = hasUser ? field('user name') : undefined
  if (user !== undefined && !Buffer.isBuffer(user)) return user
  if (hasPassword) {
    const password = field('password')
    if (!Buffer.isBuffer(password)) return password
  }
  if (at !== body.length) return malformed(`${body.length - at} bytes after the CONNECT's last field`)

  // strings
  const idProblem = byteProblem(clientId)
  if (idProblem === 'nul' || idProblem === 'utf8') return { reason: `client id ${describe(idProblem)}`, kind: 'bad_string' }
  if (idProblem === 'control') return { reason: `client id ${describe(idProblem)}`, kind: 'identifier_rejected', connack: CONNACK_IDENTIFIER_REJECTED }
  // [MQTT-3.1.3-8]
  if (clientId.length === 0 && !clean) return { reason: 'an empty client id with a persistent session', kind: 'identifier_rejected', connack: CONNACK_IDENTIFIER_REJECTED }
  const id = clientId.toString('utf8')
  if (isPrototypeName(id)) return { reason: `client id ${id} is reserved`, kind: 'identifier_rejected', connack: CONNACK_IDENTIFIER_REJECTED }
  if (willTopic !== undefined) {
    const problem = byteProblem(willTopic)
    if (problem !== undefined) return { reason: `will topic ${describe(problem)}`, kind: 'bad_string' }
    if (!isTopicName(willTopic)) return malformed('a will topic that is empty or holds a wildcard') // [MQTT-3.1.2-9, MQTT-4.7.3-1]
  }
  if (user !== undefined) {
    const problem = byteProblem(user)
    if (problem !== undefined) return { reason: `user name ${describe(problem)}`, kind: 'bad_string' }
  }
  return undefined
}

function inspectPublish (flags: number, body: Buffer): Refusal | undefined {
  const topicLength = body.readUInt16BE(0)
  const topic = body.subarray(2, 2 + topicLength)
  const problem = byteProblem(topic)
  if (problem !== undefined) return { reason: `topic ${describe(problem)}`, kind: 'bad_string' }
  // [MQTT-4.7.3-1, MQTT-3.3.2-2]
  if (!isTopicName(topic)) return malformed('a PUBLISH topic that is empty or holds a wildcard')
  // [MQTT-2.3.1-1]
  if (((flags >> 1) & 0x03) > 0 && body.readUInt16BE(2 + topicLength) === 0) return malformed('a QoS 1 or 2 PUBLISH with packet identifier 0')
  return undefined
}

function inspectFilters (body: Buffer, withQos: boolean): Refusal | undefined {
  const what = withQos ? 'SUBSCRIBE' : 'UNSUBSCRIBE'
  // [MQTT-2.3.1-1]
  if (body.readUInt16BE(0) === 0) return malformed(`a ${what} with packet identifier 0`)
  let at = 2
  // [MQTT-3.8.3-3, MQTT-3.10.3-2]
  if (at === body.length) return malformed(`a ${what} without a topic filter`)
  while (at < body.length) {
    const end = at + 2 + body.readUInt16BE(at)
    if (end > body.length) return malformed(`a ${what} topic filter runs past its packet`)
    const filter = body.subarray(at + 2, end)
    const problem = byteProblem(filter)
    if (problem !== undefined) return { reason: `topic filter ${describe(problem)}`, kind: 'bad_string' }
    // [MQTT-4.7.3-1, MQTT-4.7.1-2, MQTT-4.7.1-3]
    if (!isValidFilter(filter.toString('utf8'))) return malformed(`${what} of an invalid topic filter`)
    at = end
    if (withQos) {
      if (at >= body.length) return malformed('a SUBSCRIBE topic filter without its QoS byte')
      // [MQTT-3.8.3-4]: QoS 0–2, the other bits reserved
      if ((body[at] as number) > 2) return malformed('a SUBSCRIBE asking QoS above 2 or with reserved bits set')
      at += 1
    }
  }
  return undefined
}

/** A topic name: at least one character, no wildcard. */
function isTopicName (bytes: Buffer): boolean {
  return bytes.length > 0 && !bytes.includes(0x2b) && !bytes.includes(0x23)
}

type ByteProblem = 'nul' | 'utf8' | 'control'

function describe (problem: ByteProblem): string {
  switch (problem) {
    case 'nul': return 'holds U+0000'
    case 'utf8': return 'is not well-formed UTF-8'
    case 'control': return 'holds a control character'
  }
}

/**
 * What is wrong with a string's bytes: U+0000 [MQTT-1.5.3-2], ill-formed UTF-8 (surrogates and overlong forms
 * included) [MQTT-1.5.3-1], or another C0 control, DEL or C1 control (which MQTT discourages and fnbus refuses).
 */
function byteProblem (bytes: Buffer): ByteProblem | undefined {
  let control = false
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i] as number
    if (byte === 0) return 'nul'
    // C1 controls U+0080–U+009F are encoded C2 80–C2 9F
    if (byte < 0x20 || byte === 0x7f || (byte === 0xc2 && (bytes[i + 1] ?? 0) >= 0x80 && (bytes[i + 1] ?? 0) <= 0x9f)) control = true
  }
  if (!isUtf8(bytes)) return 'utf8'
  return control ? 'control' : undefined
}
