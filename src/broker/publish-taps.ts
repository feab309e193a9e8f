import type { Client as AedesClient, PublishPacket } from 'aedes'
import type { PublishTap } from './context.js'

/**
 * One tap that asks each of `taps` in turn (the bridges, the cluster's events): a message is held back until every
 * promise they return settles, and refused when one rejects. A single tap is returned as it is, none as undefined,
 * so that a gateway with one or no tap pays nothing for the combining.
 */
export function combineTaps (taps: readonly PublishTap[]): PublishTap | undefined {
  if (taps.length <= 1) return taps[0]
  const all = [...taps]
  return {
    beforeAck: (client: AedesClient | null, packet: PublishPacket) => joined(all.map(tap => tap.beforeAck(client, packet))),
    routed: (packet: PublishPacket, client: AedesClient | null) => joined(all.map(tap => tap.routed(packet, client))),
  }
}

function joined (waits: readonly (Promise<void> | undefined)[]): Promise<void> | undefined {
  const pending = waits.filter((wait): wait is Promise<void> => wait !== undefined)
  if (pending.length === 0) return undefined
  return pending.length === 1 ? pending[0] : Promise.all(pending).then(() => undefined)
}
