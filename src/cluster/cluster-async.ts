// Async invocations of a gateway in a cluster (docs/cluster.md#async): stored in JetStream (async-streams.ts) by the
// gateway that takes them, `accepted` once JetStream acknowledged the write; delivered by whichever gateway has a
// worker with room (async-lane.ts); and the operator's requests (cancel, queue counts, dead letters, retry, purge)
// answered from JetStream, so every gateway answers them alike. The function options (retries, maxEventAge,
// destinations) are the gateway's own engine's, as the configuration set them.
import { jetstream, jetstreamManager, type Consumer, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import type { AsyncEngine } from '../dispatcher/async-engine.js'
import type { AsyncFunctionOptions } from '../dispatcher/async-options.js'
import type { AsyncService, QueueStats } from '../dispatcher/async-service.js'
import { Destinations } from '../dispatcher/destinations.js'
import type { Dispatcher } from '../dispatcher/index.js'
import { FnbusError, invalidArgument } from '../errors.js'
import type { Logger } from '../logger.js'
import type { GatewayEvents } from '../observations.js'
import type { FunctionAddress, Payload } from '../protocol/index.js'
import { decodeRecord, encodeRecord, newRecord, revivedRecord, toDeadInvocation, type InvocationRecord } from '../store/records.js'
import type { DeadInvocation } from '../store/types.js'
import { systemClock, type Clock } from '../util/clock.js'
import { AckedPublisher } from './acked-publisher.js'
import { ClusterLane, type ClusterLaneHost } from './async-lane.js'
import { AsyncNames, deadStream, functionConsumer, functionToken, pendingStream, storeError, type AsyncBounds } from './async-streams.js'

/** Invocation ids in a cluster: the message's sequence in the waiting stream. */
const ID_PREFIX = 'js-'
/** How often the queue counts are read from JetStream, ms (what `fnbus queue ls` and the status show). */
const COUNTS_EVERY_MS = 1000
/** Time a delivery may take beyond its function's timeout before another gateway gets it (ack_wait). */
const ACK_MARGIN_MS = 5000
/** How long an accept waits for JetStream's acknowledgement, ms (js.publish's default). */
const PUBLISH_TIMEOUT_MS = 5000

export interface ClusterAsyncOptions {
  readonly prefix: string
  readonly bounds: AsyncBounds
  readonly engine: AsyncEngine
  readonly dispatcher: Dispatcher
  readonly logger: Logger
  readonly events: GatewayEvents | undefined
  /** Connected to NATS now: otherwise Async calls are refused at once rather than after a publish timeout. */
  readonly connected: () => boolean
  readonly clock?: Clock
}

export interface ClusterStoreStatus {
  /** `ready`: the streams exist and answer; `pending`: not yet (JetStream electing a leader, NATS away). */
  readonly state: 'ready' | 'pending'
  readonly lastError: string | undefined
  /** Waiting and dead invocations, all functions, as last read (every second). */
  readonly pending: number
  readonly dead: number
  readonly replicas: number
}

export class ClusterAsync implements AsyncService, ClusterLaneHost {
  readonly names: AsyncNames
  readonly dispatcher: Dispatcher
  readonly destinations: Destinations
  readonly logger: Logger
  readonly events: GatewayEvents | undefined
  readonly clock: Clock
  readonly #options: ClusterAsyncOptions
  readonly #engine: AsyncEngine
  readonly #lanes = new Map<string, ClusterLane>()
  readonly #consumers = new Map<string, Promise<Consumer>>()
  #js: JetStreamClient | undefined
  #jsm: JetStreamManager | undefined
  /** Accepts' publishes: leaner than js.publish (acked-publisher.ts). */
  #publisher: AckedPublisher | undefined
  #ready = false
  #lastError: string | undefined
  #closed = false
  #countsTimer: NodeJS.Timeout | undefined
  #pending = new Map<string, number>()
  #dead = new Map<string, number>()

  constructor (options: ClusterAsyncOptions) {
    this.#options = options
    this.#engine = options.engine
    this.names = new AsyncNames(options.prefix)
    this.dispatcher = options.dispatcher
    this.logger = options.logger
    this.events = options.events
    this.clock = options.clock ?? systemClock
    this.destinations = new Destinations(options.engine.hooks, fn => this.options(fn))
  }

  get closed (): boolean {
    return this.#closed
  }

  /** NATS answered: the streams are made (again, after a restart of JetStream: idempotent) and the lanes pull. */
  async attach (nc: NatsConnection): Promise<void> {
    let delay = 250
    while (!this.#closed) {
      try {
        const jsm = await jetstreamManager(nc, { timeout: 5000 })
        await this.#ensureStream(jsm, pendingStream(this.names, this.#options.bounds))
        await this.#ensureStream(jsm, deadStream(this.names, this.#options.bounds))
        this.#jsm = jsm
        this.#js = jetstream(nc, { timeout: PUBLISH_TIMEOUT_MS })
        this.#publisher?.close()
        this.#publisher = new AckedPublisher(nc, PUBLISH_TIMEOUT_MS)
        this.#ready = true
        this.#lastError = undefined
        this.logger.info({ streams: [this.names.pending, this.names.dead], replicas: this.#options.bounds.replicas }, 'cluster: Async invocations are stored in JetStream')
        this.#countsTimer = setInterval(() => { void this.#readCounts() }, COUNTS_EVERY_MS)
        this.#countsTimer.unref()
        this.#moveLocalSoon(0)
        void this.#readCounts()
        for (const [name] of this.dispatcher.localCapacity()) this.#laneOf(name)?.start()
        return
      } catch (err) {
        const message = (err as Error).message
        if (message !== this.#lastError) this.logger.warn({ err, retryInMs: delay }, 'cluster: JetStream is not ready yet; Async calls are refused (FNBUS_STORE_FAILURE) until it is')
        this.#lastError = message
        await new Promise(resolve => setTimeout(resolve, delay).unref())
        delay = Math.min(delay * 2, 5000)
      }
    }
  }

  /**
   * Invocations this gateway stored in its own store before it joined the cluster go to JetStream, each once (its
   * message id names it: a move cut short by a crash and done again stores none twice), then leave the local store.
   * Without this they would wait in a store nothing reads while the gateway is in a cluster.
   */
  #moveLocalSoon (delay: number): void {
    setTimeout(() => {
      if (this.#closed) return
      this.#moveLocal().catch((err: unknown) => {
        this.logger.error({ err }, 'cluster: moving the invocations stored before joining to JetStream failed; trying again in 10 s')
        this.#moveLocalSoon(10_000)
      })
    }, delay).unref()
  }

  async #moveLocal (): Promise<void> {
    const store = this.#engine.store
    const js = this.#js
    if (js === undefined) return
    let moved = 0
    for (const [fn, counts] of store.counts()) {
      if (counts.pending === 0) continue
      for (;;) {
        const batch = await store.readPending(fn, 0, 256)
        if (batch.length === 0) break
        for (const invocation of batch) {
          const record = newRecord({ ...invocation, idempotencyKey: undefined }, '', 0)
          await js.publish(this.names.pendingSubject(fn), encodeRecord(record), { msgID: `local-${invocation.id}` })
          await store.remove(invocation.id)
          moved++
        }
      }
    }
    if (moved > 0) this.logger.info({ moved }, `cluster: ${moved} Async invocation(s) stored before this gateway joined the cluster were moved to JetStream`)
  }

  async #ensureStream (jsm: JetStreamManager, config: ReturnType<typeof pendingStream>): Promise<void> {
    try {
      await jsm.streams.add(config)
    } catch (err) {
      // made by another gateway already; its settings stand (the first gateway's bounds are the cluster's)
      if (!/already in use/i.test((err as Error).message)) throw err
    }
    // ready once it has a leader: a write before that waits for the election or fails
    for (let wait = 20; ; wait = Math.min(wait * 2, 500)) {
      const info = await jsm.streams.info(config.name)
      if (info.cluster === undefined || info.cluster.leader !== undefined) return
      await new Promise(resolve => setTimeout(resolve, wait))
    }
  }

  start (): void {}

  declare (name: string): void {
    this.#engine.declare(name)
  }

  configure (fn: string, options: Partial<AsyncFunctionOptions>): void {
    this.#engine.configure(fn, options)
  }

  options (fn: string): AsyncFunctionOptions {
    return this.#engine.options(fn)
  }

  served (fn: FunctionAddress): void {
    this.#engine.declare(fn.name)
    const lane = this.#lanes.get(fn.name) ?? this.#newLane(fn)
    if (this.#ready) lane.start()
  }

  #newLane (fn: FunctionAddress): ClusterLane {
    const lane = new ClusterLane(fn, this)
    this.#lanes.set(fn.name, lane)
    this.dispatcher.setSource(fn, lane)
    return lane
  }

  #laneOf (name: string): ClusterLane | undefined {
    return this.#lanes.get(name)
  }

  dropLane (fn: string, lane: ClusterLane): void {
    if (this.#lanes.get(fn) === lane) this.#lanes.delete(fn)
  }

  consumer (fn: string): Promise<Consumer> {
    let made = this.#consumers.get(fn)
    if (made === undefined) {
      made = this.#makeConsumer(fn)
      this.#consumers.set(fn, made)
      // a failure is not kept: the next pull tries again
      made.catch(() => { if (this.#consumers.get(fn) === made) this.#consumers.delete(fn) })
    }
    return made
  }

  async #makeConsumer (fn: string): Promise<Consumer> {
    const jsm = this.#jsm
    const js = this.#js
    if (jsm === undefined || js === undefined) throw new FnbusError('FNBUS_STORE_FAILURE', 'the cluster\'s JetStream is not ready')
    // a stored invocation runs with its function's timeout (it asks for none): past it and the margin, the gateway
    // that took it is taken for dead and another gets it
    const config = functionConsumer(this.names, fn, this.dispatcher.callTimeout(fn) + ACK_MARGIN_MS)
    try {
      await jsm.consumers.add(this.names.pending, config)
    } catch (err) {
      if (!/already in use|exists/i.test((err as Error).message)) throw err
    }
    // A pull request sent before the new consumer has elected its leader is lost (seen here: the gateway that made
    // the consumer pulled nothing for seconds while the other took every invocation); wait for the leader first.
    for (let wait = 20; ; wait = Math.min(wait * 2, 500)) {
      const info = await jsm.consumers.info(this.names.pending, config.durable_name)
      if (info.cluster === undefined || info.cluster.leader !== undefined) break
      await new Promise(resolve => setTimeout(resolve, wait))
    }
    return await js.consumers.get(this.names.pending, config.durable_name)
  }

  async publishDead (fn: string, record: InvocationRecord): Promise<void> {
    const js = this.#js
    if (js === undefined) throw new FnbusError('FNBUS_STORE_FAILURE', 'the cluster\'s JetStream is not ready')
    await js.publish(this.names.deadSubject(fn), encodeRecord(record), { msgID: `dead-${record.seq}` })
  }

  idOf (seq: number): string {
    return ID_PREFIX + String(seq)
  }

  #seqOf (id: string): number | undefined {
    if (!id.startsWith(ID_PREFIX)) return undefined
    const seq = Number(id.slice(ID_PREFIX.length))
    return Number.isSafeInteger(seq) && seq > 0 ? seq : undefined
  }

  async accept (fn: FunctionAddress, payload: Payload, context: Readonly<Record<string, unknown>> | undefined,
    idempotencyKey: string | undefined, caller: string): Promise<{ readonly invocationId: string, readonly duplicate: boolean }> {
    if (this.#closed) throw new FnbusError('FNBUS_SHUTTING_DOWN', 'the gateway is shutting down')
    const publisher = this.#publisher
    // nothing is accepted that is not stored: without NATS, at once rather than after a publish timeout
    if (!this.#options.connected()) throw new FnbusError('FNBUS_STORE_FAILURE', 'this gateway is not connected to its cluster\'s NATS servers')
    if (publisher === undefined || !this.#ready) throw new FnbusError('FNBUS_STORE_FAILURE', `the cluster's JetStream is not ready${this.#lastError === undefined ? '' : `: ${this.#lastError}`}`)
    const options = this.options(fn.name)
    // the function's own bound, from the counts of the last second (the stream bounds every function at the largest)
    if ((this.#pending.get(fn.name) ?? 0) >= options.maxStored) {
      throw new FnbusError('FNBUS_QUEUE_FULL', `${fn.name} has ${options.maxStored} waiting invocations (async.maxStored)`)
    }
    const record = newRecord({ fn: fn.name, payloadKind: payload.kind, payload: payload.bytes, context, caller, createdAt: this.clock.epoch() }, '', 0)
    // a function's token holds no `:` and identity names no `!`: scopes cannot run into each other (and a header
    // value may hold neither CR nor LF, which none of the three does)
    const msgID = idempotencyKey === undefined ? undefined : `${functionToken(fn.name)}:${caller}!${idempotencyKey}`
    let ack
    try {
      // accepted only once JetStream acknowledged the write (a PubAck, `duplicate` when the msgID was seen)
      ack = await publisher.publish(this.names.pendingSubject(fn.name), encodeRecord(record), msgID)
    } catch (err) {
      throw storeError(err, 'the invocation could not be stored')
    }
    const invocationId = this.idOf(ack.seq)
    if (!ack.duplicate) {
      this.#pending.set(fn.name, (this.#pending.get(fn.name) ?? 0) + 1)
      const identity = caller.startsWith('$') ? undefined : caller
      if (this.events?.observed('accepted') === true) this.events.emit('accepted', { requestId: invocationId, function: fn.name, identity })
    }
    return { invocationId, duplicate: ack.duplicate }
  }

  async #waiting (id: string): Promise<InvocationRecord | undefined> {
    const seq = this.#seqOf(id)
    const jsm = this.#manager()
    if (seq === undefined) return undefined
    const found = await jsm.streams.getMessage(this.names.pending, { seq }).catch(() => null)
    return found === null ? undefined : decodeRecord(Buffer.from(found.data))
  }

  #manager (): JetStreamManager {
    if (this.#jsm === undefined) throw new FnbusError('FNBUS_STORE_FAILURE', 'the cluster\'s JetStream is not ready')
    return this.#jsm
  }

  async functionOf (id: string): Promise<string | undefined> {
    return (await this.ownerOf(id))?.fn
  }

  async ownerOf (id: string): Promise<{ readonly fn: string, readonly caller: string | undefined } | undefined> {
    const waiting = await this.#waiting(id)
    if (waiting !== undefined) return { fn: waiting.fn, caller: waiting.by }
    const dead = await this.#findDead(id)
    return dead === undefined ? undefined : { fn: dead.record.fn, caller: dead.record.by }
  }

  async cancel (id: string): Promise<void> {
    for (const lane of this.#lanes.values()) {
      if (lane.isRunning(id)) throw invalidArgument(`invocation ${id} has already started; only waiting invocations can be cancelled`)
    }
    const seq = this.#seqOf(id)
    const removed = seq === undefined ? false : await this.#manager().streams.deleteMessage(this.names.pending, seq, false).catch(() => false)
    if (!removed) throw new FnbusError('FNBUS_INVOCATION_NOT_FOUND', `no waiting invocation ${id} (it completed, was cancelled, is dead-lettered, or never existed)`)
  }

  async #readCounts (): Promise<void> {
    const jsm = this.#jsm
    if (jsm === undefined || this.#closed) return
    try {
      this.#pending = await this.#subjectCounts(jsm, this.names.pending, this.names.allPending)
      this.#dead = await this.#subjectCounts(jsm, this.names.dead, this.names.allDead)
    } catch {
      // a partition: the last counts stand until JetStream answers again
    }
  }

  async #subjectCounts (jsm: JetStreamManager, stream: string, filter: string): Promise<Map<string, number>> {
    const info = await jsm.streams.info(stream, { subjects_filter: filter })
    const out = new Map<string, number>()
    for (const [subject, count] of Object.entries(info.state.subjects ?? {})) {
      const fn = this.names.functionOfSubject(subject)
      if (fn !== undefined) out.set(fn, (out.get(fn) ?? 0) + count)
    }
    return out
  }

  queueStats (fn?: string): QueueStats[] {
    const names = new Set<string>([...this.#pending.keys(), ...this.#dead.keys(), ...this.#lanes.keys()])
    const out: QueueStats[] = []
    for (const name of [...names].sort()) {
      if (fn !== undefined && name !== fn) continue
      const pending = this.#pending.get(name) ?? 0
      const dead = this.#dead.get(name) ?? 0
      const inFlight = this.#lanes.get(name)?.inFlight ?? 0
      if (pending === 0 && dead === 0 && inFlight === 0 && fn === undefined) continue
      out.push({ fn: name, pending, inFlight, dead })
    }
    return out
  }

  /** Dead letters in the stream's order (oldest first), of one function or all, each with its seq in the dead stream. */
  async #scanDead (fn: string | undefined, limit: number, stop?: (record: InvocationRecord) => boolean): Promise<{ seq: number, record: InvocationRecord }[]> {
    const jsm = this.#manager()
    const subject = fn === undefined ? this.names.allDead : this.names.deadSubject(fn)
    const out: { seq: number, record: InvocationRecord }[] = []
    let seq = 1
    while (out.length < limit) {
      const msg = await jsm.direct.getMessage(this.names.dead, { seq, next_by_subj: subject }).catch(() => null)
      if (msg === null) break
      seq = msg.seq + 1
      let record: InvocationRecord
      try {
        record = decodeRecord(Buffer.from(msg.data))
      } catch {
        continue
      }
      out.push({ seq: msg.seq, record })
      if (stop?.(record) === true) break
    }
    return out
  }

  async #findDead (id: string): Promise<{ seq: number, record: InvocationRecord } | undefined> {
    if (this.#seqOf(id) === undefined) return undefined
    const scanned = await this.#scanDead(undefined, Number.MAX_SAFE_INTEGER, record => record.id === id)
    const last = scanned.at(-1)
    return last?.record.id === id ? last : undefined
  }

  async listDead (fn: string | undefined, limit: number): Promise<DeadInvocation[]> {
    return (await this.#scanDead(fn, limit)).map(({ record }) => toDeadInvocation(record))
  }

  async revive (selector: { readonly id: string } | { readonly fn: string | undefined }): Promise<number> {
    const found = 'id' in selector
      ? [await this.#findDead(selector.id)].filter(entry => entry !== undefined)
      : await this.#scanDead(selector.fn, Number.MAX_SAFE_INTEGER)
    const js = this.#js
    if (js === undefined) throw new FnbusError('FNBUS_STORE_FAILURE', 'the cluster\'s JetStream is not ready')
    let revived = 0
    for (const { seq, record } of found) {
      try {
        // back at the end of its function's queue, under a new id; then out of the dead letters
        await js.publish(this.names.pendingSubject(record.fn), encodeRecord(revivedRecord(record, 0, this.clock.epoch())))
        await this.#manager().streams.deleteMessage(this.names.dead, seq, false)
      } catch (err) {
        throw storeError(err, 'a dead invocation could not be sent back')
      }
      revived++
    }
    void this.#readCounts()
    return revived
  }

  async purgeDead (fn: string | undefined): Promise<number> {
    const jsm = this.#manager()
    try {
      const purged = await jsm.streams.purge(this.names.dead, fn === undefined ? undefined : { filter: this.names.deadSubject(fn) })
      void this.#readCounts()
      return purged.purged
    } catch (err) {
      throw storeError(err, 'the dead letters could not be purged')
    }
  }

  status (): ClusterStoreStatus {
    let pending = 0
    for (const n of this.#pending.values()) pending += n
    let dead = 0
    for (const n of this.#dead.values()) dead += n
    return { state: this.#ready ? 'ready' : 'pending', lastError: this.#lastError, pending, dead, replicas: this.#options.bounds.replicas }
  }

  shutDown (): void {
    this.#closed = true
  }

  async close (): Promise<void> {
    this.#closed = true
    clearInterval(this.#countsTimer)
    this.#publisher?.close(new FnbusError('FNBUS_SHUTTING_DOWN', 'the gateway is shutting down'))
    for (const lane of this.#lanes.values()) lane.stop()
  }
}
