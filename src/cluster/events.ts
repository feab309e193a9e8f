// The cluster's events (docs/cluster.md, "Events"): every ordinary message routed here goes out on NATS under its
// topic's subject, and what the other gateways send comes in and is routed here as if published here. Core NATS
// carries them (at most once between gateways, as fast as NATS goes); retained messages also go to a JetStream
// stream (retained.ts), for the gateways that come later. Hung on the bus's publish tap, as the bridges are
// (src/bridge/bridges.ts); loaded only by a gateway with a `cluster`.
import type { Aedes, PublishPacket } from 'aedes'
import type { Msg, NatsConnection, Status, Subscription } from '@nats-io/transport-node'
import type { FunctionBus } from '../broker/function-bus.js'
import type { Logger } from '../logger.js'
import { Fifo } from '../util/fifo.js'
import { decodeFrame, encodeFrame, importProblem, type EventFrame } from './event-frame.js'
import { RetainedSync, type RetainedDropReason, type RetainedState } from './retained.js'
import { eventSubjects, MAX_SUBJECT_BYTES, subjectToTopic, topicToSubject, type EventSubjects } from './subjects.js'

/**
 * Messages from NATS handed to aedes and not yet routed, at most, and their bytes (payload and topic). aedes.publish
 * is asynchronous and queues without bound behind its emitter's concurrency: past these a message from NATS is dropped
 * and counted rather than held. The callback subscription reads as fast as the socket gives, so NATS' own
 * slow-consumer limit never has to cut the connection, and memory stays within these bounds whatever other gateways,
 * or an intruder, send. One message of the largest payload always passes when nothing else is in flight.
 */
const MAX_IMPORTS_IN_FLIGHT = 1024
const MAX_IMPORT_BYTES_IN_FLIGHT = 32 * 1024 * 1024
/** A kind of drop is logged at once, then at most once per this long, with how many went meanwhile. */
const DROP_LOG_INTERVAL_MS = 60_000

export interface ClusterEventsOptions {
  /** Made with `noEcho: true`: this gateway never receives its own publishes. */
  readonly nc: NatsConnection
  /** Subject prefix, e.g. `fnbus`: events on `PREFIX.ev.>`, retained messages on `PREFIX.ret.>`. */
  readonly prefix: string
  /** This gateway's name, unique in the cluster (logs, status). */
  readonly gateway: string
  readonly aedes: Aedes
  readonly bus: FunctionBus
  readonly logger: Logger
  /** JetStream replicas of the retained messages' stream, when this gateway creates it. */
  readonly replicas: number
}

/**
 * Why a message was not carried. From NATS: `subject` (no topic maps to it, more levels than limits.maxTopicLevels,
 * or a `$` topic), `frame` (not a frame
 * this version writes), `limits` (over this gateway's limits, or a topic no client may publish on), `overload` (past
 * the messages in flight to aedes). To NATS: `unmapped` (a topic with no subject: over MAX_SUBJECT_BYTES once escaped),
 * `offline` (the connection is down: nats.js would buffer without bound), `publishFailed` (nats.js refused it: over
 * the server's max_payload, or the connection closed). Retained: `retainedOverflow` (too many waiting for JetStream),
 * `retainedRefused` (JetStream refused the write).
 */
export type ClusterEventDropReason = 'subject' | 'frame' | 'limits' | 'overload' | 'unmapped' | 'offline' | 'publishFailed' | RetainedDropReason

const DROP_REASONS: readonly ClusterEventDropReason[] = [
  'subject', 'frame', 'limits', 'overload', 'unmapped', 'offline', 'publishFailed', 'retainedOverflow', 'retainedRefused',
]

export interface ClusterEventsStatus {
  readonly gateway: string
  /** Whether the NATS connection is up (events cross gateways). */
  readonly online: boolean
  /** Messages sent to the other gateways. */
  readonly exported: number
  /** Messages from the other gateways routed here. */
  readonly imported: number
  /** Messages handed to aedes and not routed yet. */
  readonly importing: number
  /** All drops, and by reason. */
  readonly dropped: number
  readonly drops: Readonly<Record<ClusterEventDropReason, number>>
  /** `synced` once the retained messages' stream has been read since it was last out of reach. */
  readonly retained: RetainedState
  /** Retained messages written to the stream; waiting to be; published here by the last catch-up; when it ended. */
  readonly retainedStored: number
  readonly retainedUnsent: number
  readonly retainedApplied: number
  readonly retainedSyncedAt: number | undefined
}

