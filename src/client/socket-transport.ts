import type { Duplex } from 'node:stream'
import { FnbusError } from '../errors.js'
import { DEFAULT_LIMITS } from '../limits.js'
import { EnvelopeBatcher, inboxTopic, UP_TOPIC, type Envelope, type Welcome } from '../protocol/index.js'
import {
  CONNACK_MESSAGES, decodeConnack, decodePacketId, decodePublish, DISCONNECT, encodeAck, encodeConnect, encodePublish, encodeSubscribe,
  encodeUnsubscribe, PacketReader, PacketType, PINGREQ,
} from '../protocol/mqtt-packets.js'
import { connectOptions, type ConnectOptions } from './connect-options.js'
import { sideChannelOf } from '../util/port-duplex.js'
import { noDelay, openStream, streamTarget, type StreamLink, type StreamTarget } from './streams.js'
import { refusal, type Transport, type TransportListener } from './transport.js'
import type { FCClientOptions } from './types.js'

/** How long things may take; tests shorten them. */
export interface TransportTiming {
  /** Seconds of silence after which each side may take the other for dead: a PINGREQ goes out this often. */
  readonly keepaliveS: number
  /** ms a connection has to be accepted (CONNACK) before it is given up and tried again. */
  readonly connectTimeoutMs: number
}

const DEFAULT_TIMING: TransportTiming = { keepaliveS: 30, connectTimeoutMs: 10_000 }
/** ms a graceful end waits for the gateway to close the connection after DISCONNECT. */
const END_GRACE_MS = 1000

/** An acknowledgement awaited: of a publish (QoS 1: PUBACK; QoS 2: PUBREC then PUBCOMP), a (un)subscription. */
interface Awaited {
  expects: PacketType
  readonly resolve: (granted: number) => void
  readonly reject: (err: FnbusError) => void
}

/**
 * The client's transport on a socket of its own, speaking MQTT 3.1.1 itself (mqtt-packets.ts): TCP, TLS, the
 * gateway's Unix socket, or any duplex stream a host hands it (streams.ts). What the SDK needs of MQTT is small — one
 * clean session, its inbox, `$fn/up` frames, events in and out — and MQTT.js' general machinery around it costs each
 * function process ~20 MB and each message a parse through streams; here the inbox's frames go from the socket's
 * chunk to the client with one look at their topic.
 *
 * Reconnects every `reconnectPeriod` after a connection drops or fails, except after a refusal (CONNACK 2, 4, 5) or
 * `end()`, or with a period of 0. Event subscriptions are restored on each new connection, as MQTT.js does.
 */
export class SocketTransport implements Transport {
  readonly clientId: string
  readonly url: string
  readonly #listener: TransportListener
  readonly #options: ConnectOptions
  /** Where a socket goes; undefined on a link (a function thread's way to its gateway). */
  readonly #target: StreamTarget | undefined
  readonly #link: StreamLink | undefined
  readonly #inbox: string
  readonly #outbox: EnvelopeBatcher
  readonly #reader: PacketReader
  readonly #timing: TransportTiming
  readonly #onPacket = (type: number, flags: number, body: Buffer): void => this.#packet(type, flags, body)
  #stream: Duplex | undefined
  /** The current stream's CONNECT was accepted. */
  #connected = false
  #epoch = 0
  #welcome: Welcome | undefined
  /** No more connections: `end()` was called, or the gateway refused who this client is. */
  #ended = false
  #reconnectTimer: NodeJS.Timeout | undefined
  #connectTimer: NodeJS.Timeout | undefined
  #keepaliveTimer: NodeJS.Timeout | undefined
  /** Bytes arrived since the last PINGREQ. */
  #heard = false
  #lastId = 0
  readonly #awaited = new Map<number, Awaited>()
  /** Event filters subscribed, with their QoS: subscribed again on each new connection. */
  readonly #subscriptions = new Map<string, 0 | 1 | 2>()
  /** QoS 2 messages received and not yet released (PUBREL): a resend of one is not delivered twice. */
  readonly #unreleased = new Set<number>()

