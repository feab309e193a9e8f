import mqtt, { type MqttClient } from 'mqtt'
import { readInbox } from './inbox-reader.js'

/*
 * Where the SDK relies on MQTT.js beyond its public API, all in one place. Each point has a contract test
 * (test/contract/mqtt.test.js) that fails, naming the point, when a release of mqtt changes it; and each is checked
 * at run time: when one is missing the SDK warns once per process (`process.emitWarning`, code
 * FNBUS_MQTT_INTERNALS) and takes MQTT.js' own, slower path instead, rather than failing or slowing down unsaid.
 *
 * - `streamBuilder`: MqttClient keeps the function that opens a connection's stream in its `streamBuilder` field and
 *   calls it once per connection, the first (from the constructor, so `client.stream` is there when `mqtt.connect`
 *   returns) and each reconnection; `client.stream` is what it returned. Wrapped, it shows the inbox reader every
 *   connection's stream before its first byte. Without it the inbox's messages reach the client as MQTT.js
 *   'message' events.
 * - socket reads: the stream of a TCP, TLS or Unix socket connection is Node's socket, whose data enters through
 *   `push` (see inbox-reader.ts), and MQTT.js reads what it pushes. A WebSocket or a SOCKS proxy's stream is not a
 *   socket, and keeps MQTT.js' path by design.
 * - direct writes: while `client.connected`, `client.stream` is the connection's stream and takes whole frames with
 *   `write`; MQTT.js writes each packet of its own synchronously, so a frame written between two of them is not
 *   interleaved with either. Without it, frames are sent as what they are, QoS 0 PUBLISHes, through `publish`.
 */

/** The code of the warning emitted when a point is missing. */
export const MQTT_INTERNALS_WARNING = 'FNBUS_MQTT_INTERNALS'

export const PatchPoints = {
  streamBuilder: 'MqttClient.streamBuilder',
  socketReads: 'socket reads',
  directWrites: 'direct writes',
} as const

/** The MQTT.js internals read here, as far as the SDK knows them. */
interface ClientInternals {
  streamBuilder?: unknown
  stream?: unknown
  readonly connected: boolean
  readonly options: { readonly protocol?: unknown, readonly socksProxy?: unknown, readonly unixSocket?: unknown }
}

/** Protocols whose stream MQTT.js opens as Node's socket (a Unix socket is `mqtt` with `unixSocket`). */
const SOCKET_PROTOCOLS: ReadonlySet<unknown> = new Set(['mqtt', 'mqtts', 'tcp', 'tls', 'ssl'])

/** What was said already: each way a point can be missing is said once per process. */
const warned = new Set<string>()

/** Says once per process that `point` is missing (`what` says how) and the SDK takes MQTT.js' own path there. */
export function warnPatchPointMissing (point: string, what: string): void {
  const key = `${point}: ${what}`
  if (warned.has(key)) return
  warned.add(key)
  const message = `fnbus: ${what}; the SDK takes MQTT.js' own, slower path there (mqtt ${String(mqtt.MQTTJS_VERSION)} is installed: a release fnbus was not tested with?)`
  // a web page's `process` (the browser bundle's) has no emitWarning
  if (typeof process.emitWarning === 'function') {
    process.emitWarning(message, { type: 'FnbusWarning', code: MQTT_INTERNALS_WARNING, detail: `patch point: ${point}` })
  } else {
    console.warn(message)
  }
}

/**
 * The inbox reader on every connection of `client`: the stream built already (`mqtt.connect` builds the first
 * before it returns, and nothing has been read from it yet) and each one built from now on, through
 * `streamBuilder`.
 */
export class InboxTap {
  readonly #client: ClientInternals
  readonly #topic: string
  readonly #onPayload: (payload: Buffer) => void
  /** Streams `streamBuilder` built, and those of them the reader reads. */
  readonly #built = new WeakSet<object>()
  readonly #read = new WeakSet<object>()

