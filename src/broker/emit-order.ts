import type { Aedes, AedesPublishPacket, PublishPacket } from 'aedes'
import type { Logger } from '../logger.js'
import { Fifo } from '../util/fifo.js'
import { hasFunction, patchPointMissing } from './patch-points.js'

type Routed = (err?: Error | null) => void

/** What aedes has beyond its typings: its id, the number of its last message, its router (see patch-points.ts). */
interface AedesInternals {
  readonly id: string
  readonly counter: unknown
  readonly mq: { emit (packet: AedesPublishPacket, routed: Routed): unknown } | undefined
}

/** aedes' publish as its own code calls it: the client (or the callback) second. */
type Route = (this: Aedes, packet: PublishPacket, client: unknown, done?: unknown) => void

/** One message numbered here and not handed to the router yet. */
class Turn {
  /** aedes' copy of the message and the router's callback, once aedes has them ready for subscribers. */
  packet: AedesPublishPacket | undefined = undefined
  routed: Routed | undefined = undefined
  /** Handed to the router, or given up (aedes called back without routing it): it holds nobody back any more. */
  over = false

  constructor (readonly counter: number) {}
}

/**
 * The turn numbered `counter` among those waiting (in their numbers' order), found by a binary search: a queue rather
 * than a Map by number, since a Map with an add and a delete per message turns short-lived garbage into
 * old-generation garbage (docs/architecture.md, the hot paths).
 */
function findTurn (turns: Fifo<Turn>, counter: number): Turn | undefined {
  let low = 0
  let high = turns.length - 1
  // a QoS 0 message is handed over within its publish call: most often the last turn
  if (high >= low && (turns.at(high) as Turn).counter === counter) return turns.at(high)
  while (low <= high) {
    const middle = (low + high) >>> 1
    const turn = turns.at(middle) as Turn
    if (turn.counter === counter) return turn
    if (turn.counter < counter) low = middle + 1
    else high = middle - 1
  }
  return undefined
}

/**
 * Makes aedes hand its messages to subscribers in the order it numbered them.
 *
 * aedes numbers each message as `publish` is called (brokerCounter, under its own id) and gives a connection a
 * message only if its number is above the last one that connection got from the same id (the duplicate check of
 * overlapping subscriptions, aedes' lib/client.js `dedupe`). A QoS 0 message that is not retained reaches the router at
 * once; a QoS 1/2 or retained one only after its persistence calls (the retained store, the persistent sessions'
 * queues). A QoS 0 message published after a QoS 1 one thus often reaches a subscriber of both first, and the QoS 1
 * one is then dropped at that subscriber, acknowledged to its publisher and never delivered; a QoS 1 message overtaken
 * by a later one (one with no session to queue it for) is lost the same way. test/integration/qos-order.test.js lost
 * half of 2,000 QoS 1 messages so on LevelDB. The cluster's own messages keep their order their own way
 * (src/cluster/events.ts, `Lane`).
 *
 * Here each message aedes numbers while one is still in its persistence calls takes a turn, by its number: its
 * hand-over to the router (aedes' `mq.emit`) waits for every earlier turn's. A message that aedes gives up on (its
 * retained write failed) gives its turn up when aedes calls back. Numbers do not change, so what aedes stored under
 * them (queued messages are keyed by them) and what the session bounds remember of them (persistence-bounds.ts,
 * event-delivery.ts) stay right. The cost falls on mixed traffic: a QoS 0 message behind a QoS 1 one waits for that
 * one's persistence. With no message in its persistence calls, a publish passes with a few comparisons more.
 *
 * Messages that come numbered (the cluster's, under ids of their own) pass as they are, and so does a will of
 * another broker: aedes checks those against other numbers. Install before anything else wraps `aedes.publish`, so
 * that a message is numbered here when aedes numbers it.
 */
export function keepEmitOrder (aedes: Aedes, logger: Logger): void {
  const internals = aedes as unknown as AedesInternals
  const mq = internals.mq
  if (!hasFunction(mq, 'emit', logger, 'aedes.mq') || mq === undefined) return
  if (typeof internals.counter !== 'number') {
    patchPointMissing(logger, 'aedes.counter', { counter: typeof internals.counter })
    return
  }
  const emit = mq.emit
  const route = aedes.publish as unknown as Route
  const turns = new Fifo<Turn>()
  let handing = false

  /** Hands the router every message whose turn has come, in order. */
  const handOver = (): void => {
    // a subscriber that publishes as it is handed a message adds a turn: this loop takes it
    if (handing) return
    handing = true
    try {
      for (let turn = turns.peek(); turn !== undefined && (turn.over || turn.packet !== undefined); turn = turns.peek()) {
        turns.shift()
        if (turn.over) continue
        turn.over = true
        emit.call(mq, turn.packet as AedesPublishPacket, turn.routed as Routed)
      }
    } finally {
      handing = false
    }
  }

  mq.emit = function emitInTurn (packet, routed) {
    if (turns.length === 0 || packet.brokerId !== internals.id) return emit.call(this, packet, routed)
    const turn = findTurn(turns, packet.brokerCounter)
    if (turn === undefined || turn.over) return emit.call(this, packet, routed)
    turn.packet = packet
    turn.routed = routed
    handOver()
    return this
  }

  aedes.publish = function publishInTurn (this: Aedes, packet: PublishPacket, client: unknown, done?: unknown) {
    // a QoS 0 message that is not retained reaches the router within this call: with no turn waiting it is in order
    if (turns.length === 0 && !(packet.qos > 0) && !packet.retain) return route.call(this, packet, client, done)
    const { brokerId, brokerCounter } = packet as Partial<AedesPublishPacket>
    // numbered already, or under another broker's id: not among aedes' own numbers
    if (brokerCounter || (brokerId && brokerId !== internals.id)) return route.call(this, packet, client, done)
    // aedes numbers the message first thing, with ++counter (see patch-points.ts, `aedes.counter`)
    const turn = new Turn((internals.counter as number) + 1)
    turns.push(turn)
    const callback = typeof client === 'function' ? client : done
    function calledBack (this: unknown, err?: Error | null): void {
      if (!turn.over) {
        turn.over = true
        // routed, yet not through the router's emit under its number: aedes no longer works the way this relies on
        if (err == null) patchPointMissing(logger, 'aedes.mq', { topic: packet.topic })
        handOver()
      }
      if (typeof callback === 'function') callback.call(this, err)
    }
    if (typeof client === 'function') route.call(this, packet, calledBack)
    else route.call(this, packet, client, calledBack)
    if (!turn.over && turn.packet === undefined && (internals.counter as number) < turn.counter) {
      // aedes did not number it: its turn would hold every later message back for nothing
      patchPointMissing(logger, 'aedes.counter', { topic: packet.topic })
      turn.over = true
      handOver()
    }
  } as Aedes['publish']
}
