import type { AedesPublishPacket, Client as AedesClient, PublishPacket } from 'aedes'
import type { Limits } from '../limits.js'
import type { Logger } from '../logger.js'
import { Policy } from '../security/policy.js'
import { identityOf } from '../security/identity.js'
import { filterMatches, levelsOf } from '../security/topic-filter.js'

/** What the gateway does with a client's PUBLISH to an ordinary topic. */
export type PublishVerdict =
  /** Route it. */
  | { readonly kind: 'route' }
  /**
   * Acknowledge it as usual but route it nowhere: the policy does not allow it. MQTT 3.1.1 cannot tell the
   * publisher ([MQTT-3.3.5-2]); closing its connection instead would also fail every call it has in flight.
   */
  | { readonly kind: 'drop', readonly reason: string }
  /** Close the connection: the packet breaks a limit no well-behaved client (the SDK checks first) reaches. */
  | { readonly kind: 'close', readonly error: Error }

const ROUTE: PublishVerdict = Object.freeze({ kind: 'route' })

/**
 * The checks on ordinary (non-`$fn/`) MQTT traffic: limits on topics, payloads and subscriptions, and the policy
 * for publish, subscribe and every delivery. The bus decides about `$fn/` itself.
 */
export class AccessControl {
  readonly policy: Policy | undefined
  readonly #limits: Limits
  readonly #logger: Logger
  /** Filters each connection holds (or is being granted), to bound them. */
  readonly #subscriptions = new WeakMap<AedesClient, Set<string>>()

  constructor (policy: Policy | undefined, limits: Limits, logger: Logger) {
    this.policy = policy
    this.#limits = limits
    this.#logger = logger
  }

  /** The name policy decisions use for a connection. */
  subjectOf (client: AedesClient | null): string {
    return Policy.subjectOf(identityOf(client))
  }

  /** `client` is null for the will of a connection that ended while the gateway was down. */
  publish (client: AedesClient | null, packet: PublishPacket): PublishVerdict {
    const topicProblem = this.topicProblem(packet.topic)
    if (topicProblem !== undefined) return { kind: 'close', error: new Error(`PUBLISH refused: ${topicProblem}`) }
    const size = typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length
    if (size > this.#limits.maxPayloadBytes) {
      return { kind: 'close', error: new Error(`PUBLISH refused: payload of ${size} bytes exceeds limits.maxPayloadBytes (${this.#limits.maxPayloadBytes})`) }
    }
    if (this.policy === undefined) return ROUTE
    // a will stored by a connection of an earlier gateway run: whose identity it carried is not known any more
    if (client === null) return { kind: 'drop', reason: 'a will left from an earlier run has no identity to authorize' }
    const subject = this.subjectOf(client)
    if (!this.policy.mayPublish(subject, packet.topic)) {
      return { kind: 'drop', reason: `${subject} may not publish on ${packet.topic}` }
    }
    return ROUTE
  }

  /** Whether a subscription may be granted; counts it toward the connection's bound when it may. */
  subscribe (client: AedesClient, filter: string): { readonly granted: true } | { readonly granted: false, readonly reason: string } {
    const topicProblem = this.topicProblem(filter)
    if (topicProblem !== undefined) return { granted: false, reason: topicProblem }
    if (this.policy !== undefined && !filter.startsWith('$fn/')) {
      const subject = this.subjectOf(client)
      if (!this.policy.maySubscribe(subject, filter)) return { granted: false, reason: `${subject} may not subscribe to ${filter}` }
    }
    let held = this.#subscriptions.get(client)
    if (held === undefined) {
      held = new Set()
      this.#subscriptions.set(client, held)
    }
    if (!held.has(filter)) {
      if (held.size >= this.#limits.maxSubscriptionsPerClient) {
        return { granted: false, reason: `the connection holds limits.maxSubscriptionsPerClient (${this.#limits.maxSubscriptionsPerClient}) subscriptions` }
      }
      held.add(filter)
    }
    return { granted: true }
  }

  /** The subscription was not made after all (another hook refused it), or was ended. */
  released (client: AedesClient, filters: readonly string[]): void {
    const held = this.#subscriptions.get(client)
    if (held !== undefined) for (const filter of filters) held.delete(filter)
  }

  /** Re-checks every delivery, so retained messages and those queued for a session obey today's policy too. */
  mayDeliver (client: AedesClient, packet: AedesPublishPacket): boolean {
    // aedes sends retained messages on SUBSCRIBE without its [MQTT-4.7.2-1] check: a `+` or `#` subscriber would
    // get a retained `$…` message. Deliver a `$` topic only if one of the client's filters really matches it.
    if (packet.topic.charCodeAt(0) === 36 && !this.#subscribedTo(client, packet.topic)) return false
    if (this.policy === undefined) return true
    const subject = this.subjectOf(client)
    if (this.policy.mayReceive(subject, packet.topic)) return true
    this.#logger.debug({ client: client.id, identity: subject, topic: packet.topic }, 'delivery withheld by the policy')
    return false
  }

  #subscribedTo (client: AedesClient, topic: string): boolean {
    const levels = levelsOf(topic)
    const held = this.#subscriptions.get(client)
    if (held === undefined) return false
    for (const filter of held) if (filterMatches(levelsOf(filter), levels)) return true
    return false
  }

  topicProblem (topic: string): string | undefined {
    const bytes = Buffer.byteLength(topic)
    if (bytes > this.#limits.maxTopicBytes) return `topic of ${bytes} bytes exceeds limits.maxTopicBytes (${this.#limits.maxTopicBytes})`
    let levels = 1
    for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 47) levels++
    if (levels > this.#limits.maxTopicLevels) return `topic of ${levels} levels exceeds limits.maxTopicLevels (${this.#limits.maxTopicLevels})`
    return undefined
  }
}

/**
 * Calls per second per identity, as a token bucket: `rate` tokens a second, at most `burst` saved up.
 * Shared by all the identity's connections, so opening more connections does not buy more calls.
 */
export class RateLimiter {
  readonly #rate: number
  readonly #burst: number
  readonly #buckets = new Map<string, { tokens: number, at: number }>()

  constructor (ratePerSec: number, burst: number) {
    this.#rate = ratePerSec
    this.#burst = burst
  }

  get enabled (): boolean {
    return this.#rate > 0
  }

  /** Takes one call's token; false when the identity is over its rate. */
  take (subject: string, now = performance.now()): boolean {
    if (this.#rate <= 0) return true
    let bucket = this.#buckets.get(subject)
    if (bucket === undefined) {
      // identities are few; a flood of names (anonymous clients share one) cannot grow this without bound
      if (this.#buckets.size >= 10_000) this.#buckets.clear()
      bucket = { tokens: this.#burst, at: now }
      this.#buckets.set(subject, bucket)
    } else {
      bucket.tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.at) * this.#rate / 1000)
      bucket.at = now
    }
    if (bucket.tokens < 1) return false
    bucket.tokens -= 1
    return true
  }
}
