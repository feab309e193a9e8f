// One connection of a bridge to its remote broker, speaking MQTT 3.1.1 itself (src/protocol/mqtt-packets.ts) on a
// TCP, TLS or WebSocket stream: CONNECT with the bridge's session kept, QoS 0 and 1 out with their PUBACKs matched
// by packet id, SUBSCRIBE, inbound messages handed on one at a time and acknowledged once handled, keep-alive.
// It never reconnects and never resends: the link (remote-link.ts) makes a new one, and the bridge's queue decides
// what is sent again, in its order. Why not MQTT.js: per message forwarded it deep-copied the packet into its
// outgoing store, ran its debug lines and wrote the PUBLISH in five or six pieces; its keep-alive rescheduled a timer
// per packet; and it read a remote packet of any size (benchmarks/NOTES.md, issue 17).
import { connect as netConnect, isIP } from 'node:net'
import type { Duplex } from 'node:stream'
import {
  decodeConnack, decodePacketId, decodePublish, DISCONNECT, encodeAck, encodeConnect, encodePublish, encodeSubscriptions, PacketReader,
  PacketType, PINGREQ,
} from '../protocol/mqtt-packets.js'
import { Fifo } from '../util/fifo.js'

/** Why a connection ended, as status and metrics name it (the link adds `keeps_dropping`). */
export type LinkFailure = 'refused_bad_credentials' | 'refused_not_authorized' | 'refused_identifier' | 'refused' | 'unreachable' | 'dropped' | 'keeps_dropping' | 'timeout' | 'protocol'

export interface RemoteClientOptions {
  readonly clientId: string
  readonly username?: string
  readonly password?: string
  /** Seconds; 0: no keep-alive. */
  readonly keepaliveSec: number
  /** false: the remote broker keeps the subscriptions and what it queued for them while the link is down. */
  readonly clean: boolean
  readonly connectTimeoutMs: number
  /** Largest packet the remote broker may send; a larger one ends the connection. */
  readonly maxPacketBytes: number
  readonly tls?: { readonly ca?: Buffer, readonly cert?: Buffer, readonly key?: Buffer, readonly rejectUnauthorized: boolean }
}

export interface RemoteMessage {
  readonly topic: string
  /** A view of the packet's bytes: copy it to keep it past the handler. */
  readonly payload: Buffer
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
}

export interface RemoteClientEvents {
  /** The remote broker accepted the connection. */
  readonly connected: () => void
  /** The connection is over (after `connected` or before it), once; `detail` says why in words. */
  readonly closed: (failure: LinkFailure, detail: string) => void
  /** A message from the remote broker; `done` once it is handled (a QoS 1 one is acknowledged then). One at a time. */
  readonly message: (message: RemoteMessage, done: () => void) => void
}

/** What the bridge uses of a connection (the link's tests stand in for it). */
export interface RemoteConnection {
  /** QoS 1: `acked` once the remote broker acknowledged it, or with an error when the connection ended first. */
  publish: (topic: string, payload: Buffer, qos: 0 | 1, retain: boolean, acked?: (err?: Error) => void) => void
  /** `done` with the QoS granted each filter (0x80: refused), or with an error when the connection ended first. */
  subscribe: (filters: ReadonlyArray<{ readonly filter: string, readonly qos: 0 | 1 }>, done: (err: Error | undefined, granted: readonly number[]) => void) => void
  /** Bytes written and not yet taken by the socket. */
  readonly buffered: number
  /** Ends the connection (a DISCONNECT first when it is up); `closed` is not called for it. */
  end: () => Promise<void>
}

/** Inbound messages waiting for the one being handled, past which the socket is no longer read. */
const INBOUND_HIGH_WATER = 256
const CONNACK_REFUSALS: Readonly<Record<number, { readonly kind: LinkFailure, readonly detail: string }>> = {
  1: { kind: 'refused', detail: 'the remote broker refused the connection: unacceptable protocol version (MQTT 3.1.1)' },
  2: { kind: 'refused_identifier', detail: 'the remote broker refused the client id' },
  3: { kind: 'refused', detail: 'the remote broker refused the connection: server unavailable' },
  4: { kind: 'refused_bad_credentials', detail: 'the remote broker refused the connection: bad user name or password' },
  5: { kind: 'refused_not_authorized', detail: 'the remote broker refused the connection: not authorized' },
}

