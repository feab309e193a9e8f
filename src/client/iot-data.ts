import type { FnbusError } from '../errors.js'
import { FCClient, type FCClientOptions } from './fc-client.js'

export interface IoTDataPublishParams {
  readonly topic: string
  readonly payload: unknown
  readonly qos?: 0 | 1 | 2
  readonly retain?: boolean
}

/** Link IoT Edge's `IoTData`: publishes events. Returns a promise when no callback is given. */
export class IoTData {
  readonly #client: FCClient

  constructor (options?: FCClientOptions | FCClient) {
    this.#client = options instanceof FCClient ? options : new FCClient(options)
  }

  publish (params: IoTDataPublishParams): Promise<void>
  publish (params: IoTDataPublishParams, callback: (err: FnbusError | null) => void): void
  publish (params: IoTDataPublishParams, callback?: (err: FnbusError | null) => void): Promise<void> | void {
    const done = this.#client.publish(params.topic, params.payload, { qos: params.qos, retain: params.retain })
    if (callback === undefined) return done
    done.then(() => callback(null), (err: FnbusError) => callback(err))
  }

  close (): Promise<void> {
    return this.#client.close()
  }
}
