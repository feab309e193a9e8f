import type { Aedes, AedesPublishPacket, Client as AedesClient } from 'aedes'
import type { Logger } from '../logger.js'
import { hasFunction, patchPointMissing } from './patch-points.js'

export interface EventDeliveryOptions {
  /** Bytes that may wait for one subscriber's socket; past it QoS 0 messages are dropped, QoS 1/2 cut the connection. */
  readonly maxBufferBytes: number
  /** How long a subscriber may stay over `maxBufferBytes` before its connection is cut. */
  readonly timeoutMs: number
  readonly logger: Logger
  /** A message `clientId` will not get. */
  readonly onDrop: (reason: 'subscriber_buffer_full', clientId: string, topic: string) => void
  /** The connection of `clientId` is being cut for being too slow. */
  readonly onCut: (clientId: string) => void
}

type Deliver = (packet: AedesPublishPacket, callback: () => void) => void

/** What aedes' Client has beyond its typings: the two functions its subscriptions deliver through. */
interface DeliveringClient extends AedesClient {
  deliver0: Deliver
  deliverQoS: Deliver
}

/**
 * What one message costs while it waits for a subscriber's socket beyond its payload and topic: aedes' drain
 * callback, and the chunks mqtt-packet writes (header, topic and payload separately, each an entry in the socket's
 * buffer with its own small Buffer). Measured: 637 bytes of heap per waiting 8-byte message. Counted so that a flood
 * of tiny messages is bounded as surely as one of large ones.
 */
const PER_MESSAGE_BYTES = 640

/** Broker counters remembered of messages a connected session's queue refused (aedes routes them right after). */
const MAX_REFUSED_REMEMBERED = 10_000

class Subscriber {
  /** Bytes of QoS 1/2 messages handed to aedes and not written to the socket yet (QoS 0 ones are, by the next turn). */
  unwritten = 0
  /**
   * Messages handed to aedes whose write has not called back: aedes calls back at once while the socket takes
   * more, and once it drained when it was full.
   */
  waiting = 0
  /** Runs while the subscriber is over its bound: when it fires and the subscriber still is, the connection is cut. */
  timer: NodeJS.Timeout | undefined
  cut = false
  /** Messages (broker counters) this connected persistent session's queue refused: they are not delivered either. */
  refused: Set<number> | undefined

  constructor (readonly client: DeliveringClient) {}

  /** aedes' write of one message called back: one function for all of them, no closure per message. */
  readonly written = (): void => { this.waiting-- }

  /** Bytes waiting for the subscriber: in the socket's buffer, not written yet, and the bookkeeping of each message. */
  get buffered (): number {
    return (this.client.conn.writableLength ?? 0) + this.unwritten + this.waiting * PER_MESSAGE_BYTES
  }
}

/**
 * Keeps one slow subscriber from holding back every other.
 *
 * aedes routes each message through mqemitter, which by default takes the next message only once every
 * subscriber's delivery has called back, a hundred messages at a time; a delivery calls back once the socket took the
 * bytes, and a full socket waits for 'drain' up to aedes' drainTimeout (60 s). A subscriber that stops reading thus
 * stalls every delivery on the broker after a hundred messages.
 *
 * Here each delivery calls back as soon as aedes has the message in hand (it writes it on the next turn, in
 * order), so the router has nothing to hold back (the gateway runs it without its bound), and what waits for one
 * subscriber is bounded instead: past `maxBufferBytes` its QoS 0 messages are
 * dropped, a QoS 1/2 message cuts its connection (a persistent session keeps the message queued for the next
 * one), and staying past the bound for `timeoutMs` cuts it too.
 *
 * Retained messages sent on SUBSCRIBE (those without a broker id) keep aedes' pace: they wait for the socket, and
 * hold back nobody but their subscriber's own SUBSCRIBE stream.
 */
export class EventDelivery {
  readonly #options: EventDeliveryOptions
  readonly #subscribers = new WeakMap<AedesClient, Subscriber>()

