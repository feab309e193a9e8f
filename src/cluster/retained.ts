// The cluster's retained messages (docs/cluster.md, "Events"): a JetStream stream holds the last retained message
// of each topic, so that a gateway that joins or restarts later finds what was retained before it came. Each retained
// message routed here is written to it (the newest per topic waiting while JetStream is away); when the stream is
// reachable (at start, and again after the connection or JetStream comes back) its last message per subject is
// read and published here as retained where it differs from what this broker holds. Live retained messages travel
// with the other events, on core NATS (events.ts): the stream is read only to catch up.
import type { Aedes } from 'aedes'
import {
  DeliverPolicy, DiscardPolicy, jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, StorageType,
  type JetStreamClient, type JetStreamManager, type JsMsg, type StreamConfig,
} from '@nats-io/jetstream'
import { InvalidArgumentError, type NatsConnection } from '@nats-io/transport-node'
import type { Limits } from '../limits.js'
import type { Logger } from '../logger.js'
import { decodeFrame, importProblem, type EventFrame } from './event-frame.js'
import { subjectToTopic, type EventSubjects } from './subjects.js'

/** Pauses between attempts to reach the stream: doubled from the first to the last. */
const RETRY_MIN_MS = 250
const RETRY_MAX_MS = 10_000
/** JetStream API requests and acknowledged publishes fail after this long (a 3-node cluster elects in ~5 s). */
const API_TIMEOUT_MS = 5_000
/** Writes to the stream awaiting JetStream's acknowledgement, at most. */
const MAX_WRITES_IN_FLIGHT = 64
/**
 * Retained messages waiting to be written (JetStream away, or the writes in flight full): the newest per topic only,
 * at most this many topics and bytes. Past them a new topic's message is dropped and counted; one on a topic already
 * waiting replaces it.
 */
const MAX_UNSENT_TOPICS = 10_000
const MAX_UNSENT_BYTES = 64 * 1024 * 1024
/**
 * The stream's own bounds, so that a flood of retained topics cannot fill the NATS servers' disks: past them the
 * oldest topics' messages go (discard old), as a gateway's own retained store drops past limits.maxRetained*.
 */
const STREAM_MAX_MESSAGES = 1_000_000
const STREAM_MAX_BYTES = 256 * 1024 * 1024
/** Messages asked of the stream at a time while catching up. */
const SYNC_BATCH = 256
/** Topics written or received while a catch-up runs, remembered so that it does not overwrite them with older values. */
const MAX_TOUCHED = 100_000

export type RetainedState = 'pending' | 'synced'
export type RetainedDropReason = 'subject' | 'frame' | 'limits' | 'retainedOverflow' | 'retainedRefused'

export interface RetainedSyncOptions {
  readonly nc: NatsConnection
  readonly subjects: EventSubjects
  readonly aedes: Aedes
  readonly limits: Limits
  readonly logger: Logger
  readonly replicas: number
  /** Publishes a message of the stream here, marked as the cluster's (never exported again). */
  readonly publishLocal: (topic: string, frame: EventFrame) => Promise<void>
  readonly onDrop: (reason: RetainedDropReason, details: object) => void
}

export interface RetainedStatus {
  readonly state: RetainedState
  /** Retained messages written to the stream. */
  readonly stored: number
  /** Waiting to be written. */
  readonly unsent: number
  /** Messages of the stream published here by the last catch-up (those that differed from this broker's). */
  readonly applied: number
  /** When the last catch-up ended (ms since the epoch); undefined before the first. */
  readonly syncedAt: number | undefined
}

interface Unsent {
  readonly data: Uint8Array
}

export class RetainedSync {
  readonly #options: RetainedSyncOptions
  readonly #stream: string
  #jsm: JetStreamManager | undefined
  #js: JetStreamClient | undefined
  #state: RetainedState = 'pending'
  /** The stream answered last time it was asked: writes go out. */
  #up = false
  #closed = false
  #stored = 0
  #applied = 0
  #syncedAt: number | undefined
  readonly #unsent = new Map<string, Unsent>()
  #unsentBytes = 0
  /** Subjects with a write in flight: one at a time each, so that the newest is written last. */
  readonly #writing = new Set<string>()
  /** Set while a catch-up runs. */
  #touched: Set<string> | undefined
  #touchedOverflow = false
  /** Wakes the loop: another catch-up is wanted, or the gateway closes. */
  #wake: (() => void) | undefined
  #again = false
  #timer: NodeJS.Timeout | undefined

  constructor (options: RetainedSyncOptions) {
    this.#options = options
    this.#stream = options.subjects.retainedStream
  }

  /** Starts reaching for the stream, in the background; never throws, retries until closed. */
  start (): void {
    this.#run().catch((err: unknown) => this.#options.logger.error({ err }, 'cluster events: the retained messages\' loop ended unexpectedly'))
  }