/** aedes' publish takes the client (null: the broker's own message) that its typings leave out. */
type RoutePublish = (packet: PublishPacket, client: null, done: (err?: Error) => void) => void

/**
 * The sender aedes believes a message comes from, for its per-connection duplicate check (aedes' lib/client.js
 * `dedupe`): a connection is given a message only if its `brokerCounter` is above the last it was given from the same
 * `brokerId`. aedes numbers each message when `publish` is called, but a QoS 1 or retained one reaches its
 * subscribers later than a QoS 0 one published after it (persistence calls in between): with one sender, a
 * subscriber of both would silently lose the earlier one (measured: 5 of 80 QoS 1 messages lost, interleaved with
 * QoS 0 ones from another gateway). So the cluster's messages carry senders of their own, numbered here, one per
 * lane, and each lane reaches aedes' routing in its numbers' order: QoS 0 messages that are not retained go straight
 * through (aedes routes them synchronously), the others one after another (each once the last is routed).
 */
interface Lane {
  readonly brokerId: string
  counter: number
}

interface Queued {
  readonly topic: string
  readonly frame: EventFrame
  readonly done: (err: Error | undefined) => void
}

export class ClusterEvents {
  readonly #options: ClusterEventsOptions
  readonly #subjects: EventSubjects
  readonly #logger: Logger
  readonly #limits: FunctionBus['options']['limits']
  readonly #retained: RetainedSync
  /** Packets that came from the cluster: routed here, never sent out again (no loops). */
  readonly #imported = new WeakSet<object>()
  #untap: (() => void) | undefined
  #subscription: Subscription | undefined
  #statuses: AsyncIterable<Status> | undefined
  #online = true
  #closed = false
  #exported = 0
  #importedCount = 0
  #inFlight = 0
  #inFlightBytes = 0
  readonly #direct: Lane
  readonly #ordered: Lane
  /** The ordered lane's messages waiting for the one being routed (counted in #inFlight). */
  readonly #queue = new Fifo<Queued>()
  #routing = false
  readonly #drops: Record<ClusterEventDropReason, number> = Object.fromEntries(DROP_REASONS.map(reason => [reason, 0])) as Record<ClusterEventDropReason, number>
  /** Per reason: when it was last logged, and the drops since. */
  readonly #dropLog = new Map<ClusterEventDropReason, { at: number, since: number }>()

