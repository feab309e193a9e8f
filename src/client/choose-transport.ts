import { createRequire } from 'node:module'
import type * as MqttTransportModule from './mqtt-transport.js'
import { SocketTransport } from './socket-transport.js'
import { isSocketUrl } from './streams.js'
import { findThreadLink } from './thread-link.js'
import type { Transport, TransportListener } from './transport.js'
import { DEFAULT_URL, type FCClientOptions } from './types.js'

/**
 * Which transport carries a client in Node: the socket transport (socket-transport.ts) for `mqtt:`, `tcp:`, `mqtts:`
 * and `mqtt+unix:` urls; MQTT.js for WebSocket urls and whenever the options pass MQTT.js options (`mqtt`), which
 * only it reads. MQTT.js is loaded then, and only then (a require of the ES module, synchronous: the client is made
 * in its constructor), so a process that never needs it never pays for it. In a function's thread, a client told no
 * address reaches its gateway through the thread's link (thread-link.ts), on the socket transport, without a socket.
 * The browser bundle replaces this module with one that always picks MQTT.js (scripts/build-browser.js).
 */
export function createTransport (options: FCClientOptions, listener: TransportListener): Transport {
  const link = options.url === undefined && options.mqtt === undefined ? findThreadLink() : undefined
  if (link !== undefined) return new SocketTransport(options, listener, undefined, link)
  const url = options.url ?? process.env.FNBUS_URL ?? DEFAULT_URL
  if (options.mqtt === undefined && isSocketUrl(url)) return new SocketTransport(options, listener)
  const { MqttTransport } = createRequire(import.meta.url)('./mqtt-transport.js') as typeof MqttTransportModule
  return new MqttTransport(options, listener)
}