  /** Catch up again: the connection, or JetStream, may have come back. */
  resync (): void {
    this.#again = true
    this.#wake?.()
  }

  /** A retained message on `topic` was published here or arrived from another gateway: newer than the stream's. */
  touched (topic: string): void {
    const touched = this.#touched
    if (touched === undefined) return
    if (touched.size < MAX_TOUCHED) touched.add(topic)
    else this.#touchedOverflow = true
  }

  /** Writes a retained message routed here to the stream (`data`: its frame), now or once JetStream answers. */
  offer (topic: string, subject: string, data: Uint8Array): void {
    this.touched(topic)
    const before = this.#unsent.get(subject)
    if (before === undefined && (this.#unsent.size >= MAX_UNSENT_TOPICS || this.#unsentBytes + data.length > MAX_UNSENT_BYTES)) {
      this.#options.onDrop('retainedOverflow', { topic })
      return
    }
    this.#unsentBytes += data.length - (before?.data.length ?? 0)
    // re-inserted: a topic's newest message takes its turn behind the others
    this.#unsent.delete(subject)
    this.#unsent.set(subject, { data })
    this.#pump()
  }

  status (): RetainedStatus {
    return { state: this.#state, stored: this.#stored, unsent: this.#unsent.size + this.#writing.size, applied: this.#applied, syncedAt: this.#syncedAt }
  }

  close (): void {
    this.#closed = true
    clearTimeout(this.#timer)
    this.#wake?.()
  }

  async #run (): Promise<void> {
    let delay = RETRY_MIN_MS
    while (!this.#closed) {
      try {
        this.#again = false
        const empty = await this.#ensureStream()
        this.#up = true
        this.#pump()
        await this.#catchUp(empty)
        if (this.#closed) return
        delay = RETRY_MIN_MS
        this.#setState('synced')
        if (!this.#again) await new Promise<void>(resolve => { this.#wake = resolve })
        this.#wake = undefined
      } catch (err) {
        if (this.#closed) return
        this.#up = false
        this.#setState('pending', err, delay)
        await new Promise<void>(resolve => {
          this.#wake = resolve
          this.#timer = setTimeout(resolve, delay)
        })
        this.#wake = undefined
        delay = Math.min(delay * 2, RETRY_MAX_MS)
      }
    }
  }

  /** Logs each change of state once: a gateway waiting minutes for JetStream does not log each retry. */
  #setState (state: RetainedState, err?: unknown, retryMs?: number): void {
    if (state === this.#state && (state === 'synced' || this.#loggedPending)) return
    this.#state = state
    const { logger } = this.#options
    if (state === 'synced') {
      this.#loggedPending = false
      logger.info({ stream: this.#stream, applied: this.#applied }, 'cluster events: retained messages in sync with JetStream')
    } else {
      this.#loggedPending = true
      logger.warn({ stream: this.#stream, reason: err instanceof Error ? err.message : String(err), retryMs }, 'cluster events: JetStream not reachable for the retained messages; retrying')
    }
  }

  #loggedPending = false

  /** Creates the stream when it does not exist; true when it holds no message. */
  async #ensureStream (): Promise<boolean> {
    // checkAPI off: the account check is one more request that fails the same way the next one would
    const jsm = this.#jsm ??= await jetstreamManager(this.#options.nc, { timeout: API_TIMEOUT_MS, checkAPI: false })
    try {
      const info = await jsm.streams.info(this.#stream)
      return info.state.messages === 0
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err
    }
    const { limits, replicas, subjects } = this.#options
    const config: Partial<StreamConfig> & { name: string } = {
      name: this.#stream,
      subjects: [`${subjects.retained}.>`],
      max_msgs_per_subject: 1,
      storage: StorageType.File,
      num_replicas: replicas,
      discard: DiscardPolicy.Old,
      max_msgs: STREAM_MAX_MESSAGES,
      max_bytes: STREAM_MAX_BYTES,
      // the frame's flags byte and the largest payload a gateway takes
      max_msg_size: limits.maxPayloadBytes + 1,
    }
    await jsm.streams.add(config)
    this.#options.logger.info({ stream: this.#stream, replicas }, 'cluster events: created the retained messages\' stream')
    return true
  }

  /** Publishes here the stream's last message of each subject that differs from what this broker holds. */
  async #catchUp (empty: boolean): Promise<void> {
    if (empty) {
      this.#syncedAt = Date.now()
      return
    }
    this.#touched = new Set()
    this.#touchedOverflow = false
    try {
      const held = await this.#heldHere()
      const js = this.#js ??= jetstream(this.#options.nc, { timeout: API_TIMEOUT_MS })
      // an ordered consumer without filter_subjects: the stream holds only PREFIX.ret.>, and nats-server 2.9 has no
      // multi-filter consumers
      const consumer = await js.consumers.get(this.#stream, { deliver_policy: DeliverPolicy.LastPerSubject })
      let applied = 0
      try {
        for (let done = false; !done && !this.#closed;) {
          const batch = await consumer.fetch({ max_messages: SYNC_BATCH, expires: API_TIMEOUT_MS })
          let got = 0
          for await (const msg of batch) {
            got++
            if (await this.#apply(msg, held)) applied++
            // the last one: leaving the loop ends the fetch rather than waiting for its expiry
            if (msg.info.pending === 0 || this.#closed) {
              done = true
              break
            }
          }
          if (got === 0) done = true
        }
      } finally {
        await consumer.delete().catch(() => {})
      }
      this.#applied = applied
      this.#syncedAt = Date.now()
      // topics written meanwhile went unremembered: catch up once more, from fresher values
      if (this.#touchedOverflow) this.#again = true
    } finally {
      this.#touched = undefined
    }
  }

  /** One message of the stream; true when it was published here. */
  async #apply (msg: JsMsg, held: ReadonlyMap<string, Buffer>): Promise<boolean> {
    const { limits, subjects, onDrop } = this.#options
    const topic = subjectToTopic(subjects.retained, msg.subject, limits.maxTopicLevels)
    if (topic === undefined) {
      onDrop('subject', { subject: msg.subject.slice(0, 256), stream: this.#stream })
      return false
    }
    const frame = decodeFrame(msg.data)
    if (typeof frame === 'string') {
      onDrop('frame', { topic, reason: frame, stream: this.#stream })
      return false
    }
    const problem = importProblem(topic, frame.payload.length, limits)
    if (problem !== undefined) {
      onDrop(topic.charCodeAt(0) === 36 ? 'subject' : 'limits', { topic: topic.slice(0, 256), reason: problem, stream: this.#stream })
      return false
    }
    if (this.#closed || this.#touched?.has(topic) === true || this.#unsent.has(msg.subject) || this.#writing.has(msg.subject)) return false
    const here = held.get(topic)
    // an empty payload clears the topic: nothing to do where nothing is held
    if (frame.payload.length === 0 ? here === undefined : here?.equals(frame.payload) === true) return false
    await this.#options.publishLocal(topic, { ...frame, retain: true })
    return true
  }

  /** The retained messages this broker holds now, by topic (bounded by limits.maxRetained*). */
  async #heldHere (): Promise<Map<string, Buffer>> {
    const held = new Map<string, Buffer>()
    // aedes' persistence is not in its typings; createRetainedStream is aedes-persistence's documented interface
    const persistence = (this.#options.aedes as unknown as { persistence?: { createRetainedStream?: (pattern: string) => AsyncIterable<{ topic: string, payload: Buffer | string }> } }).persistence
    if (typeof persistence?.createRetainedStream !== 'function') {
      this.#options.logger.warn({}, 'cluster events: this aedes has no persistence.createRetainedStream; every retained message of the stream is published again at each catch-up')
      return held
    }
    for await (const packet of persistence.createRetainedStream('#')) {
      held.set(packet.topic, typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload)
    }
    return held
  }

  /** Writes waiting messages while JetStream answers and the window has room. */
  #pump (): void {
    if (!this.#up || this.#closed) return
    for (const [subject, unsent] of this.#unsent) {
      if (this.#writing.size >= MAX_WRITES_IN_FLIGHT) return
      if (this.#writing.has(subject)) continue
      this.#unsent.delete(subject)
      this.#unsentBytes -= unsent.data.length
      this.#write(subject, unsent)
    }
  }

  #write (subject: string, unsent: Unsent): void {
    const js = this.#js ??= jetstream(this.#options.nc, { timeout: API_TIMEOUT_MS })
    this.#writing.add(subject)
    js.publish(subject, unsent.data).then(() => {
      this.#stored++
    }, (err: unknown) => {
      if (this.#closed) return
      if (permanent(err)) {
        this.#options.onDrop('retainedRefused', { subject: subject.slice(0, 256), reason: err instanceof Error ? err.message : String(err) })
        return
      }
      // JetStream away (a timeout, no responders, no leader): wait again, unless a newer message took its place
      if (!this.#unsent.has(subject)) {
        this.#unsent.set(subject, unsent)
        this.#unsentBytes += unsent.data.length
      }
      if (this.#up) {
        this.#up = false
        this.#setState('pending', err, RETRY_MIN_MS)
        this.resync()
      }
    }).finally(() => {
      this.#writing.delete(subject)
      this.#pump()
    }).catch((err: unknown) => this.#options.logger.error({ err }, 'cluster events: a retained write\'s bookkeeping failed'))
  }
}

/** An answer of JetStream that another try would get again: the message is refused, not delayed. */
function permanent (err: unknown): boolean {
  if (err instanceof JetStreamApiError) return err.status !== 503
  // nats.js' own refusal before sending (a payload over the server's max_payload)
  return err instanceof InvalidArgumentError
}