interface Pending {
  readonly type: PacketType.Puback | PacketType.Suback
  readonly done: (err: Error | undefined, body: Buffer | undefined) => void
}

export class RemoteClient implements RemoteConnection {
  readonly #url: string
  readonly #options: RemoteClientOptions
  readonly #events: RemoteClientEvents
  readonly #reader: PacketReader
  readonly #onPacket = (type: number, flags: number, body: Buffer): void => this.#packet(type, flags, body)
  #stream: Duplex | undefined
  #connected = false
  #over = false
  /** The first reason the connection is ending, kept for `closed`. */
  #failure: { kind: LinkFailure, detail: string } | undefined
  #connectTimer: NodeJS.Timeout | undefined
  #keepaliveTimer: NodeJS.Timeout | undefined
  #heard = false
  #lastId = 0
  readonly #pending = new Map<number, Pending>()
  /** Packets of this turn, written together at its end. */
  #out: Buffer[] = []
  #outBytes = 0
  readonly #inbound = new Fifo<{ readonly message: RemoteMessage, readonly packetId: number }>()
  #handling = false
  #paused = false

  constructor (url: string, options: RemoteClientOptions, events: RemoteClientEvents) {
    this.#url = url
    this.#options = options
    this.#events = events
    this.#reader = new PacketReader(() => options.maxPacketBytes)
  }

