// What the tests read of aedes beyond its declarations: the internals the gateway relies on (its patch points,
// held to the installed release by test/contract/aedes.test.js).
import type { AedesPublishPacket, Client as AedesClient } from 'aedes'

declare module 'aedes' {
  interface Aedes {
    /** The connected clients by id. */
    clients: Record<string, AedesClient | undefined>
    /** The persistence aedes was made with, as aedes calls it. */
    persistence: Record<string, any>
    /** The broker's id, which numbers its messages with `counter`. */
    id: string
    /** The number of the last message aedes numbered. */
    counter: number
    /** The router aedes hands each published message to. */
    mq: { emit (packet: AedesPublishPacket, done: (err?: Error) => void): unknown }
  }
  interface Client {
    /** How aedes hands this client a QoS 0 message, and a QoS 1 or 2 one. */
    deliver0 (packet: AedesPublishPacket, callback: (err?: Error) => void): void
    deliverQoS (packet: AedesPublishPacket, callback: (err?: Error) => void): void
    /** The client's subscriptions by topic filter. */
    subscriptions: Record<string, unknown>
  }
}
