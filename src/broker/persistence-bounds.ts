import type { Aedes, Client as AedesClient } from 'aedes'
import { unpack } from 'msgpackr'
import type { Limits } from '../limits.js'
import type { Logger } from '../logger.js'
import { patchPointMissing } from './patch-points.js'

/** Why a message was not kept: one session's queue, all sessions' queues together, the retained messages. */
export type StorageDropReason = 'session_queue_full' | 'session_queues_full' | 'retained_full'

export interface PersistenceBoundsOptions {
  readonly limits: Pick<Limits, 'maxSessionQueueMessages' | 'maxSessionQueueBytes' | 'maxSessionQueueBytesTotal' | 'maxRetainedMessages' | 'maxRetainedBytes'>
  readonly logger: Logger
  /** A message was not kept: for `clientId`'s session, or as a retained message (no client). */
  readonly onDrop: (reason: StorageDropReason, topic: string, clientId?: string) => void
  /** The queue of a connected session refused a message aedes will still route to it. */
  readonly onRefusedConnected: (client: AedesClient, brokerCounter: number) => void
}

/** What aedes stores: a PUBLISH, or in place of one a PUBREL (no topic, no payload) once a QoS 2 PUBREC came. */
interface StoredPacket {
  readonly cmd?: string
  readonly topic?: string
  readonly payload?: Buffer | string
  readonly brokerCounter?: number
}

interface Subscriber { readonly clientId: string }

/**
 * The part of aedes' persistence whose growth is bounded here. aedes 1.x calls it without a callback and uses the
 * promise; a callback, if a release passed one again, is answered too (see patch-points.ts, `aedes.persistence`).
 */
interface Persistence {
  outgoingEnqueue (sub: Subscriber, packet: StoredPacket, callback?: unknown): Promise<unknown>
  outgoingEnqueueCombi (subs: Subscriber[], packet: StoredPacket, callback?: unknown): Promise<unknown>
  outgoingClearMessageId (client: { readonly id: string }, packet: StoredPacket, callback?: unknown): Promise<StoredPacket | undefined>
  storeRetained (packet: StoredPacket, callback?: unknown): Promise<unknown>
}

const QUEUE_METHODS = ['outgoingEnqueue', 'outgoingEnqueueCombi', 'outgoingClearMessageId'] as const

/** A range of the LevelDB sublevel aedes-persistence-level writes, read once at start. */
export interface StoredRecords {
  iterator (options: { readonly gte: string, readonly lt: string }): AsyncIterable<[string, Buffer]>
}

/**
 * What a stored message costs beyond its payload and topic: its record (msgpack of aedes' packet fields, about 90
 * bytes) and key (about 50), so that a flood of tiny messages is bounded as surely as one of large ones.
 */
const RECORD_BYTES = 128

/** A bound being hit is logged at most this often per reason, with the number of messages dropped meanwhile. */
const LOG_INTERVAL_MS = 10_000

interface Queue { count: number, bytes: number }

/** What aedes has beyond its typings: its persistence, and its connected clients by id (see patch-points.ts). */
interface AedesInternals {
  readonly persistence: Persistence | undefined
  readonly clients: Readonly<Record<string, AedesClient | undefined>> | undefined
}

/**
 * Bounds what aedes keeps on disk for clients: the queues of persistent sessions (clean = 0: QoS 1/2 messages
 * waiting while the client is away, or for its acknowledgement) and the retained messages. aedes keeps both
 * without limit: 100 offline sessions subscribed to `#` store every QoS 1 message a hundred times, and a client
 * may retain a message on every topic it can invent.
 *
 * A queue at its bound (`maxSessionQueueMessages`, `maxSessionQueueBytes`, or all queues at
 * `maxSessionQueueBytesTotal`) takes no newer message: the newest is dropped, not the oldest. A message once queued
 * is then always delivered; dropping costs no read or delete on disk, at the very moment a flood is on; and it never
 * races with aedes streaming the queue to a client that comes back. Mosquitto's `max_queued_messages` does the
 * same. A retained message past `maxRetainedMessages` or `maxRetainedBytes` is routed to subscribers but not
 * retained; if it replaced an older retained message on its topic, that one is removed too: an outdated value is
 * worse than none.
 *
 * Sizes are counted in memory as aedes enqueues and clears (and retains), counted afresh from the store at start.
 * Sizes are payload, topic and RECORD_BYTES per message. A QoS 2 message whose PUBREC came is stored as a PUBREL
 * by aedes-persistence-level, without its payload: clearing it releases the queue's average message size.
 */
