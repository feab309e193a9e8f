import type { Logger } from '../logger.js'

/**
 * The places where fnbus relies on more of aedes and of its persistence than their documented hooks and events: it
 * replaces a function aedes looks up each time it runs, or reads a field aedes' typings do not have. Each one is named
 * here with what fnbus relies on and what is lost without it; `test/contract/` holds the installed release to every
 * one of them. At run time each is checked when the bus attaches, or, where only a live connection can show it, the
 * first time it could be seen; a missing one is warned about once per logger instead of a bound being lost in silence.
 */
export const PATCH_POINTS = {
  'conn.read': {
    relies: "aedes reading each connection only through conn.read() on 'readable', on the stream handed to aedes.handle",
    lost: 'the frame guard sees no bytes: limits.maxFrameBytes, the CONNECT checks and the string checks do not apply',
  },
  'aedes.authorizePublish': {
    relies: 'aedes calling broker.authorizePublish(client, packet, callback) before it routes a PUBLISH or a will, and writing the PUBACK of a QoS 1 PUBLISH only after the callback',
    lost: 'bus envelopes are not answered, the policy does not apply to publishing, and a QoS 1 PUBACK may precede the bridges\' durable write',
  },
  'aedes.publish': {
    relies: "aedes routing every PUBLISH and will through the instance's publish(packet, client, done), with the packet authorizePublish saw",
    lost: 'bus envelopes and PUBLISHes the policy dropped reach topic matching, subscribers and retained storage',
  },
  'aedes.counter': {
    relies: 'aedes numbering the message of each publish(packet) call first thing, synchronously, with ++broker.counter under its own id, unless the packet has a brokerCounter',
    lost: "messages reach subscribers in aedes' order: a QoS 1/2 or retained message that a later QoS 0 one overtakes is lost at the subscribers of both",
  },
  'aedes.mq': {
    relies: "aedes handing each published message to its subscribers through the instance's mq.emit(packet, done), after its persistence calls, and a connection dropping a message numbered below one it already got (aedes' lib/client.js dedupe)",
    lost: "messages reach subscribers in aedes' order: a QoS 1/2 or retained message that a later QoS 0 one overtakes is lost at the subscribers of both",
  },
  'aedes.authorizeSubscribe': {
    relies: 'aedes calling broker.authorizeSubscribe(client, subscription, callback) for each filter of a SUBSCRIBE',
    lost: 'the bus inboxes, the policy and limits.maxSubscriptionsPerClient do not apply to subscriptions',
  },
  'aedes.authorizeForward': {
    relies: 'aedes calling broker.authorizeForward(client, packet) for every delivery, live, retained or queued',
    lost: 'the policy does not apply to deliveries and outgoing event messages are not counted',
  },
  'aedes.authenticate': {
    relies: "aedes' own authenticate hook being named defaultAuthenticate, which tells it from one the host set",
    lost: "aedes' default hook was taken for the host's: usernames fnbus does not know would be accepted",
  },
  'aedes.preConnect': {
    relies: "aedes calling broker.preConnect(client, packet, callback) once per connection, before it restores the session's subscriptions",
    lost: 'limits.maxEventBufferBytes and limits.eventBufferTimeoutMs do not bound slow subscribers',
  },
  'client.deliver': {
    relies: "aedes' Client delivering through its own deliver0/deliverQoS functions, which a subscription captures when it is made",
    lost: 'limits.maxEventBufferBytes and limits.eventBufferTimeoutMs do not bound slow subscribers',
  },
  'aedes.persistence': {
    relies: "aedes calling its persistence's outgoingEnqueue, outgoingEnqueueCombi, outgoingClearMessageId and storeRetained through broker.persistence, expecting promises",
    lost: 'the persistent session queues and the retained messages are not bounded (limits.maxSessionQueue*, limits.maxRetained*)',
  },
  'aedes.clients': {
    relies: 'aedes keeping its connected clients by id in broker.clients',
    lost: 'a message a connected session could not queue is still written to it, its stored copy missing',
  },
  'persistence-level.records': {
    relies: "aedes-persistence-level's records: outgoing:{clientId}:{brokerId}:{counter} and retained:{topic} keys, msgpack values",
    lost: 'what is stored already is counted wrong at start, so the session queue and retained bounds start off',
  },
} as const

export type PatchPoint = keyof typeof PATCH_POINTS

/** The points each logger was warned about already. */
const warned = new WeakMap<Logger, Set<PatchPoint>>()

/** Warns, once per logger and point, that the installed aedes no longer offers `point`, and what fnbus loses. */
export function patchPointMissing (logger: Logger, point: PatchPoint, details: object = {}): void {
  let seen = warned.get(logger)
  if (seen === undefined) {
    seen = new Set()
    warned.set(logger, seen)
  }
  if (seen.has(point)) return
  seen.add(point)
  const { relies, lost } = PATCH_POINTS[point]
  logger.warn({ patchPoint: point, ...details }, `aedes patch point ${point} is missing: fnbus relies on ${relies}; ${lost}`)
}

/** Warns (once) unless `owner[name]` is a function; true when it is. */
export function hasFunction (owner: object | null | undefined, name: string, logger: Logger, point: PatchPoint): boolean {
  if (typeof (owner as Record<string, unknown> | null | undefined)?.[name] === 'function') return true
  patchPointMissing(logger, point, { missing: name })
  return false
}