  constructor (aedes: Aedes, options: EventDeliveryOptions) {
    this.#options = options
    // preConnect runs once per connection, before aedes restores a session's subscriptions, which capture
    // deliver0/deliverQoS as they are then (see patch-points.ts, `aedes.preConnect` and `client.deliver`)
    hasFunction(aedes, 'preConnect', options.logger, 'aedes.preConnect')
    const hostPreConnect = aedes.preConnect
    aedes.preConnect = (client, packet, callback) => {
      this.#wrap(client as DeliveringClient)
      hostPreConnect.call(aedes, client, packet, callback)
    }
    // a client aedes registers without having asked preConnect first gets its deliveries unbounded
    aedes.on('client', client => {
      if (!this.#subscribers.has(client)) patchPointMissing(options.logger, 'aedes.preConnect', { clientId: client.id })
    })
  }

  /**
   * A connected persistent session's queue refused this message (its bound is reached): aedes will still route it
   * to the connection, where it is dropped instead of failing the write for want of its stored copy.
   */
  refuse (client: AedesClient, brokerCounter: number): void {
    const subscriber = this.#subscribers.get(client)
    if (subscriber === undefined) return
    subscriber.refused ??= new Set()
    // aedes routes the message to the connection right after refusing to queue it: older entries are of no use
    if (subscriber.refused.size >= MAX_REFUSED_REMEMBERED) subscriber.refused.clear()
    subscriber.refused.add(brokerCounter)
  }

  #wrap (client: DeliveringClient): void {
    if (this.#subscribers.has(client)) return
    const subscriber = new Subscriber(client)
    this.#subscribers.set(client, subscriber)
    client.conn.once('close', () => clearTimeout(subscriber.timer))
    if (typeof client.deliver0 !== 'function' || typeof client.deliverQoS !== 'function') {
      patchPointMissing(this.#options.logger, 'client.deliver', { clientId: client.id })
      return
    }
    const deliver0 = client.deliver0
    const deliverQoS = client.deliverQoS
    const { maxBufferBytes } = this.#options

    client.deliver0 = (packet, callback) => {
      if (packet.brokerId == null) {
        deliver0(packet, callback)
        return
      }
      if (subscriber.buffered >= maxBufferBytes) {
        this.#over(subscriber)
        this.#options.onDrop('subscriber_buffer_full', client.id, packet.topic)
        setImmediate(callback)
        return
      }
      this.#under(subscriber)
      subscriber.waiting++
      deliver0(packet, subscriber.written)
      // aedes queued its write for the next turn before returning: the router takes the next message once this one is
      // in the socket's buffer, where `buffered` sees it, and without waiting for the socket to take it
      setImmediate(callback)
    }

    client.deliverQoS = (packet, callback) => {
      // aedes' own deliverQoS passes QoS 0 on to deliver0: the wrapper above decides for them
      if (packet.qos === 0) {
        client.deliver0(packet, callback)
        return
      }
      if (packet.brokerId == null) {
        deliverQoS(packet, callback)
        return
      }
      // counted where the queue refused it; kept, since overlapping subscriptions route it here more than once
      if (subscriber.refused?.has(packet.brokerCounter) === true) {
        setImmediate(callback)
        return
      }
      if (subscriber.buffered >= maxBufferBytes) {
        this.#cut(subscriber, `a QoS ${packet.qos} message found ${subscriber.buffered} bytes waiting (limits.maxEventBufferBytes: ${maxBufferBytes})`)
        setImmediate(callback)
        return
      }
      this.#under(subscriber)
      this.#handQoS(subscriber, deliverQoS, packet, callback)
    }
  }

  /**
   * Gives a QoS 1/2 `packet` to aedes' own delivery, and lets the router go on without waiting for the socket. A
   * clean session's message is written on the next turn, a persistent session's once its stored copy is updated:
   * until then its bytes count as unwritten.
   */
  #handQoS (subscriber: Subscriber, deliver: Deliver, packet: AedesPublishPacket, callback: () => void): void {
    const bytes = messageBytes(packet)
    subscriber.unwritten += bytes
    subscriber.waiting++
    let unwritten = true
    const written = (): void => {
      if (!unwritten) return
      unwritten = false
      subscriber.unwritten -= bytes
    }
    deliver(packet, () => {
      written()
      subscriber.waiting--
    })
    setImmediate(() => {
      if (subscriber.client.clean) written()
      callback()
    })
  }

  #over (subscriber: Subscriber): void {
    if (subscriber.timer !== undefined || subscriber.cut) return
    const { maxBufferBytes, timeoutMs } = this.#options
    subscriber.timer = setTimeout(() => {
      subscriber.timer = undefined
      if (subscriber.buffered >= maxBufferBytes) {
        this.#cut(subscriber, `over limits.maxEventBufferBytes (${maxBufferBytes}) for limits.eventBufferTimeoutMs (${timeoutMs} ms)`)
      }
    }, timeoutMs)
    subscriber.timer.unref()
    this.#options.logger.warn({ client: subscriber.client.id, buffered: subscriber.buffered, limit: maxBufferBytes },
      'a subscriber does not keep up: its QoS 0 messages are dropped while it is over limits.maxEventBufferBytes')
  }

  #under (subscriber: Subscriber): void {
    if (subscriber.timer === undefined) return
    clearTimeout(subscriber.timer)
    subscriber.timer = undefined
  }

  #cut (subscriber: Subscriber, reason: string): void {
    if (subscriber.cut) return
    subscriber.cut = true
    clearTimeout(subscriber.timer)
    const { client } = subscriber
    this.#options.logger.warn({ client: client.id, reason }, 'connection cut: the subscriber does not keep up')
    this.#options.onCut(client.id)
    client.conn.destroy()
  }
}

/** A QoS 1/2 message's bytes on the wire, about: its payload and topic. */
function messageBytes (packet: AedesPublishPacket): number {
  const payload = typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length
  return payload + packet.topic.length
}