export class PersistenceBounds {
  readonly #options: PersistenceBoundsOptions
  readonly #aedes: AedesInternals
  readonly #queues = new Map<string, Queue>()
  #queuedBytes = 0
  readonly #retained = new Map<string, number>()
  #retainedBytes = 0
  readonly #drops = new Map<StorageDropReason, { logged: number, since: number }>()

  private constructor (aedes: Aedes, options: PersistenceBoundsOptions) {
    this.#aedes = aedes as unknown as AedesInternals
    this.#options = options
  }

  /**
   * Wraps `aedes.persistence` in place; with `records` (aedes-persistence-level's sublevel) counts what is stored
   * already first. Call before the listeners take connections.
   */
  static async install (aedes: Aedes, records: StoredRecords | undefined, options: PersistenceBoundsOptions): Promise<PersistenceBounds> {
    const bounds = new PersistenceBounds(aedes, options)
    if (records !== undefined) await bounds.#count(records)
    const { persistence, clients } = bounds.#aedes
    if (clients === null || typeof clients !== 'object') patchPointMissing(options.logger, 'aedes.clients')
    const has = (name: keyof Persistence): boolean => typeof persistence?.[name] === 'function'
    const missing = [...QUEUE_METHODS, 'storeRetained' as const].filter(name => !has(name))
    if (missing.length > 0) patchPointMissing(options.logger, 'aedes.persistence', { missing })
    // each bound needs all of its methods: a queue counted in and never out would be worse than none
    if (persistence !== undefined && QUEUE_METHODS.every(has)) bounds.#wrapQueues(persistence)
    if (persistence !== undefined && has('storeRetained')) bounds.#wrapRetained(persistence)
    return bounds
  }