  /** Opens the connection and sends CONNECT; `connected` or `closed` tells how it went. */
  start (): void {
    const { connectTimeoutMs } = this.#options
    // from the start: a WebSocket's handshake or a TLS one that hangs counts too
    this.#connectTimer = setTimeout(() => this.#end('timeout', `the remote broker did not accept the connection within ${connectTimeoutMs} ms`), connectTimeoutMs)
    openRemoteStream(this.#url, this.#options.tls).then(stream => this.#attach(stream), (err: Error) => this.#end('unreachable', err.message))
  }

  get buffered (): number {
    return (this.#stream?.writableLength ?? 0) + this.#outBytes
  }

  #attach (stream: Duplex): void {
    if (this.#over) {
      stream.destroy()
      return
    }
    this.#stream = stream
    stream.on('data', (chunk: Buffer) => {
      this.#heard = true
      const broken = this.#reader.push(chunk, this.#onPacket)
      if (broken !== undefined) this.#end('protocol', `the remote broker sent ${broken}`)
    })
    stream.on('error', (err: Error) => { this.#failure ??= { kind: this.#connected ? 'dropped' : 'unreachable', detail: err.message } })
    stream.on('end', () => stream.destroy())
    stream.on('close', () => this.#closed())
    const { clientId, username, password, keepaliveSec, clean } = this.#options
    this.#write(encodeConnect({ clientId, username, password, keepalive: keepaliveSec, clean }))
  }

  publish (topic: string, payload: Buffer, qos: 0 | 1, retain: boolean, acked?: (err?: Error) => void): void {
    if (!this.#connected || this.#over) {
      acked?.(new Error('the connection to the remote broker is down'))
      return
    }
    if (qos === 0) {
      this.#write(encodePublish(topic, payload, 0, retain))
      acked?.()
      return
    }
    const id = this.#nextId()
    this.#pending.set(id, { type: PacketType.Puback, done: err => acked?.(err) })
    this.#write(encodePublish(topic, payload, 1, retain, id))
  }

  subscribe (filters: ReadonlyArray<{ readonly filter: string, readonly qos: 0 | 1 }>, done: (err: Error | undefined, granted: readonly number[]) => void): void {
    if (!this.#connected || this.#over) {
      done(new Error('the connection to the remote broker is down'), [])
      return
    }
    const id = this.#nextId()
    this.#pending.set(id, { type: PacketType.Suback, done: (err, body) => done(err, body === undefined ? [] : [...body.subarray(2)]) })
    this.#write(encodeSubscriptions(id, filters))
  }

  async end (): Promise<void> {
    const stream = this.#stream
    this.#over = true
    this.#stop()
    if (stream === undefined || stream.destroyed) return
    const closed = new Promise<void>(resolve => stream.once('close', () => resolve()))
    if (this.#connected) {
      this.#flush()
      stream.end(DISCONNECT)
      setTimeout(() => stream.destroy(), 1000).unref()
    } else {
      stream.destroy()
    }
    await closed
  }

  #nextId (): number {
    // ids in use are at most the bridge's window and its subscriptions: a free one is always near
    do this.#lastId = this.#lastId === 0xffff ? 1 : this.#lastId + 1
    while (this.#pending.has(this.#lastId))
    return this.#lastId
  }

  /** Queues `bytes` for the end of this turn: one write for every packet of it. */
  #write (bytes: Buffer): void {
    if (this.#out.length === 0) process.nextTick(() => this.#flush())
    this.#out.push(bytes)
    this.#outBytes += bytes.length
  }

  #flush (): void {
    const out = this.#out
    if (out.length === 0) return
    this.#out = []
    this.#outBytes = 0
    const stream = this.#stream
    if (stream === undefined || stream.destroyed) return
    stream.write(out.length === 1 ? out[0] as Buffer : Buffer.concat(out))
  }

  #packet (type: number, flags: number, body: Buffer): void {
    if (this.#over) return
    if (!this.#connected && type !== PacketType.Connack) {
      this.#end('protocol', `the remote broker sent a packet of type ${type} before CONNACK`)
      return
    }
    switch (type) {
      case PacketType.Connack:
        this.#connack(body)
        return
      case PacketType.Publish:
        this.#publishIn(flags, body)
        return
      case PacketType.Puback:
      case PacketType.Suback: {
        const id = decodePacketId(body)
        const pending = id === undefined ? undefined : this.#pending.get(id)
        // an acknowledgement of nothing awaited (a resend's, say) is ignored
        if (pending === undefined || pending.type !== type) return
        this.#pending.delete(id as number)
        pending.done(undefined, body)
        return
      }
      case PacketType.Pubrel: {
        const id = decodePacketId(body)
        if (id === undefined) break
        this.#write(encodeAck(PacketType.Pubcomp, id))
        return
      }
      case PacketType.Pingresp:
      case PacketType.Unsuback:
        return
    }
    this.#end('protocol', `the remote broker sent a malformed or unexpected packet (type ${type})`)
  }

  #connack (body: Buffer): void {
    const code = decodeConnack(body)
    if (code === undefined || this.#connected) {
      this.#end('protocol', 'the remote broker sent a malformed or second CONNACK')
      return
    }
    clearTimeout(this.#connectTimer)
    if (code !== 0) {
      const refusal = CONNACK_REFUSALS[code] ?? { kind: 'refused', detail: `the remote broker refused the connection (CONNACK ${code})` }
      this.#end(refusal.kind, refusal.detail)
      return
    }
    this.#connected = true
    this.#startKeepalive()
    this.#events.connected()
  }

  #publishIn (flags: number, body: Buffer): void {
    const message = decodePublish(flags, body)
    if (message === undefined || (message.qos > 0 && message.packetId === 0)) {
      this.#end('protocol', 'the remote broker sent a malformed PUBLISH')
      return
    }
    // QoS 2 (a broker that ignores the QoS subscribed with): acknowledged with PUBREC at once, released on PUBREL
    if (message.qos === 2) this.#write(encodeAck(PacketType.Pubrec, message.packetId))
    this.#inbound.push({ message, packetId: message.packetId })
    if (this.#inbound.length >= INBOUND_HIGH_WATER && !this.#paused) {
      this.#paused = true
      this.#stream?.pause()
    }
    if (!this.#handling) this.#handleNext()
  }

  /** Hands the oldest waiting message on; the next one once it is handled. */
  #handleNext (): void {
    const next = this.#inbound.shift()
    if (next === undefined || this.#over) {
      this.#handling = false
      return
    }
    this.#handling = true
    let done = false
    this.#events.message(next.message, () => {
      if (done) return
      done = true
      if (next.message.qos === 1 && !this.#over) this.#write(encodeAck(PacketType.Puback, next.packetId))
      if (this.#paused && this.#inbound.length < INBOUND_HIGH_WATER / 2) {
        this.#paused = false
        this.#stream?.resume()
      }
      this.#handleNext()
    })
  }

  #startKeepalive (): void {
    const seconds = this.#options.keepaliveSec
    if (seconds <= 0) return
    this.#heard = true
    // every keep-alive a PINGREQ; nothing heard since the last one (not even its PINGRESP): the connection is dead
    this.#keepaliveTimer = setInterval(() => {
      if (!this.#heard) {
        this.#end('timeout', `the remote broker did not answer within the keep-alive (${seconds} s)`)
        return
      }
      this.#heard = false
      this.#write(PINGREQ)
    }, seconds * 1000)
    this.#keepaliveTimer.unref()
  }

  /** Ends the connection for `kind`: `closed` follows once the stream has closed. */
  #end (kind: LinkFailure, detail: string): void {
    this.#failure ??= { kind, detail }
    this.#stop()
    if (this.#stream !== undefined) {
      this.#stream.destroy()
      return
    }
    // no stream yet (it failed, or is late: #attach drops it)
    if (this.#over) return
    this.#over = true
    this.#events.closed(kind, detail)
  }

  #stop (): void {
    clearTimeout(this.#connectTimer)
    clearInterval(this.#keepaliveTimer)
    this.#reader.clear()
  }

  #closed (): void {
    this.#stop()
    const ended = this.#over
    this.#over = true
    this.#inbound.retain(() => false)
    this.#out = []
    this.#outBytes = 0
    if (!ended) {
      const failure = this.#failure ?? (this.#connected
        ? { kind: 'dropped' as const, detail: 'the remote broker closed the connection' }
        : { kind: 'unreachable' as const, detail: 'the connection closed before the remote broker accepted it' })
      this.#events.closed(failure.kind, failure.detail)
    }
    // after `closed`: the bridge has let go of this connection, so a failed publish does not make it send the next
    const lost = new Error('the connection to the remote broker ended')
    const pending = [...this.#pending.values()]
    this.#pending.clear()
    for (const { done } of pending) done(lost, undefined)
  }
}

