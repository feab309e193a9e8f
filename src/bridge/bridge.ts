// One bridge: its outbound queue, its link to the remote broker, and the messages that cross it each way
// (docs/bridge.md). Outbound QoS 1 messages go through the queue, at most WINDOW of them unacknowledged at once, the
// oldest first, again from the oldest after a reconnection; inbound messages are published locally one at a time,
// as the identity `$bridge/NAME`, each acknowledged to the remote broker only once aedes has routed it.
import type { Aedes, PublishPacket } from 'aedes'
import type { Limits } from '../limits.js'
import type { Logger } from '../logger.js'
import type { Policy } from '../security/policy.js'
import { publicUrl, type ResolvedBridge } from './bridge-config.js'
import { OutboundQueue, type DropReason, type QueueEntry } from './outbound-queue.js'
import type { QueueDisk } from './queue-disk.js'
import type { LinkFailure, RemoteConnection, RemoteMessage } from './remote-client.js'
import { RemoteLink, type LinkOptions } from './remote-link.js'
import type { BridgeDropReason, BridgeInboundDropReason, BridgeStatus } from './status.js'
import { firstMatch } from './topic-rules.js'

/** Outbound QoS 1 messages sent and not yet acknowledged, at most. */
export const WINDOW = 256
/** Local topics whose outbound match is remembered, at most (then forgotten all at once: a gateway's topics are few). */
const MATCHES_KEPT = 4096
/** A drop is logged at once, then at most once per this long with what was dropped meanwhile. */
const DROP_LOG_INTERVAL_MS = 10_000

/** Bytes written to the remote broker and not yet taken by its socket, past which QoS 0 messages are dropped. */
const MAX_UNSENT_BYTES = 8 * 1024 * 1024
/**
 * The largest packet read from the remote broker: a bound on the memory one packet can take, far above what cloud
 * brokers send (AWS IoT Core 128 KiB, Alibaba's 256 KiB). A message under it but over limits.maxPayloadBytes is read,
 * dropped and counted (`limits`), and acknowledged; a packet over it ends the connection, said in status and log
 * (failure `protocol`): it cannot be acknowledged unread, so a persistent session would send it again.
 */
const MIN_PACKET_BOUND_BYTES = 16 * 1024 * 1024
const PACKET_OVERHEAD_BYTES = 64 * 1024

/** The identity a bridge publishes locally as: policy rules name it. */
export function bridgeIdentity (name: string): string {
  return `$bridge/${name}`
}

export interface BridgeDeps {
  readonly aedes: Aedes
  readonly limits: Limits
  readonly policy: Policy | undefined
  readonly logger: Logger
  readonly disk: QueueDisk | undefined
  /** Marks a packet the bridge publishes locally, so that no bridge sends it back out through this one. */
  readonly markInbound: (packet: PublishPacket, bridge: Bridge) => void
  /** Tests: makes the link's connections. */
  readonly connect?: LinkOptions['connect']
}

/** The current connection's sending state: its publishes' acknowledgements count only while it is current. */
interface Connection {
  readonly client: RemoteConnection
  inFlight: number
}

export class Bridge {
  readonly name: string
  readonly identity: string
  readonly #config: ResolvedBridge
  readonly #deps: BridgeDeps
  readonly #logger: Logger
  readonly queue: OutboundQueue
  readonly link: RemoteLink
  #connection: Connection | undefined
  #pumping = false
  #sent = 0
  #received = 0
  readonly #dropped: Record<BridgeDropReason, number> = { maxMessages: 0, maxBytes: 0, maxAgeMs: 0, offline: 0 }
  readonly #inboundDropped: Record<BridgeInboundDropReason, number> = { policy: 0, limits: 0, unmatched: 0 }
  /** Drops not logged yet, and the timer that logs them. */
  #unlogged: Partial<Record<string, number>> = {}
  #dropTimer: NodeJS.Timeout | undefined
  /** Outbound matches by local topic (null: no rule matches): a topic is matched against the rules once, not per message. */
  readonly #outMatches = new Map<string, ReturnType<typeof firstMatch> | null>()