  /** What is kept now: for status and tests. */
  get usage (): { readonly sessions: number, readonly queuedMessages: number, readonly queuedBytes: number, readonly retainedMessages: number, readonly retainedBytes: number } {
    let queuedMessages = 0
    for (const queue of this.#queues.values()) queuedMessages += queue.count
    return { sessions: this.#queues.size, queuedMessages, queuedBytes: this.#queuedBytes, retainedMessages: this.#retained.size, retainedBytes: this.#retainedBytes }
  }

  async #count (records: StoredRecords): Promise<void> {
    for await (const [key, value] of records.iterator({ gte: 'outgoing:', lt: 'outgoing;' })) {
      // outgoing:{encodeURIComponent(clientId)}:{brokerId}:{counter} (see patch-points.ts, `persistence-level.records`)
      const end = key.indexOf(':', 'outgoing:'.length)
      if (end === -1) this.#unexpectedRecord(key)
      const clientId = decodeURIComponent(key.slice('outgoing:'.length, end))
      const queue = this.#queueOf(clientId)
      const bytes = storedBytes(this.#decoded(key, value))
      queue.count++
      queue.bytes += bytes
      this.#queuedBytes += bytes
    }
    for await (const [key, value] of records.iterator({ gte: 'retained:', lt: 'retained;' })) {
      const bytes = storedBytes(this.#decoded(key, value))
      this.#retained.set(key.slice('retained:'.length), bytes)
      this.#retainedBytes += bytes
    }
  }

  /** A stored value, decoded: aedes-persistence-level writes msgpack (msgpack-lite), which msgpackr reads. */
  #decoded (key: string, value: Buffer): StoredPacket {
    try {
      const packet: unknown = unpack(value)
      if (packet !== null && typeof packet === 'object') return packet as StoredPacket
    } catch {}
    this.#unexpectedRecord(key)
    return {}
  }

  #unexpectedRecord (key: string): void {
    patchPointMissing(this.#options.logger, 'persistence-level.records', { key })
  }

  #wrapQueues (persistence: Persistence): void {
    const enqueue = persistence.outgoingEnqueue.bind(persistence)
    const enqueueCombi = persistence.outgoingEnqueueCombi.bind(persistence)
    const clear = persistence.outgoingClearMessageId.bind(persistence)
    const logger = this.#options.logger

    persistence.outgoingEnqueueCombi = (subs, packet, callback) => subs.length === 0 && callback === undefined
      // aedes asks for every QoS 1 message, most often with no persistent session to queue it for: nothing to count
      ? enqueueCombi(subs, packet)
      : answered(this.#enqueueCombi(enqueueCombi, subs, packet), callback, logger)
    persistence.outgoingEnqueue = (sub, packet, callback) => answered(this.#enqueue(enqueue, sub, packet), callback, logger)
    persistence.outgoingClearMessageId = (client, packet, callback) => answered(this.#clear(clear, client, packet), callback, logger)
  }

  #wrapRetained (persistence: Persistence): void {
    const storeRetained = persistence.storeRetained.bind(persistence)
    const logger = this.#options.logger
    persistence.storeRetained = (packet, callback) => answered(this.#storeRetained(storeRetained, packet), callback, logger)
  }

  async #storeRetained (storeRetained: Persistence['storeRetained'], packet: StoredPacket): Promise<unknown> {
    return await storeRetained(this.#retain(packet))
  }

  async #enqueueCombi (enqueueCombi: Persistence['outgoingEnqueueCombi'], subs: Subscriber[], packet: StoredPacket): Promise<unknown> {
    const admitted: Subscriber[] = []
    // a session with overlapping subscriptions may be listed twice (aedes' memory persistence queues both): it
    // lost the message only if no copy was queued for it
    const refused = new Map<string, StorageDropReason>()
    for (const sub of subs) {
      const reason = this.#admit(sub.clientId, packet)
      if (reason === undefined) admitted.push(sub)
      else refused.set(sub.clientId, reason)
    }
    for (const sub of admitted) refused.delete(sub.clientId)
    for (const [clientId, reason] of refused) this.#refuse(clientId, reason, packet)
    try {
      return await enqueueCombi(admitted, packet)
    } catch (err) {
      for (const sub of admitted) this.#release(sub.clientId, packet)
      throw err
    }
  }

  async #enqueue (enqueue: Persistence['outgoingEnqueue'], sub: Subscriber, packet: StoredPacket): Promise<unknown> {
    const reason = this.#admit(sub.clientId, packet)
    if (reason !== undefined) {
      this.#refuse(sub.clientId, reason, packet)
      return
    }
    try {
      return await enqueue(sub, packet)
    } catch (err) {
      this.#release(sub.clientId, packet)
      throw err
    }
  }

  async #clear (clear: Persistence['outgoingClearMessageId'], client: { readonly id: string }, packet: StoredPacket): Promise<StoredPacket | undefined> {
    // aedes asks on every PUBACK and PUBCOMP, a clean session's too; a session with nothing queued (counted here as it
    // was queued, and read from disk at start) has nothing to clear: no LevelDB read per QoS 1 delivery (it was a third
    // of the gateway's main thread relaying QoS 1 to a clean subscriber, benchmarks/NOTES.md)
    if (!this.#queues.has(client.id)) return undefined
    const cleared = await clear(client, packet)
    if (cleared !== undefined && cleared !== null) this.#release(client.id, cleared)
    return cleared
  }

  #queueOf (clientId: string): Queue {
    let queue = this.#queues.get(clientId)
    if (queue === undefined) {
      queue = { count: 0, bytes: 0 }
      this.#queues.set(clientId, queue)
    }
    return queue
  }

  /** Counts `packet` into `clientId`'s queue, or says which bound it would pass. */
  #admit (clientId: string, packet: StoredPacket): StorageDropReason | undefined {
    const { limits } = this.#options
    const bytes = storedBytes(packet)
    const queue = this.#queues.get(clientId)
    let reason: StorageDropReason | undefined
    if (queue !== undefined && (queue.count >= limits.maxSessionQueueMessages || queue.bytes + bytes > limits.maxSessionQueueBytes)) {
      reason = 'session_queue_full'
    } else if (queue === undefined && bytes > limits.maxSessionQueueBytes) {
      reason = 'session_queue_full'
    } else if (this.#queuedBytes + bytes > limits.maxSessionQueueBytesTotal) {
      reason = 'session_queues_full'
    }
    if (reason === undefined) {
      const into = queue ?? this.#queueOf(clientId)
      into.count++
      into.bytes += bytes
      this.#queuedBytes += bytes
    }
    return reason
  }

