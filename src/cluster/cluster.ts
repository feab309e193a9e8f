// A gateway's membership of a cluster (docs/cluster.md): its NATS connection, kept up with backoff and never a
// reason to exit; what it tells the others it serves (directory.ts) and what they tell it, as peers its dispatcher
// hands calls to (peer.ts); its inbox of calls and answers (inbox.ts); the Async invocations in JetStream
// (cluster-async.ts) and the events across gateways (events.ts) it starts. Loaded only when the gateway has `cluster`
// (src/gateway.ts), and the NATS client with it.
import { randomBytes } from 'node:crypto'
import { connect, credsAuthenticator, nkeyAuthenticator, type NatsConnection, type Msg, type Subscription } from '@nats-io/transport-node'
import type { Aedes } from 'aedes'
import type { FunctionBus } from '../broker/function-bus.js'
import { DEFAULT_ASYNC_OPTIONS } from '../dispatcher/async-options.js'
import type { Logger } from '../logger.js'
import { parseFunctionName } from '../protocol/names.js'
import { hasCredentials, TOKEN, type ResolvedCluster } from './cluster-config.js'
import { encodeAnnouncement, MAX_ANNOUNCED_FUNCTIONS, parseAnnouncement, type Announcement } from './directory.js'
import { ClusterEvents } from './events.js'
import { ClusterInbox } from './inbox.js'
import { ClusterAsync } from './cluster-async.js'
import { ENVELOPE_ROOM, Peer, type PeerLink } from './peer.js'
import type { ClusterStatus } from './status.js'

/** Gateways one gateway keeps track of; announcements from more are dropped. */
export const MAX_PEERS = 256
/** How often the directory is checked for changes, and peers for silence, ms. */
const TICK_MS = 100
/** A peer known from its calls before its first announcement: it takes the incarnation that announcement names. */
const UNKNOWN_INCARNATION = ''
/** The biggest batch of envelopes one NATS message carries (a bigger max_payload is not used beyond this). */
const MAX_BATCH_BYTES = 256 * 1024

export interface ClusterOptions {
  readonly aedes: Aedes
  readonly bus: FunctionBus
  readonly logger: Logger
}

type State = ClusterStatus['state']

export class Cluster {
  readonly #config: ResolvedCluster
  readonly #bus: FunctionBus
  readonly #logger: Logger
  /**
   * This gateway's run as the others know it: new at start, and again on every reconnection to NATS. Losing NATS this
   * gateway forgot the others and every call between them (#watch); the others cannot see a short loss (a reconnection
   * to another node within milliseconds, between two heartbeats), so the new incarnation tells them: they fail their
   * calls in flight here with FNBUS_WORKER_LOST at once, rather than wait for answers this gateway dropped until their
   * deadlines (FNBUS_TIMEOUT; seen in benchmarks/faults/cluster.js when a NATS node was killed).
   */
  #incarnation = newIncarnation()
  readonly #peers = new Map<string, Peer>()
  /** Peers by their inbox subject: a batch's reply subject names its sender. */
  readonly #bySubject = new Map<string, Peer>()
  readonly #inbox: ClusterInbox
  readonly #link: PeerLink
  readonly #subject: string
  readonly #dirSubject: string
  #nc: NatsConnection | undefined
  #state: State = 'connecting'
  #since = Date.now()
  #lastError: string | undefined
  #closed = false
  #timer: NodeJS.Timeout | undefined
  /** What was announced last, as a comparable string, and when (monotonic ms). */
  #announced = ''
  #announcedAt = 0
  #announceSoon: NodeJS.Timeout | undefined
  #droppedAnnouncements = 0
  #nameClash = false
  /** Set by leave(): this gateway announces that it serves nothing, whatever its workers. */
  #draining = false
  /** Async invocations in JetStream: this gateway's own engine hands over to it as the gateway starts. */
  readonly #async: ClusterAsync
  /** The events across gateways, once NATS first answered. */
  #events: ClusterEvents | undefined
  readonly #aedes: Aedes