  constructor (config: ResolvedBridge, deps: BridgeDeps) {
    this.name = config.name
    this.identity = bridgeIdentity(config.name)
    this.#config = config
    this.#deps = deps
    this.#logger = deps.logger
    this.queue = new OutboundQueue({
      bounds: config.queue,
      disk: deps.disk,
      onDrop: (reason, count) => this.#drop(reason, count),
      onDurable: () => this.#pump(),
      onWriteFailed: (err, count) => this.#logger.error({ err, bridge: this.name, refused: count }, 'bridge: messages could not be queued on disk; they are refused'),
    })
    const tls = config.tls
    this.link = new RemoteLink({
      url: config.url,
      client: {
        clientId: config.clientId,
        ...config.username === undefined ? {} : { username: config.username },
        ...config.password === undefined ? {} : { password: config.password },
        keepaliveSec: config.keepaliveSec,
        // the remote broker keeps the subscriptions and what it queued for them while the link is down
        clean: false,
        connectTimeoutMs: 10_000,
        maxPacketBytes: Math.max(MIN_PACKET_BOUND_BYTES, deps.limits.maxPayloadBytes + PACKET_OVERHEAD_BYTES),
        ...tls === undefined ? {} : { tls },
      },
      minDelayMs: config.minDelayMs,
      maxDelayMs: config.maxDelayMs,
      stableMs: 5_000,
      ...deps.connect === undefined ? {} : { connect: deps.connect },
      onUp: client => this.#up(client),
      onDown: (failure, detail) => this.#down(failure, detail),
      onMessage: (message, done) => this.#inbound(message, done),
    })
  }

  /** Reads the queue left on disk and starts connecting. */
  async start (): Promise<void> {
    await this.queue.open()
    if (this.queue.messages > 0) this.#logger.info({ bridge: this.name, queued: this.queue.messages }, 'bridge: messages queued before the restart will be sent')
    this.link.start()
  }