  /** `clientId`'s session will not get `packet`. */
  #refuse (clientId: string, reason: StorageDropReason, packet: StoredPacket): void {
    const topic = packet.topic ?? ''
    this.#options.onDrop(reason, topic, clientId)
    this.#logDrop(reason, { client: clientId, topic })
    const connected = this.#aedes.clients?.[clientId]
    if (connected !== undefined && packet.brokerCounter !== undefined) this.#options.onRefusedConnected(connected, packet.brokerCounter)
  }

  /** `stored` left `clientId`'s queue (acknowledged, or cleared by a clean session). */
  #release (clientId: string, stored: StoredPacket): void {
    const queue = this.#queues.get(clientId)
    if (queue === undefined) return
    const hasPayload = stored.payload !== undefined && stored.cmd !== 'pubrel'
    const bytes = Math.min(queue.bytes, hasPayload ? storedBytes(stored) : Math.round(queue.bytes / Math.max(queue.count, 1)))
    queue.count--
    queue.bytes -= bytes
    this.#queuedBytes -= bytes
    if (queue.count <= 0) {
      this.#queuedBytes -= queue.bytes
      this.#queues.delete(clientId)
    }
  }

  /** The packet to store as `packet`'s topic's retained message: itself, or an empty one (removing it) past a bound. */
  #retain (packet: StoredPacket): StoredPacket {
    const topic = packet.topic ?? ''
    const before = this.#retained.get(topic)
    const empty = packet.payload === undefined || packet.payload.length === 0
    if (empty) {
      if (before !== undefined) this.#forget(topic, before)
      return packet
    }
    const { limits } = this.#options
    const bytes = storedBytes(packet)
    const count = this.#retained.size + (before === undefined ? 1 : 0)
    if (count <= limits.maxRetainedMessages && this.#retainedBytes - (before ?? 0) + bytes <= limits.maxRetainedBytes) {
      this.#retained.set(topic, bytes)
      this.#retainedBytes += bytes - (before ?? 0)
      return packet
    }
    this.#options.onDrop('retained_full', topic)
    this.#logDrop('retained_full', { topic, replaced: before !== undefined })
    if (before !== undefined) this.#forget(topic, before)
    return { ...packet, payload: Buffer.alloc(0) }
  }

  #forget (topic: string, bytes: number): void {
    this.#retained.delete(topic)
    this.#retainedBytes -= bytes
  }

  #logDrop (reason: StorageDropReason, details: object): void {
    const now = performance.now()
    let entry = this.#drops.get(reason)
    if (entry === undefined) {
      entry = { logged: -Infinity, since: 0 }
      this.#drops.set(reason, entry)
    }
    entry.since++
    if (now - entry.logged < LOG_INTERVAL_MS) return
    const { limits } = this.#options
    const message = reason === 'retained_full'
      ? `retained message not stored: limits.maxRetainedMessages (${limits.maxRetainedMessages}) or limits.maxRetainedBytes (${limits.maxRetainedBytes}) reached`
      : reason === 'session_queue_full'
        ? `message not queued for a persistent session: limits.maxSessionQueueMessages (${limits.maxSessionQueueMessages}) or limits.maxSessionQueueBytes (${limits.maxSessionQueueBytes}) reached`
        : `message not queued for a persistent session: limits.maxSessionQueueBytesTotal (${limits.maxSessionQueueBytesTotal}) reached`
    this.#options.logger.warn({ ...details, reason, dropped: entry.since }, message)
    entry.logged = now
    entry.since = 0
  }
}

/**
 * `promise`, and `callback` answered from it when aedes passed one: a release calling its persistence with callbacks
 * again would otherwise wait for ever on the bounded methods.
 */
function answered<T> (promise: Promise<T>, callback: unknown, logger: Logger): Promise<T> {
  if (typeof callback === 'function') {
    patchPointMissing(logger, 'aedes.persistence', { callback: true })
    promise.then(value => callback(null, value), (err: unknown) => callback(err))
  }
  return promise
}

function storedBytes (packet: StoredPacket): number {
  const payload = packet.payload === undefined ? 0 : typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length
  return payload + (packet.topic === undefined ? 0 : Buffer.byteLength(packet.topic)) + RECORD_BYTES
}