  /** `link`: each connection's stream comes from it instead of a socket to the url (thread-link.ts). */
  constructor (options: FCClientOptions, listener: TransportListener, timing: TransportTiming = DEFAULT_TIMING, link?: StreamLink) {
    this.#listener = listener
    this.#timing = timing
    this.#options = connectOptions(options)
    this.#link = link
    this.url = link?.url ?? this.#options.displayUrl
    this.clientId = this.#options.clientId
    this.#target = link === undefined ? streamTarget(this.#options.url, this.#options.ca) : undefined
    this.#inbox = inboxTopic(this.clientId)
    // a packet above the gateway's frame limit is not one the gateway sends: before its welcome says the limit, the default
    this.#reader = new PacketReader(() => this.#welcome?.maxFrame ?? DEFAULT_LIMITS.maxFrameBytes)
    // leave room under the gateway's frame limit for the topic and MQTT header
    this.#outbox = new EnvelopeBatcher(UP_TOPIC, frame => this.#write(frame), () => (this.#welcome?.maxFrame ?? 64 * 1024) - 1024)
    this.#open()
  }

  get epoch (): number {
    return this.#epoch
  }

  get welcome (): Welcome | undefined {
    return this.#welcome
  }

  welcomed (env: Welcome, epoch: number): boolean {
    if (epoch !== this.#epoch || !this.#connected) return false
    this.#welcome = env
    return true
  }

  send (env: Envelope): void {
    this.#outbox.add(env)
  }

  flush (): void {
    this.#outbox.flush()
  }

  shutdown (): void {
    this.#welcome = undefined
  }

  end (force: boolean): Promise<void> {
    this.#ended = true
    clearTimeout(this.#reconnectTimer)
    const stream = this.#stream
    if (stream === undefined || stream.destroyed) return Promise.resolve()
    if (force || !this.#connected) {
      // nothing to hand over: dropped at once, not waited for
      stream.destroy()
      return Promise.resolve()
    }
    return new Promise<void>(resolve => {
      stream.once('close', () => resolve())
      stream.write(DISCONNECT)
      stream.end()
      // the gateway closes its side on DISCONNECT; one that does not is not waited for (nor is this promise left
      // pending with nothing to settle it: the timer keeps the process up until it does)
      const timer = setTimeout(() => stream.destroy(), END_GRACE_MS)
      stream.once('close', () => clearTimeout(timer))
    })
  }

  publish (topic: string, bytes: Buffer, options: { readonly qos: 0 | 1 | 2, readonly retain: boolean }): Promise<void> {
    if (!this.#connected) return Promise.reject(this.#notConnected('publish'))
    if (options.qos === 0) {
      // resolved once the socket took the frame, as MQTT.js does: a publisher that awaits it is paced by the socket
      return new Promise<void>(resolve => this.#write(encodePublish(topic, bytes, 0, options.retain), resolve))
    }
    return new Promise<void>((resolve, reject) => {
      const id = this.#await(options.qos === 1 ? PacketType.Puback : PacketType.Pubrec, () => resolve(), reject)
      this.#write(encodePublish(topic, bytes, options.qos, options.retain, id))
    })
  }

  subscribe (filter: string, qos: 0 | 1 | 2): Promise<void> {
    if (!this.#connected) return Promise.reject(this.#notConnected('subscribe'))
    return new Promise<void>((resolve, reject) => {
      const id = this.#await(PacketType.Suback, granted => {
        if (granted === 0x80) {
          reject(new FnbusError('FNBUS_NOT_AUTHORIZED', `the gateway refused the subscription to ${filter}`))
          return
        }
        this.#subscriptions.set(filter, qos)
        resolve()
      }, reject)
      this.#write(encodeSubscribe(id, [filter], qos))
    })
  }

  unsubscribe (filter: string): Promise<void> {
    this.#subscriptions.delete(filter)
    if (!this.#connected) return Promise.resolve()
    return new Promise<void>(resolve => {
      // a connection that drops first takes the subscription with it (clean session)
      const id = this.#await(PacketType.Unsuback, () => resolve(), () => resolve())
      this.#write(encodeUnsubscribe(id, filter))
    })
  }

  postSide (message: object): void {
    sideChannelOf(this.#stream)?.postSide(message)
  }

  // ---- the connection ---------------------------------------------------------------------------------------------

  #open (): void {
    let stream: Duplex
    try {
      stream = this.#link?.connect() ?? openStream({ url: this.#options.url, target: this.#target as StreamTarget })
    } catch (err) {
      this.#listener.warning(err)
      this.#scheduleReconnect()
      return
    }
    this.#stream = stream
    noDelay(stream)
    sideChannelOf(stream)?.on('side', message => { if (stream === this.#stream) this.#listener.side?.(message) })
    stream.on('data', (chunk: Buffer) => this.#data(stream, chunk))
    stream.on('error', (err: Error) => {
      if (stream === this.#stream && !this.#ended) this.#listener.warning(err)
    })
    // the gateway's end of the connection is the end of it: a socket does this by itself (allowHalfOpen false), an
    // injected duplex need not
    stream.on('end', () => stream.destroy())
    stream.on('close', () => this.#closed(stream))
    const { clientId, username, password } = this.#options
    const { keepaliveS, connectTimeoutMs } = this.#timing
    stream.write(encodeConnect({ clientId, username, password, keepalive: keepaliveS }))
    this.#connectTimer = setTimeout(() => {
      this.#cut(stream, new FnbusError('FNBUS_DISCONNECTED', `the gateway at ${this.url} did not accept the connection within ${connectTimeoutMs} ms`))
    }, connectTimeoutMs)
  }

  #data (stream: Duplex, chunk: Buffer): void {
    if (stream !== this.#stream) return
    this.#heard = true
    let broken: string | undefined
    try {
      broken = this.#reader.push(chunk, this.#onPacket)
    } catch (err) {
      // a listener's failure must not end up in the socket's read path
      this.#listener.warning(err)
    }
    if (broken !== undefined) this.#cut(stream, new FnbusError('FNBUS_BAD_MESSAGE', `the gateway at ${this.url} sent ${broken}: connection dropped`))
  }

  #packet (type: number, flags: number, body: Buffer): void {
    const stream = this.#stream
    if (stream === undefined || stream.destroyed) return
    if (!this.#connected && type !== PacketType.Connack) {
      this.#cut(stream, this.#violation(`a packet of type ${type} before CONNACK`))
      return
    }
    switch (type) {
      case PacketType.Connack:
        this.#connack(stream, body)
        return
      case PacketType.Publish:
        this.#publishIn(stream, flags, body)
        return
      case PacketType.Pubrel: {
        const id = decodePacketId(body)
        if (id === undefined) break
        this.#unreleased.delete(id)
        this.#write(encodeAck(PacketType.Pubcomp, id))
        return
      }
      case PacketType.Puback:
      case PacketType.Pubrec:
      case PacketType.Pubcomp:
      case PacketType.Suback:
      case PacketType.Unsuback: {
        const id = decodePacketId(body)
        if (id === undefined) break
        this.#acknowledged(type, id, body)
        return
      }
      case PacketType.Pingresp:
        return
    }
    this.#cut(stream, this.#violation(`a malformed or unexpected packet (type ${type})`))
  }

  #connack (stream: Duplex, body: Buffer): void {
    const code = decodeConnack(body)
    if (code === undefined || this.#connected) {
      this.#cut(stream, this.#violation('a malformed or second CONNACK'))
      return
    }
    clearTimeout(this.#connectTimer)
    if (code !== 0) {
      const message = CONNACK_MESSAGES[code] ?? `return code ${code}`
      const refused = refusal(this.url, code, message)
      if (refused !== undefined) {
        this.#ended = true
        this.#listener.warning(refused)
        this.#listener.refused(refused)
        stream.destroy()
        return
      }
      this.#cut(stream, new FnbusError('FNBUS_DISCONNECTED', `the gateway at ${this.url} refused the connection: ${message}`))
      return
    }
    this.#connected = true
    const epoch = ++this.#epoch
    this.#startKeepalive(stream)
    const inbox = this.#await(PacketType.Suback, granted => {
      if (epoch !== this.#epoch) return
      if (granted === 0x80) {
        this.#listener.warning(new FnbusError('FNBUS_NOT_AUTHORIZED', `the gateway refused the subscription to the client's inbox ${this.#inbox}`))
        return
      }
      this.#listener.subscribed(epoch)
    }, () => {})
    this.#write(encodeSubscribe(inbox, [this.#inbox], 0))
    for (const [filter, qos] of this.#subscriptions) {
      const id = this.#await(PacketType.Suback, granted => {
        if (granted !== 0x80) return
        this.#subscriptions.delete(filter)
        this.#listener.warning(new FnbusError('FNBUS_NOT_AUTHORIZED', `the gateway refused the subscription to ${filter} on reconnection`))
      }, () => {})
      this.#write(encodeSubscribe(id, [filter], qos))
    }
  }

  #publishIn (stream: Duplex, flags: number, body: Buffer): void {
    const message = decodePublish(flags, body)
    if (message === undefined || (message.qos > 0 && message.packetId === 0)) {
      this.#cut(stream, this.#violation('a malformed PUBLISH'))
      return
    }
    if (message.qos === 1) this.#write(encodeAck(PacketType.Puback, message.packetId))
    if (message.qos === 2) {
      this.#write(encodeAck(PacketType.Pubrec, message.packetId))
      if (this.#unreleased.has(message.packetId)) return
      this.#unreleased.add(message.packetId)
    }
    if (message.topic === this.#inbox) this.#listener.inbox(message.payload)
    else this.#listener.message(message.topic, message.payload, message)
  }

  #acknowledged (type: PacketType, id: number, body: Buffer): void {
    const awaited = this.#awaited.get(id)
    // an acknowledgement of nothing this client waits for (after a reconnection, say) is ignored, as MQTT.js does
    if (awaited === undefined || awaited.expects !== type) return
    if (type === PacketType.Pubrec) {
      awaited.expects = PacketType.Pubcomp
      this.#write(encodeAck(PacketType.Pubrel, id))
      return
    }
    this.#awaited.delete(id)
    awaited.resolve(type === PacketType.Suback ? body[2] ?? 0x80 : 0)
  }

  /** A PINGREQ every keep-alive; a gateway that sent nothing since the last one is taken for dead. */
  #startKeepalive (stream: Duplex): void {
    const { keepaliveS } = this.#timing
    this.#heard = true
    this.#keepaliveTimer = setInterval(() => {
      if (!this.#heard) {
        this.#cut(stream, new FnbusError('FNBUS_DISCONNECTED', `no answer from the gateway at ${this.url} within ${keepaliveS} s: connection dropped`))
        return
      }
      this.#heard = false
      this.#write(PINGREQ)
    }, keepaliveS * 1000)
    // the socket keeps the process alive while it is open, not this timer
    this.#keepaliveTimer.unref()
  }

  #closed (stream: Duplex): void {
    if (stream !== this.#stream) return
    this.#stream = undefined
    const wasConnected = this.#connected
    this.#connected = false
    clearTimeout(this.#connectTimer)
    clearInterval(this.#keepaliveTimer)
    this.#reader.clear()
    this.#outbox.clear()
    this.#unreleased.clear()
    const awaited = [...this.#awaited.values()]
    this.#awaited.clear()
    for (const { reject } of awaited) reject(new FnbusError('FNBUS_DISCONNECTED', `the connection to the gateway at ${this.url} dropped before the gateway answered`))
    if (wasConnected) {
      const wasUp = this.#welcome !== undefined
      this.#welcome = undefined
      this.#listener.closed(this.#epoch, wasUp)
    }
    this.#scheduleReconnect()
  }

  /** The next attempt, `reconnectPeriod` from now; none with a period of 0 (MQTT.js' meaning too). */
  #scheduleReconnect (): void {
    if (this.#ended || this.#options.reconnectPeriod <= 0) return
    clearTimeout(this.#reconnectTimer)
    this.#reconnectTimer = setTimeout(() => {
      if (!this.#ended) this.#open()
    }, this.#options.reconnectPeriod)
  }

  /** Drops the connection after `err` (said as a warning); the reconnection follows from its close. */
  #cut (stream: Duplex, err: FnbusError): void {
    if (stream !== this.#stream || stream.destroyed) return
    this.#listener.warning(err)
    stream.destroy()
  }

  #write (frame: Buffer, written?: () => void): void {
    const stream = this.#stream
    // frames of a connection that dropped are dropped with it, as MQTT.js drops QoS 0 messages (queueQoSZero: false)
    if (!this.#connected || stream === undefined || stream.destroyed || !stream.writable) {
      written?.()
      return
    }
    // the frames of one tick leave in one write (writev), not a system call each: a function publishing events in a
    // loop made one per event (an SDK publisher flat out: 47k → 16k events/s)
    if (!this.#corked) {
      this.#corked = true
      stream.cork()
      process.nextTick(() => {
        this.#corked = false
        stream.uncork()
      })
    }
    stream.write(frame, written === undefined ? undefined : () => written())
  }

  #corked = false

  /** A packet identifier not in use, with what to do when its acknowledgement comes. */
  #await (expects: PacketType, resolve: (granted: number) => void, reject: (err: FnbusError) => void): number {
    if (this.#awaited.size >= 0xffff) throw new FnbusError('FNBUS_RATE_LIMITED', 'every MQTT packet identifier is in use: 65,535 acknowledgements awaited')
    let id = this.#lastId
    do id = id === 0xffff ? 1 : id + 1
    while (this.#awaited.has(id))
    this.#lastId = id
    this.#awaited.set(id, { expects, resolve, reject })
    return id
  }

  #notConnected (what: string): FnbusError {
    return new FnbusError('FNBUS_DISCONNECTED', `${what} failed: not connected to the gateway at ${this.url}`)
  }

  #violation (what: string): FnbusError {
    return new FnbusError('FNBUS_BAD_MESSAGE', `the gateway at ${this.url} sent ${what}: connection dropped`)
  }
}