  private constructor (options: ClusterEventsOptions, subjects: EventSubjects) {
    this.#options = options
    this.#subjects = subjects
    this.#logger = options.logger
    this.#limits = options.bus.options.limits
    this.#direct = { brokerId: `${options.aedes.id}/cluster-direct`, counter: 0 }
    this.#ordered = { brokerId: `${options.aedes.id}/cluster-ordered`, counter: 0 }
    this.#retained = new RetainedSync({
      nc: options.nc,
      subjects,
      aedes: options.aedes,
      limits: this.#limits,
      logger: options.logger,
      replicas: options.replicas,
      publishLocal: (topic, frame) => this.#publishLocal(topic, frame),
      onDrop: (reason, details) => this.#drop(reason, details),
    })
  }

  /**
   * Subscribes to the other gateways' events and taps this one's. Throws only on a bad prefix (a configuration error);
   * JetStream not reachable yet is retried in the background (`status().retained` stays `pending` meanwhile).
   */
  static async start (options: ClusterEventsOptions): Promise<ClusterEvents> {
    const events = new ClusterEvents(options, eventSubjects(options.prefix))
    const { nc, bus } = options
    events.#online = connectedNow(nc)
    events.#subscription = nc.subscribe(`${events.#subjects.events}.>`, { callback: (err, msg) => events.#onMessage(err, msg) })
    events.#subscription.closed.then(err => {
      if (err instanceof Error && !events.#closed) events.#logger.error({ err, gateway: options.gateway }, 'cluster events: the subscription to the other gateways\' events ended')
    }, () => {})
    events.#watch()
    events.#untap = bus.addPublishTap({
      // never held back: a message is routed here whether or not NATS takes it
      beforeAck: () => undefined,
      routed: (packet: PublishPacket) => {
        events.#export(packet)
        return undefined
      },
    })
    events.#retained.start()
    return events
  }

  status (): ClusterEventsStatus {
    let dropped = 0
    for (const reason of DROP_REASONS) dropped += this.#drops[reason]
    const retained = this.#retained.status()
    return {
      gateway: this.#options.gateway,
      online: this.#online,
      exported: this.#exported,
      imported: this.#importedCount,
      importing: this.#inFlight,
      dropped,
      drops: { ...this.#drops },
      retained: retained.state,
      retainedStored: retained.stored,
      retainedUnsent: retained.unsent,
      retainedApplied: retained.applied,
      retainedSyncedAt: retained.syncedAt,
    }
  }

  /** Stops both ways; the connection stays open (it is the cluster's). */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#untap?.()
    this.#untap = undefined
    this.#retained.close()
    // QueuedIterator's stop ends the status loop; the interface does not show it
    ;(this.#statuses as { stop?: () => void } | undefined)?.stop?.()
    const subscription = this.#subscription
    this.#subscription = undefined
    if (subscription !== undefined && !subscription.isClosed()) subscription.unsubscribe()
  }

  /** A message routed here: to the other gateways, unless it is theirs or in the `$` space. */
  #export (packet: PublishPacket): void {
    const topic = packet.topic
    // `$fn/` (the bus's own traffic) never gets here (hooks.ts swallows it), `$SYS/` does: neither leaves
    if (topic.charCodeAt(0) === 36 || this.#imported.has(packet) || this.#closed) return
    const subject = topicToSubject(this.#subjects.events, topic)
    if (subject === undefined) {
      this.#drop('unmapped', { topic: topic.slice(0, 256), reason: `its subject would exceed ${MAX_SUBJECT_BYTES} bytes, or it is not UTF-8` })
      return
    }
    const data = encodeFrame(packet.payload, packet.qos, packet.retain)
    if (packet.retain) {
      const retainedSubject = this.#subjects.retained + subject.slice(this.#subjects.events.length)
      if (retainedSubject.length <= MAX_SUBJECT_BYTES || Buffer.byteLength(retainedSubject) <= MAX_SUBJECT_BYTES) this.#retained.offer(topic, retainedSubject, data)
      else this.#drop('unmapped', { topic: topic.slice(0, 256), reason: `its retained subject would exceed ${MAX_SUBJECT_BYTES} bytes` })
    }
    if (!this.#online) {
      this.#drop('offline', { topic })
      return
    }
    try {
      this.#options.nc.publish(subject, data)
      this.#exported++
    } catch (err) {
      this.#drop('publishFailed', { topic, reason: err instanceof Error ? err.message : String(err) })
    }
  }

  /** A message from another gateway (or from whoever else can publish on the NATS servers). */
  #onMessage (err: Error | null, msg: Msg): void {
    if (err !== null) {
      if (!this.#closed) this.#logger.error({ err, gateway: this.#options.gateway }, 'cluster events: the subscription failed')
      return
    }
    try {
      this.#import(msg)
    } catch (failed) {
      // nothing here is meant to throw; if it does, the message is lost, not the subscription
      this.#drop('frame', { subject: msg.subject.slice(0, 256), reason: failed instanceof Error ? failed.message : String(failed) })
    }
  }

  #import (msg: Msg): void {
    if (this.#closed) return
    const topic = subjectToTopic(this.#subjects.events, msg.subject, this.#limits.maxTopicLevels)
    if (topic === undefined) {
      this.#drop('subject', { subject: msg.subject.slice(0, 256), reason: 'no topic maps to it' })
      return
    }
    // the bounds before any copy: the frame's payload is one byte shorter than its data
    const problem = importProblem(topic, Math.max(0, msg.data.length - 1), this.#limits)
    if (problem !== undefined) {
      this.#drop(topic.charCodeAt(0) === 36 ? 'subject' : 'limits', { topic: topic.slice(0, 256), reason: problem })
      return
    }
    const size = msg.data.length + topic.length
    if (this.#inFlight >= MAX_IMPORTS_IN_FLIGHT || (this.#inFlight > 0 && this.#inFlightBytes + size > MAX_IMPORT_BYTES_IN_FLIGHT)) {
      this.#drop('overload', { topic: topic.slice(0, 256), inFlight: this.#inFlight, inFlightBytes: this.#inFlightBytes })
      return
    }
    const frame = decodeFrame(msg.data)
    if (typeof frame === 'string') {
      this.#drop('frame', { topic: topic.slice(0, 256), reason: frame })
      return
    }
    if (frame.retain) this.#retained.touched(topic)
    this.#inFlight++
    this.#inFlightBytes += size
    this.#route(topic, frame, (failed) => {
      this.#inFlight--
      this.#inFlightBytes -= size
      if (failed === undefined) this.#importedCount++
      else this.#logger.warn({ err: failed, topic }, 'cluster events: a message from the cluster could not be routed')
    })
  }

  /** Publishes a message of the retained stream here, as retained; resolves once aedes has routed it. */
  #publishLocal (topic: string, frame: EventFrame): Promise<void> {
    return new Promise(resolve => {
      this.#route(topic, frame, failed => {
        if (failed !== undefined) this.#logger.warn({ err: failed, topic }, 'cluster events: a retained message of the stream could not be published')
        resolve()
      })
    })
  }

  /** Routes a message of the cluster here, in its lane (see Lane). */
  #route (topic: string, frame: EventFrame, done: (err: Error | undefined) => void): void {
    if (frame.qos === 0 && !frame.retain) {
      this.#publish(topic, frame, this.#direct, done)
      return
    }
    this.#queue.push({ topic, frame, done })
    if (!this.#routing) this.#next()
  }

  #next (): void {
    const queued = this.#queue.shift()
    this.#routing = queued !== undefined
    if (queued === undefined) return
    this.#publish(queued.topic, queued.frame, this.#ordered, err => {
      queued.done(err)
      this.#next()
    })
  }

  #publish (topic: string, frame: EventFrame, lane: Lane, done: (err: Error | undefined) => void): void {
    const packet = {
      cmd: 'publish', topic, payload: frame.payload, qos: frame.qos, retain: frame.retain, dup: false,
      // aedes-packet keeps these when it copies the packet (see Lane)
      brokerId: lane.brokerId, brokerCounter: ++lane.counter,
    } as PublishPacket
    this.#imported.add(packet)
    const { aedes } = this.#options
    // through aedes.publish as the bus wrapped it (hooks.ts): the tap sees the packet, marked, and lets it be
    ;(aedes.publish as unknown as RoutePublish).call(aedes, packet, null, (err?: Error) => done(err ?? undefined))
  }

  /** Follows the connection: exports stop while it is down, and the retained messages catch up when it is back. */
  #watch (): void {
    const statuses = this.#options.nc.status()
    this.#statuses = statuses
    const follow = async (): Promise<void> => {
      for await (const status of statuses) {
        if (this.#closed) return
        if (status.type === 'disconnect' || status.type === 'close') {
          if (this.#online) this.#logger.warn({ gateway: this.#options.gateway }, 'cluster events: NATS connection lost; events stay on this gateway until it is back')
          this.#online = false
        } else if (status.type === 'reconnect') {
          if (!this.#online) this.#logger.info({ gateway: this.#options.gateway, server: status.server }, 'cluster events: NATS connection back')
          this.#online = true
          this.#retained.resync()
        }
      }
    }
    follow().catch((err: unknown) => this.#logger.error({ err }, 'cluster events: following the NATS connection failed'))
  }

  /** Counts a drop; logs the first of each reason, then at most once per DROP_LOG_INTERVAL_MS with the count. */
  #drop (reason: ClusterEventDropReason, details: object): void {
    this.#drops[reason]++
    const now = performance.now()
    const logged = this.#dropLog.get(reason)
    if (logged !== undefined && now - logged.at < DROP_LOG_INTERVAL_MS) {
      logged.since++
      return
    }
    const since = logged?.since ?? 0
    this.#dropLog.set(reason, { at: now, since: 0 })
    this.#logger.warn({ gateway: this.#options.gateway, reason, ...details, droppedSinceLastLog: since }, 'cluster events: a message was dropped')
  }
}

/**
 * Whether `nc` is connected now. The status events tell the changes, not the state they start from: nats.js keeps it
 * in its protocol handler (NatsConnectionImpl.protocol.connected), which its interface leaves out. Without it, up
 * unless closed; the next status event corrects that.
 */
function connectedNow (nc: NatsConnection): boolean {
  if (nc.isClosed()) return false
  const connected = (nc as { protocol?: { connected?: unknown } }).protocol?.connected
  return typeof connected === 'boolean' ? connected : true
}