  constructor (client: MqttClient, topic: string, onPayload: (payload: Buffer) => void) {
    this.#client = client as unknown as ClientInternals
    this.#topic = topic
    this.#onPayload = onPayload
    const internals = this.#client
    const buildStream = internals.streamBuilder
    if (typeof buildStream !== 'function') {
      warnPatchPointMissing(PatchPoints.streamBuilder, 'MqttClient has no streamBuilder: the inbox cannot be read past MQTT.js')
    } else {
      internals.streamBuilder = (built: MqttClient) => {
        const stream: unknown = buildStream.call(internals, built)
        this.#tap(stream)
        return stream
      }
    }
    const first = internals.stream
    if (typeof first === 'object' && first !== null && !this.#built.has(first)) this.#tap(first)
  }

  /** Whether the reader reads the current connection's stream: then no inbox message should reach MQTT.js. */
  get reading (): boolean {
    const stream = this.#client.stream
    return typeof stream === 'object' && stream !== null && this.#read.has(stream)
  }

  /** On each connection (CONNACK): checks that its stream went through `streamBuilder`. */
  checkConnection (): void {
    const stream = this.#client.stream
    if (typeof this.#client.streamBuilder !== 'function' || typeof stream !== 'object' || stream === null) return
    if (!this.#built.has(stream)) {
      warnPatchPointMissing(PatchPoints.streamBuilder, 'MqttClient opened a connection without calling streamBuilder: that connection\'s inbox is read by MQTT.js')
    }
  }

  /** An inbox message came as an MQTT.js 'message' event while the reader read the stream: bytes no longer pass through `push`. */
  passedBy (): void {
    warnPatchPointMissing(PatchPoints.socketReads, 'an inbox message reached MQTT.js although the inbox reader was on its socket: socket data no longer enters through push()')
  }

  #tap (stream: unknown): void {
    if (typeof stream !== 'object' || stream === null) return
    this.#built.add(stream)
    if (readInbox(stream, this.#topic, this.#onPayload)) {
      this.#read.add(stream)
    } else if (this.#expectsSocket()) {
      warnPatchPointMissing(PatchPoints.socketReads, 'the stream of a TCP, TLS or Unix socket connection is not a socket: the inbox cannot be read past MQTT.js')
    }
  }

  #expectsSocket (): boolean {
    const options = this.#client.options
    return SOCKET_PROTOCOLS.has(options.protocol) && (options.socksProxy === undefined || options.socksProxy === '')
  }
}

interface WritableStream { writable?: boolean, destroyed?: boolean, write: (chunk: Buffer) => boolean }

/**
 * Writes finished QoS 0 PUBLISH frames on MQTT.js' stream, past its publish machinery (packet object, generation in
 * pieces, its outgoing store): a QoS 0 message needs none of it. Frames are only written while the client is
 * connected; one flushed after the connection dropped is dropped, as MQTT.js drops QoS 0 messages
 * (`queueQoSZero: false`).
 */
export class FrameWriter {
  readonly #client: ClientInternals
  readonly #mqtt: MqttClient
  readonly #topic: string
  /** False once a connection's stream had no `write`: frames then go through MQTT.js' publish. */
  #direct = true

  /** `topic`: the topic of every frame written. */
  constructor (client: MqttClient, topic: string) {
    this.#mqtt = client
    this.#client = client as unknown as ClientInternals
    this.#topic = topic
  }

  write (frame: Buffer): void {
    if (!this.#direct) {
      this.#publish(frame)
      return
    }
    const stream = this.#client.stream as WritableStream | undefined
    if (!this.#client.connected || stream === undefined || stream.destroyed === true || stream.writable === false) return
    stream.write(frame)
  }

  /** On each connection (CONNACK): checks that its stream takes frames. */
  checkConnection (): void {
    const stream = this.#client.stream as { write?: unknown } | undefined
    if (this.#direct && typeof stream?.write !== 'function') {
      this.#direct = false
      warnPatchPointMissing(PatchPoints.directWrites, 'MqttClient.stream cannot be written to: bus messages go through MqttClient.publish')
    }
  }

  /** The frame's payload, published through MQTT.js (the frame's topic is this writer's). */
  #publish (frame: Buffer): void {
    if (!this.#mqtt.connected) return
    let at = 1
    while (((frame[at] as number) & 0x80) !== 0) at++
    at++
    const topicLength = frame.readUInt16BE(at)
    this.#mqtt.publish(this.#topic, frame.subarray(at + 2 + topicLength), { qos: 0 })
  }
}
