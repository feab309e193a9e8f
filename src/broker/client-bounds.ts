import type { Aedes } from 'aedes'
import type { NormalizedBusOptions } from '../options.js'
import type { GatewayEvents } from '../plugins.js'
import { EventDelivery } from './event-delivery.js'

/**
 * Bounds what aedes holds for its clients beyond the bus: event messages waiting for a slow subscriber's socket.
 * Call before the listeners start.
 */
export function boundClientState (aedes: Aedes, { limits, logger }: Pick<NormalizedBusOptions, 'limits' | 'logger'>, events: GatewayEvents): void {
  new EventDelivery(aedes, {
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
}