  async close (): Promise<void> {
    clearTimeout(this.#dropTimer)
    this.#logDrops()
    this.#connection = undefined
    await this.link.close()
    await this.queue.flushed()
  }

  /**
   * A local message: sent out if an `out` rule matches it. Returns a promise when the message went into the queue,
   * settled once it is durable; undefined otherwise.
   */
  offer (packet: PublishPacket): Promise<void> | undefined {
    const match = this.#outMatch(packet.topic)
    if (match === undefined) return undefined
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
    if (match.rule.qos === 0) {
      const connection = this.#connection
      // disconnected, or a remote broker that does not read: QoS 0 is not kept
      if (connection === undefined || connection.client.buffered > MAX_UNSENT_BYTES) {
        this.#drop('offline', 1)
        return undefined
      }
      connection.client.publish(match.topic, payload, 0, packet.retain)
      this.#sent++
      return undefined
    }
    // on disk: the queue pumps once the batch holding it is written (onDurable), before its publisher hears
    const durable = this.queue.push(match.topic, payload, packet.retain)
    if (durable === undefined) this.#pump()
    return durable
  }

  #outMatch (topic: string): ReturnType<typeof firstMatch> {
    const known = this.#outMatches.get(topic)
    if (known !== undefined) return known ?? undefined
    const match = firstMatch(this.#config.out, topic)
    if (this.#outMatches.size >= MATCHES_KEPT) this.#outMatches.clear()
    this.#outMatches.set(topic, match ?? null)
    return match
  }

  #up (client: RemoteConnection): void {
    const connection: Connection = { client, inFlight: 0 }
    this.#connection = connection
    this.#logger.info({ bridge: this.name, url: publicUrl(this.#config.url), queued: this.queue.messages }, 'bridge connected')
    if (this.#config.in.length > 0) {
      const filters = this.#config.in.map(rule => ({ filter: rule.from, qos: rule.qos }))
      client.subscribe(filters, (err, granted) => {
        const refused = filters.filter((_, i) => granted[i] === 0x80).map(({ filter }) => filter)
        if (err === undefined && refused.length > 0) this.#logger.warn({ bridge: this.name, refused }, 'bridge: the remote broker refused a subscription')
      })
    }
    this.queue.rewind()
    this.#pump()
  }

  #down (failure: LinkFailure, detail: string): void {
    this.#connection = undefined
    this.queue.rewind()
    const refused = failure.startsWith('refused') || failure === 'keeps_dropping'
    this.#logger[refused ? 'error' : 'warn']({
      bridge: this.name, url: publicUrl(this.#config.url), failure, retryInMs: this.link.nextDelayMs, queued: this.queue.messages,
    }, `bridge ${this.name}: ${detail}; retrying`)
  }

  /** Sends queued messages while the window has room. One loop at a time; it ends when there is nothing to send. */
  #pump (): void {
    if (this.#pumping) return
    const connection = this.#connection
    if (connection === undefined || connection.inFlight >= WINDOW || !this.queue.ready) return
    this.#pumping = true
    this.#send(connection).catch((err: unknown) => {
      this.#logger.error({ err, bridge: this.name }, 'bridge: queued messages could not be read back')
    }).finally(() => {
      this.#pumping = false
      // what came in while the loop was reading the disk
      if (this.#connection === connection && this.queue.ready && connection.inFlight < WINDOW) this.#pump()
    })
  }

  async #send (connection: Connection): Promise<void> {
    while (this.#connection === connection && connection.inFlight < WINDOW) {
      const entries = await this.queue.take(WINDOW - connection.inFlight)
      if (entries.length === 0 || this.#connection !== connection) return
      for (const entry of entries) this.#publish(connection, entry)
    }
  }

  #publish (connection: Connection, entry: QueueEntry): void {
    const record = entry.record
    if (record === undefined) return
    connection.inFlight++
    connection.client.publish(record.topic, record.payload, 1, record.retain, err => {
      if (this.#connection !== connection) return
      connection.inFlight--
      // an error here is the connection ending: the message stays queued and is sent again on the next one
      if (err === undefined) {
        if (!entry.gone) this.#sent++
        this.queue.ack(entry)
      }
      this.#pump()
    })
  }

  /** A message from the remote broker: acknowledged (`done`) once aedes has routed it, or it was dropped. */
  #inbound (packet: RemoteMessage, done: () => void): void {
    const match = firstMatch(this.#config.in, packet.topic)
    if (match === undefined) {
      this.#inboundDropped.unmatched++
      done()
      return
    }
    // a copy: the message is a view of the connection's read buffer
    const payload = Buffer.from(packet.payload)
    const problem = this.#overLimit(match.topic, payload)
    if (problem !== undefined) {
      this.#inboundDropped.limits++
      this.#warnInbound('limits', { topic: match.topic, reason: problem })
      done()
      return
    }
    const policy = this.#deps.policy
    if (policy !== undefined && !policy.mayPublish(this.identity, match.topic)) {
      this.#inboundDropped.policy++
      this.#warnInbound('policy', { topic: match.topic, reason: `${this.identity} may not publish on ${match.topic}` })
      done()
      return
    }
    const local = { cmd: 'publish', topic: match.topic, payload, qos: match.rule.qos, retain: packet.retain, dup: false } as PublishPacket
    this.#deps.markInbound(local, this)
    // aedes' typings leave out the client argument its publish takes (null: the broker's own message)
    const publish = this.#deps.aedes.publish as unknown as (packet: PublishPacket, client: null, done: (err?: Error) => void) => void
    publish.call(this.#deps.aedes, local, null, (err?: Error) => {
      if (err != null) this.#logger.warn({ err, bridge: this.name, topic: match.topic }, 'bridge: an inbound message could not be published locally')
      else this.#received++
      done()
    })
  }

  #overLimit (topic: string, payload: Buffer): string | undefined {
    const { maxPayloadBytes, maxTopicBytes, maxTopicLevels } = this.#deps.limits
    if (payload.length > maxPayloadBytes) return `payload of ${payload.length} bytes exceeds limits.maxPayloadBytes (${maxPayloadBytes})`
    const bytes = Buffer.byteLength(topic)
    if (bytes > maxTopicBytes) return `topic of ${bytes} bytes exceeds limits.maxTopicBytes (${maxTopicBytes})`
    if (topic.split('/').length > maxTopicLevels) return `topic has more than limits.maxTopicLevels (${maxTopicLevels}) levels`
    return undefined
  }

  #warnedInbound = new Set<string>()
  /** Once per reason at warn level, debug after: a remote broker that floods must not flood the log. */
  #warnInbound (reason: BridgeInboundDropReason, details: object): void {
    const first = !this.#warnedInbound.has(reason)
    this.#warnedInbound.add(reason)
    this.#logger[first ? 'warn' : 'debug']({ bridge: this.name, ...details }, 'bridge: an inbound message was dropped')
  }

  #drop (reason: DropReason | 'offline', count: number): void {
    this.#dropped[reason] += count
    this.#unlogged[reason] = (this.#unlogged[reason] ?? 0) + count
    if (this.#dropTimer !== undefined) return
    this.#logDrops()
    this.#dropTimer = setTimeout(() => {
      this.#dropTimer = undefined
      this.#logDrops()
    }, DROP_LOG_INTERVAL_MS)
    this.#dropTimer.unref()
  }

  #logDrops (): void {
    const dropped = this.#unlogged
    if (Object.keys(dropped).length === 0) return
    this.#unlogged = {}
    this.#logger.warn({ bridge: this.name, dropped, queued: this.queue.messages },
      `bridge ${this.name}: outbound messages dropped (${Object.entries(dropped).map(([reason, n]) => `${n as number} by ${reason === 'offline' ? 'QoS 0 while disconnected' : `queue.${reason}`}`).join(', ')})`)
  }

  status (): BridgeStatus {
    const link = this.link
    return {
      name: this.name,
      url: publicUrl(this.#config.url),
      connected: link.connected,
      state: link.state,
      lastFailure: link.lastFailure,
      lastError: link.lastError,
      lastConnectedAt: link.lastConnectedAt,
      connects: link.connects,
      failures: link.failures,
      queuedMessages: this.queue.messages,
      queuedBytes: this.queue.bytes,
      sent: this.#sent,
      dropped: { ...this.#dropped },
      received: this.#received,
      receivedDropped: { ...this.#inboundDropped },
    }
  }
}
