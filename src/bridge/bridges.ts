// The gateway's bridges: started with it, each fed every ordinary local message through the bus's publish tap
// (src/broker/context.ts), closed with it. Loaded only when the configuration has bridges (src/gateway.ts), and MQTT.js
// with it.
import type { Aedes, Client as AedesClient, PublishPacket } from 'aedes'
import type { FunctionBus } from '../broker/function-bus.js'
import type { Database } from '../store/database.js'
import { Bridge } from './bridge.js'
import { resolveBridges, type BridgeConfig } from './bridge-config.js'
import { QueueDisk } from './queue-disk.js'
import type { BridgeStatus } from './status.js'

export interface BridgesOptions {
  readonly aedes: Aedes
  readonly bus: FunctionBus
  /** Undefined: the queues live in memory. */
  readonly db: Database | undefined
  /** fsync the queues' writes (the gateway's `fsync`). */
  readonly sync: boolean
  readonly env?: NodeJS.ProcessEnv
}

export class Bridges {
  readonly #bridges: Bridge[]
  /** Packets a bridge published locally, by that bridge: never sent back out through it. */
  readonly #inbound: WeakMap<object, Bridge>
  /** Packets the bridges took before their PUBACK: not offered again when aedes routes them. */
  readonly #taken = new WeakSet<object>()
  #untap: (() => void) | undefined

  private constructor (bridges: Bridge[], inbound: WeakMap<object, Bridge>) {
    this.#bridges = bridges
    this.#inbound = inbound
  }

  /** Starts the bridges; a configuration problem throws before anything connects. */
  static async start (configs: readonly BridgeConfig[], options: BridgesOptions): Promise<Bridges> {
    const resolved = resolveBridges(configs, options.env)
    const { aedes, bus, db } = options
    const inbound = new WeakMap<object, Bridge>()
    const logger = bus.options.logger
    const bridges = resolved.map(config => {
      const disk = db === undefined ? undefined : new QueueDisk(db, config.name, options.sync)
      if (disk !== undefined) disk.onError = err => logger.error({ err, bridge: config.name }, 'bridge: acknowledged messages could not be removed from disk; they are sent again after a restart')
      return new Bridge(config, { aedes, limits: bus.options.limits, policy: bus.options.policy, logger, disk, markInbound: (packet, bridge) => inbound.set(packet, bridge) })
    })
    const started = new Bridges(bridges, inbound)
    // the queues are open before the first message can reach them
    try {
      await Promise.all(bridges.map(bridge => bridge.start()))
    } catch (err) {
      await started.close()
      throw err
    }
    started.#untap = bus.addPublishTap({
      beforeAck: (_client: AedesClient | null, packet: PublishPacket) => {
        if (packet.qos === 0) return undefined
        started.#taken.add(packet)
        return started.#offer(packet)
      },
      routed: (packet: PublishPacket) => {
        if (started.#taken.has(packet)) return undefined
        const durable = started.#offer(packet)
        if (packet.qos !== 0) return durable
        // a QoS 0 message is not held back for the queues (nobody is acknowledged for it); a failed write is logged
        durable?.catch(() => {})
        return undefined
      },
    })
    return started
  }

  #offer (packet: PublishPacket): Promise<void> | undefined {
    const origin = this.#inbound.get(packet)
    let waits: Promise<void>[] | undefined
    for (const bridge of this.#bridges) {
      if (bridge === origin) continue
      const durable = bridge.offer(packet)
      if (durable !== undefined) (waits ??= []).push(durable)
    }
    if (waits === undefined) return undefined
    return waits.length === 1 ? waits[0] : Promise.all(waits).then(() => undefined)
  }

  status (): BridgeStatus[] {
    return this.#bridges.map(bridge => bridge.status())
  }

  async close (): Promise<void> {
    this.#untap?.()
    this.#untap = undefined
    await Promise.all(this.#bridges.map(bridge => bridge.close()))
  }
}
