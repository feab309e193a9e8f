import type { Aedes, Client as AedesClient } from 'aedes'
import type { NormalizedBusOptions } from '../options.js'
import type { GatewayEvents } from '../observations.js'
import { EventDelivery } from './event-delivery.js'
import { PersistenceBounds, type StoredRecords } from './persistence-bounds.js'

/** What the broker keeps for clients now: persistent sessions' queues and retained messages. */
export interface BrokerStorage {
  /** Persistent sessions with messages queued. */
  readonly sessions: number
  readonly queuedMessages: number
  /** Payload, topic and 128 bytes of record per message. */
  readonly queuedBytes: number
  readonly retainedMessages: number
  readonly retainedBytes: number
}

/**
 * Bounds what aedes holds for its clients beyond the bus: event messages waiting for a slow subscriber's socket
 * (memory), persistent sessions' queues and retained messages (the store). `records` is aedes-persistence-level's
 * sublevel, counted at start; undefined when aedes keeps its state in memory. Call before the listeners start.
 */
export async function boundClientState (
  aedes: Aedes,
  records: StoredRecords | undefined,
  { limits, logger }: Pick<NormalizedBusOptions, 'limits' | 'logger'>,
  events: GatewayEvents
): Promise<() => BrokerStorage> {
  const delivery = new EventDelivery(aedes, {
    maxBufferBytes: limits.maxEventBufferBytes,
    timeoutMs: limits.eventBufferTimeoutMs,
    logger,
    onDrop: (reason, clientId, topic) => {
      if (events.observed('messageDropped')) events.emit('messageDropped', { reason, clientId, topic })
    },
    onCut: clientId => {
      if (events.observed('connectionCut')) events.emit('connectionCut', { reason: 'slow_subscriber', clientId })
    },
  })
  const bounds = await PersistenceBounds.install(aedes, records, {
    limits,
    logger,
    onDrop: (reason, topic, clientId) => {
      if (events.observed('messageDropped')) events.emit('messageDropped', clientId === undefined ? { reason, topic } : { reason, topic, clientId })
    },
    onRefusedConnected: (client: AedesClient, brokerCounter: number) => delivery.refuse(client, brokerCounter),
  })
  return () => bounds.usage
}