  private constructor (config: ResolvedCluster, options: ClusterOptions) {
    this.#config = config
    this.#bus = options.bus
    this.#aedes = options.aedes
    this.#logger = options.logger
    this.#subject = `${config.prefix}.gw.${config.name}`
    this.#dirSubject = `${config.prefix}.dir`
    const { limits, policy } = options.bus.options
    const dispatcher = options.bus.dispatcher
    this.#inbox = new ClusterInbox({
      dispatcher,
      policy,
      logger: options.logger,
      maxPayloadBytes: limits.maxPayloadBytes,
      maxContextBytes: limits.maxContextBytes,
      maxInFlightPerPeer: limits.maxInFlightPerClient,
    })
    const maxPayload = (): number => this.#nc?.info?.max_payload ?? 1024 * 1024
    this.#async = new ClusterAsync({
      prefix: config.prefix,
      bounds: {
        replicas: config.replicas,
        maxStoredPerFunction: DEFAULT_ASYNC_OPTIONS.maxStored,
        maxStoredTotal: limits.maxStoredTotal,
        idempotencyWindowMs: DEFAULT_ASYNC_OPTIONS.idempotencyWindowMs,
        maxDeadPerFunction: DEFAULT_ASYNC_OPTIONS.maxStored,
      },
      engine: options.bus.asyncEngine,
      dispatcher,
      logger: options.logger,
      events: options.bus.events,
      connected: () => this.connected,
    })
    options.bus.useAsync(this.#async)
    this.#link = {
      dispatcher,
      send: (subject, data) => this.#send(subject, data),
      maxBatchBytes: () => Math.min(MAX_BATCH_BYTES, maxPayload() - ENVELOPE_ROOM - limits.maxContextBytes),
      maxEnvelopeBytes: () => maxPayload() - ENVELOPE_ROOM - limits.maxContextBytes,
    }
  }

  /** Joins in the background: the gateway serves at once, and the cluster's part once NATS answers. */
  static start (config: ResolvedCluster, options: ClusterOptions): Cluster {
    const cluster = new Cluster(config, options)
    if (!hasCredentials(config)) options.logger.warn({ cluster: config.name }, 'cluster: no NATS credentials are configured: any NATS client that reaches the servers can call this gateway\'s functions (docs/cluster.md#security)')
    cluster.#timer = setInterval(() => cluster.#guarded(() => cluster.#tick()), TICK_MS)
    cluster.#timer.unref()
    void cluster.#connect()
    return cluster
  }

  get name (): string {
    return this.#config.name
  }

  /** Connected to NATS: calls and events cross the cluster. */
  get connected (): boolean {
    return this.#state === 'connected'
  }

  async #connect (): Promise<void> {
    const config = this.#config
    let delay = 250
    let lastLogged: string | undefined
    while (!this.#closed) {
      try {
        const nc = await connect({
          servers: [...config.servers],
          name: `fnbus-${config.name}`,
          user: config.user,
          pass: config.password,
          token: config.token,
          authenticator: config.creds !== undefined ? credsAuthenticator(new Uint8Array(config.creds)) : config.nkey !== undefined ? nkeyAuthenticator(new TextEncoder().encode(config.nkey)) : undefined,
          tls: config.tls === undefined ? undefined : { ...config.tls },
          // a gateway never needs what it published itself: its own events, its own announcements
          noEcho: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
          reconnectJitter: 250,
          // a server that stops answering (a partition rather than a closed socket) is left within ~10 s
          pingInterval: 5000,
          maxPingOut: 2,
        })
        if (this.#closed) {
          await nc.close()
          return
        }
        this.#joined(nc)
        return
      } catch (err) {
        const message = (err as Error).message
        this.#lastError = message
        if (message !== lastLogged) {
          lastLogged = message
          this.#logger.warn({ err, servers: config.servers, retryInMs: delay }, 'cluster: cannot reach the NATS servers yet; retrying')
        }
        await new Promise(resolve => setTimeout(resolve, delay * (0.75 + Math.random() / 2)).unref())
        delay = Math.min(delay * 2, 10_000)
      }
    }
  }

  #joined (nc: NatsConnection): void {
    this.#nc = nc
    this.#setState('connected')
    this.#lastError = undefined
    this.#logger.info({ cluster: this.#config.name, server: nc.getServer() }, 'cluster: connected to NATS')
    const max = nc.info?.max_payload
    const needed = this.#bus.options.limits.maxPayloadBytes + ENVELOPE_ROOM + this.#bus.options.limits.maxContextBytes
    if (max !== undefined && max < needed) {
      this.#logger.warn({ maxPayload: max, needed }, `cluster: the NATS servers' max_payload (${max}) is below what one call may carry (${needed}): larger calls fail with FNBUS_PAYLOAD_TOO_LARGE when they would cross gateways`)
    }
    const onError = (what: string) => (err: Error | null, msg: Msg): void => {
      if (err !== null) {
        this.#logger.error({ err }, `cluster: the ${what} subscription failed`)
        return
      }
      this.#guarded(() => what === 'inbox' ? this.#inbox.receive(msg.data, this.#sender(msg.reply)) : this.#heard(msg.data))
    }
    const subs: Subscription[] = [
      nc.subscribe(this.#subject, { callback: onError('inbox') }),
      nc.subscribe(this.#dirSubject, { callback: onError('directory') }),
    ]
    void subs
    this.#announce(true)
    this.#watch(nc)
    void this.#async.attach(nc)
    ClusterEvents.start({ nc, prefix: this.#config.prefix, gateway: this.#config.name, aedes: this.#aedes, bus: this.#bus, logger: this.#logger, replicas: this.#config.replicas })
      .then(events => {
        if (this.#closed) void events.close()
        else this.#events = events
      }, (err: unknown) => this.#logger.error({ err }, 'cluster: the events across gateways could not start'))
  }

  #watch (nc: NatsConnection): void {
    this.#watchStatus(nc).catch((err: unknown) => this.#logger.error({ err }, 'cluster: watching the NATS connection failed'))
  }

  async #watchStatus (nc: NatsConnection): Promise<void> {
    for await (const status of nc.status()) {
      this.#guarded(() => {
        if (status.type === 'disconnect') {
          this.#setState('reconnecting')
          this.#logger.warn({ server: status.server }, 'cluster: lost NATS; calls to other gateways fail until it is back')
          // the peers may be there still, but nothing reaches them: their calls in flight are lost to this gateway
          for (const peer of [...this.#peers.values()]) this.#gone(peer, 'this gateway lost NATS')
        } else if (status.type === 'reconnect') {
          this.#incarnation = newIncarnation()
          this.#setState('connected')
          this.#logger.info({ server: status.server }, 'cluster: reconnected to NATS')
          this.#announce(true)
        }
      })
    }
  }

  #setState (state: State): void {
    if (this.#state === state) return
    this.#state = state
    this.#since = Date.now()
  }

  #send (subject: string, data: Uint8Array): boolean {
    const nc = this.#nc
    if (nc === undefined || this.#state !== 'connected') return false
    try {
      nc.publish(subject, data, { reply: this.#subject })
      return true
    } catch (err) {
      this.#logger.error({ err, subject }, 'cluster: a batch could not be published')
      return false
    }
  }

  /** Announces what this gateway's workers serve; `solicit` asks the others to announce themselves too. */
  #announce (solicit: boolean, leaving = false): void {
    const nc = this.#nc
    if (nc === undefined || this.#state !== 'connected') return
    const capacity = this.#capacity()
    let functions: Map<string, number> = capacity
    if (capacity.size > MAX_ANNOUNCED_FUNCTIONS) {
      functions = new Map([...capacity].slice(0, MAX_ANNOUNCED_FUNCTIONS))
      this.#logger.warn({ functions: capacity.size }, `cluster: only ${MAX_ANNOUNCED_FUNCTIONS} functions are announced to other gateways`)
    }
    if (leaving) functions = new Map()
    const announcement: Announcement = { gateway: this.#config.name, incarnation: this.#incarnation, heartbeatMs: this.#config.heartbeatMs, functions, solicit, leaving }
    this.#announced = signature(functions)
    this.#announcedAt = performance.now()
    try {
      nc.publish(this.#dirSubject, encodeAnnouncement(announcement))
    } catch (err) {
      this.#logger.error({ err }, 'cluster: the directory could not be announced')
    }
  }

  #tick (): void {
    const now = performance.now()
    if (this.#state === 'connected') {
      const changed = signature(this.#capacity()) !== this.#announced
      if (changed || now - this.#announcedAt >= this.#config.heartbeatMs) this.#announce(false)
    }
    for (const peer of [...this.#peers.values()]) {
      if (now - peer.lastSeen > 3 * peer.heartbeatMs) this.#gone(peer, `silent for ${Math.round(now - peer.lastSeen)} ms`)
    }
  }

  /** What this gateway's own workers serve, as it announces it: nothing once it is leaving. */
  #capacity (): Map<string, number> {
    return this.#draining ? new Map() : this.#bus.dispatcher.localCapacity()
  }

  /**
   * The peer a batch came from, by its reply subject. A gateway that just joined may call before its announcement
   * arrived here: it becomes a peer now, serving nothing until it announces (and gone if it never does).
   */
  #sender (reply: string | undefined): Peer | undefined {
    if (reply === undefined) return undefined
    const known = this.#bySubject.get(reply)
    if (known !== undefined) return known
    const prefix = `${this.#config.prefix}.gw.`
    const name = reply.startsWith(prefix) ? reply.slice(prefix.length) : ''
    if (!TOKEN.test(name) || name === this.#config.name || this.#peers.size >= MAX_PEERS) return undefined
    return this.#addPeer(name, UNKNOWN_INCARNATION, this.#config.heartbeatMs)
  }

  #addPeer (name: string, incarnation: string, heartbeatMs: number): Peer {
    const peer = new Peer(name, `${this.#config.prefix}.gw.${name}`, incarnation, heartbeatMs, performance.now(), this.#link)
    this.#peers.set(peer.name, peer)
    this.#bySubject.set(peer.subject, peer)
    this.#logger.info({ peer: peer.name }, `cluster: gateway ${peer.name} joined`)
    // it learns of this gateway now rather than at the next heartbeat
    this.#announceShortly()
    return peer
  }

  /** An announcement on the directory subject. */
  #heard (data: Uint8Array): void {
    const a = parseAnnouncement(data)
    if (typeof a === 'string') {
      this.#droppedAnnouncements++
      return
    }
    if (a.gateway === this.#config.name) {
      // noEcho keeps this gateway's own from coming back: this is another gateway under the same name
      if (!this.#nameClash) this.#logger.error({ cluster: a.gateway }, `cluster: another gateway calls itself ${a.gateway}: give each gateway a name of its own (cluster.name, --gateway-name)`)
      this.#nameClash = true
      return
    }
    let peer = this.#peers.get(a.gateway)
    if (peer?.incarnation === UNKNOWN_INCARNATION) peer.incarnation = a.incarnation
    if (peer !== undefined && peer.incarnation !== a.incarnation) {
      this.#gone(peer, 'it restarted, or lost NATS')
      peer = undefined
    }
    if (a.leaving) {
      if (peer !== undefined) this.#gone(peer, 'it left')
      return
    }
    const now = performance.now()
    if (peer === undefined) {
      if (this.#peers.size >= MAX_PEERS) {
        this.#droppedAnnouncements++
        return
      }
      peer = this.#addPeer(a.gateway, a.incarnation, a.heartbeatMs)
    }
    peer.lastSeen = now
    peer.heartbeatMs = a.heartbeatMs
    this.#reconcile(peer, a.functions)
    if (a.solicit) this.#announceShortly()
  }

  /** Registers what `peer` serves now with the dispatcher, and unregisters what it no longer serves. */
  #reconcile (peer: Peer, functions: ReadonlyMap<string, number>): void {
    const dispatcher = this.#bus.dispatcher
    for (const [name, concurrency] of functions) {
      if (peer.functions.get(name) === concurrency) continue
      try {
        dispatcher.register(parseFunctionName(name), peer, concurrency)
      } catch (err) {
        // the function table is full (limits.maxFunctions): the peer's other functions still count
        this.#logger.warn({ err, peer: peer.name, fn: name }, 'cluster: a function of another gateway cannot be tracked')
      }
    }
    for (const name of peer.functions.keys()) {
      if (!functions.has(name)) dispatcher.unregister(parseFunctionName(name), peer)
    }
    peer.functions = functions
  }

  #announceShortly (): void {
    if (this.#announceSoon !== undefined) return
    // a little apart, so that a gateway joining a large cluster is not answered by every other in the same instant
    this.#announceSoon = setTimeout(() => {
      this.#announceSoon = undefined
      this.#guarded(() => this.#announce(false))
    }, 10 + Math.random() * 40)
    this.#announceSoon.unref()
  }

  #gone (peer: Peer, why: string): void {
    if (this.#peers.get(peer.name) !== peer) return
    this.#peers.delete(peer.name)
    this.#bySubject.delete(peer.subject)
    peer.present = false
    peer.clear()
    this.#logger.warn({ peer: peer.name, reason: why }, `cluster: gateway ${peer.name} is gone (${why}); calls it was running fail with FNBUS_WORKER_LOST`)
    const dispatcher = this.#bus.dispatcher
    dispatcher.workerGone(peer)
    dispatcher.callerGone(peer)
  }

  #guarded (step: () => void): void {
    try {
      step()
    } catch (err) {
      // a timer or a subscription's callback: nothing may throw out of the event loop
      this.#logger.error({ err }, 'cluster: unexpected error')
    }
  }

  status (): ClusterStatus {
    const members = [...this.#peers.values()].sort((a, b) => a.name.localeCompare(b.name)).map(peer => ({
      name: peer.name,
      functions: [...peer.functions.keys()].sort(),
      lastSeenMs: Math.round(performance.now() - peer.lastSeen),
      calls: { ...peer.counts },
      latency: peer.times.histogram(),
      inFlight: peer.inFlight,
    }))
    return {
      name: this.#config.name,
      state: this.#state,
      since: this.#since,
      server: this.#state === 'connected' ? this.#nc?.getServer() : undefined,
      lastError: this.#lastError,
      members,
      store: this.#async.status(),
      events: this.#events?.status(),
      dropped: this.#inbox.dropped + this.#droppedAnnouncements,
    }
  }

  /** Tells the others this gateway serves nothing more (before its bus drains), so that they stop sending it calls. */
  leave (): void {
    this.#draining = true
    this.#guarded(() => this.#announce(false))
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#timer)
    clearTimeout(this.#announceSoon)
    for (const peer of this.#peers.values()) peer.flush()
    this.#guarded(() => this.#announce(false, true))
    for (const peer of [...this.#peers.values()]) this.#gone(peer, 'this gateway is closing')
    await this.#events?.close()
    const nc = this.#nc
    this.#nc = undefined
    this.#setState('closed')
    if (nc !== undefined) {
      try {
        await nc.drain()
      } catch {
        await nc.close().catch(() => {})
      }
    }
  }
}

function newIncarnation (): string {
  return randomBytes(9).toString('base64url')
}

/** A directory as a string two directories compare equal by. */
function signature (functions: ReadonlyMap<string, number>): string {
  let out = ''
  for (const [name, concurrency] of functions) out += name + '\n' + concurrency + '\n'
  return out
}