/**
 * A stream to the remote broker: `mqtt://` TCP (1883), `mqtts://` TLS (8883; the bridge's CA, client certificate and
 * key), `ws://` / `wss://` a WebSocket of subprotocol `mqtt` (the `ws` package, loaded only for these).
 */
export async function openRemoteStream (url: string, tls: RemoteClientOptions['tls']): Promise<Duplex> {
  const parsed = new URL(url)
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1')
  const tlsOptions = {
    ...tls?.ca === undefined ? {} : { ca: tls.ca },
    ...tls?.cert === undefined ? {} : { cert: tls.cert },
    ...tls?.key === undefined ? {} : { key: tls.key },
    rejectUnauthorized: tls?.rejectUnauthorized !== false,
  }
  if (parsed.protocol === 'ws:' || parsed.protocol === 'wss:') {
    const { WebSocket, createWebSocketStream } = await import('ws')
    const socket = new WebSocket(url, 'mqtt', parsed.protocol === 'wss:' ? tlsOptions : {})
    return await new Promise<Duplex>((resolve, reject) => {
      socket.once('open', () => {
        socket.removeListener('error', reject)
        resolve(createWebSocketStream(socket))
      })
      socket.once('error', reject)
    })
  }
  const secure = parsed.protocol === 'mqtts:'
  const port = parsed.port === '' ? (secure ? 8883 : 1883) : Number(parsed.port)
  const stream = secure
    ? (await import('node:tls')).connect({ host, port, ...isIP(host) === 0 ? { servername: host } : {}, ...tlsOptions })
    : netConnect({ host, port })
  stream.setNoDelay(true)
  return stream
}
