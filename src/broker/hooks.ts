import type { Aedes, Client as AedesClient, PublishPacket } from 'aedes'
import { inboxTopic, isBusTopic } from '../protocol/index.js'
import type { Logger } from '../logger.js'
import type { GatewayEvents } from '../observations.js'
import { identityOf } from '../security/identity.js'
import type { BusContext } from './context.js'
import { handleBusMessage } from './handlers/index.js'
import { hasFunction, patchPointMissing } from './patch-points.js'

/**
 * Takes the `$fn/` namespace out of aedes' routing and puts the access checks on everything else. Each hook wraps
 * the one the application set, which keeps deciding for every other topic. These wrap what aedes looks up each time
 * it runs (see patch-points.ts); a hook the installed aedes does not have is warned about here, once.
 */
export function installHooks (ctx: BusContext): void {
  const { aedes, access } = ctx
  const logger = ctx.options.logger
  for (const hook of ['authorizePublish', 'publish', 'authorizeSubscribe', 'authorizeForward'] as const) {
    hasFunction(aedes, hook, logger, `aedes.${hook}`)
  }
  const hostAuthorizePublish = aedes.authorizePublish
  const hostAuthorizeSubscribe = aedes.authorizeSubscribe
  const hostAuthorizeForward = aedes.authorizeForward
  const route = aedes.publish
  /** Packets a hook let through only to be acknowledged: the publish wrapper routes them nowhere. */
  const dropped = new WeakSet<object>()
  const warnedDrops = new WeakSet<AedesClient>()

  aedes.authorizePublish = (client, packet, callback) => {
    if (!isBusTopic(packet.topic)) {
      const verdict = access.publish(client, packet)
      if (verdict.kind === 'close') {
        logger.warn({ client: client?.id, reason: verdict.error.message }, 'connection closed: PUBLISH over a limit')
        callback(verdict.error)
        return
      }
      if (verdict.kind === 'drop') {
        // once per connection at warn level: a client that keeps publishing where it may not must not flood the log
        const first = client === null || !warnedDrops.has(client)
        if (client !== null) warnedDrops.add(client)
        logger[first ? 'warn' : 'debug']({ client: client?.id, reason: verdict.reason }, 'PUBLISH not authorized: acknowledged, not routed')
        dropped.add(packet)
        callback(null)
        return
      }
      const tap = ctx.publishTap
      if (tap === undefined) {
        hostAuthorizePublish.call(aedes, client, packet, callback)
        return
      }
      hostAuthorizePublish.call(aedes, client, packet, (err?: Error | null) => {
        // the bridges' queues take a QoS 1 message before aedes writes its PUBACK (docs/bridge.md)
        const taken = err == null ? tap.beforeAck(client, packet) : undefined
        if (taken === undefined) callback(err ?? null)
        else taken.then(() => callback(null), (failed: unknown) => callback(failed as Error))
      })
      return
    }
    // A will on a $fn/ topic is published by a connection that is gone: there is no one to answer.
    if (client !== null && !client.closed) handleBusMessage(ctx, client, packet)
    // Never an error here: in MQTT 3.1.1 that closes the sender's connection (docs/design.md, pitfall 9).
    callback(null)
  }

  aedes.authorizeSubscribe = (client, subscription, callback) => {
    const topic = subscription.topic
    if (isBusTopic(topic) || topic.startsWith('$fn/')) {
      // a client may read its own inbox and nothing else of the bus; null answers SUBACK 0x80
      const own = topic === inboxTopic(client.id) && access.subscribe(client, topic).granted
      callback(null, own ? subscription : null)
      return
    }
    const decision = access.subscribe(client, topic)
    if (!decision.granted) {
      logger.warn({ client: client.id, reason: decision.reason }, 'subscription refused')
      callback(null, null)
      return
    }
    hostAuthorizeSubscribe.call(aedes, client, subscription, (err, granted) => {
      if (err != null || granted == null) access.released(client, [topic])
      callback(err, granted)
    })
  }
  aedes.on('unsubscribe', (filters: string[], client: AedesClient) => access.released(client, filters))

  // Every delivery, live, retained or queued for a persistent session, passes here: today's policy decides.
  aedes.authorizeForward = (client, packet) => {
    if (!access.mayDeliver(client, packet)) return null
    return hostAuthorizeForward.call(aedes, client, packet)
  }

  // Bus messages were answered in authorizePublish; they never reach topic matching, retained storage or
  // offline queues, so no subscriber (`#`, a persistent session) can ever see one.
  aedes.publish = function publish (this: Aedes, packet: PublishPacket, client: unknown, done?: unknown) {
    if (isBusTopic(packet.topic) || dropped.has(packet)) {
      const callback = typeof client === 'function' ? client : done
      if (typeof callback === 'function') callback()
      return
    }
    const tap = ctx.publishTap
    const taken = tap === undefined ? undefined : tap.routed(packet, typeof client === 'function' ? null : client as AedesClient | null)
    if (taken === undefined) return (route as (...args: unknown[]) => void).call(this, packet, client, done)
    taken.then(() => (route as (...args: unknown[]) => void).call(this, packet, client, done), (err: unknown) => {
      const callback = typeof client === 'function' ? client : done
      if (typeof callback === 'function') callback(err)
    })
  } as Aedes['publish']
}

/** CONNACK return codes of MQTT 3.1.1 ([MQTT-3.2.2.3]) as the reasons metrics count refusals by. */
const CONNACK_REASONS: Readonly<Record<number, string>> = {
  1: 'unacceptable_protocol_version',
  2: 'identifier_rejected',
  3: 'server_unavailable',
  4: 'bad_credentials',
  5: 'not_authorized',
}

/** Observations that come from aedes itself: connections, refusals, event traffic. */
export function installObservers (aedes: Aedes, events: GatewayEvents, logger: Logger): void {
  aedes.on('client', client => {
    if (events.observed('client')) events.emit('client', { clientId: client.id, identity: identityOf(client) })
  })
  aedes.on('clientDisconnect', client => {
    if (events.observed('clientDisconnect')) events.emit('clientDisconnect', { clientId: client.id, identity: identityOf(client) })
  })
  aedes.on('connackSent', (packet, client) => {
    const code = packet.returnCode ?? 0
    if (code !== 0 && events.observed('rejected')) events.emit('rejected', { reason: CONNACK_REASONS[code] ?? `connack_${code}`, clientId: client.id })
  })
  aedes.on('connectionError', (_client, err) => {
    if (events.observed('rejected')) events.emit('rejected', { reason: err.message.includes('did not arrive in time') ? 'connect_timeout' : 'protocol_error' })
  })
  aedes.on('publish', (packet, client) => {
    // Bus messages never get here: the publish wrapper swallows them. One that does went around the wrapper.
    if (isBusTopic(packet.topic)) patchPointMissing(logger, 'aedes.publish', { topic: packet.topic })
    // $SYS is the broker's own chatter, not events
    if (events.observed('eventMessage') && !packet.topic.startsWith('$SYS/')) events.emit('eventMessage', { direction: 'in', topic: packet.topic })
    void client
  })
  // authorizeForward runs once per subscriber an event is about to be written to: the point to count events out
  const hostAuthorizeForward = aedes.authorizeForward
  aedes.authorizeForward = function authorizeForward (this: Aedes, client, packet) {
    const forwarded = hostAuthorizeForward.call(this, client, packet)
    if (forwarded != null && events.observed('eventMessage') && !packet.topic.startsWith('$SYS/')) {
      events.emit('eventMessage', { direction: 'out', topic: packet.topic })
    }
    return forwarded
  }
}
