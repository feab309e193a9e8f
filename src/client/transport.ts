import { FnbusError } from '../errors.js'
import type { Envelope, Welcome } from '../protocol/index.js'

/** What a transport tells the client it serves. */
export interface TransportListener {
  /** Connection `epoch` is up and its inbox subscribed: the session starts with a hello. */
  readonly subscribed: (epoch: number) => void
  /** Connection `epoch` dropped; `wasUp`: its session had been welcomed. */
  readonly closed: (epoch: number, wasUp: boolean) => void
  /** A message to the inbox (one or more envelopes, msgpack: the protocol's framing). */
  readonly inbox: (payload: Buffer) => void
  /** A message on any other topic: an event. */
  readonly message: (topic: string, payload: Buffer, packet: { readonly qos: number, readonly retain: boolean }) => void
  /** An error the transport met and recovers from (a dropped connection, say). It keeps reconnecting. */
  readonly warning: (err: unknown) => void
  /** The gateway refused the connection (credentials, client id): the transport stops reconnecting. */
  readonly refused: (err: FnbusError) => void
  /** A side message of a function thread's link (the direct path's grants: src/protocol/lease.ts). */
  readonly side?: (message: object) => void
}

/**
 * How a client reaches the gateway: the connection and its reconnections (each one an `epoch`), the session's state
 * (welcomed or not), bus envelopes out (`$fn/up`) and in (the inbox), and events published and subscribed.
 * FCClient, its caller's side and its worker's side see only this; which transport carries it (MQTT.js, say) is
 * picked when the client is made.
 */
export interface Transport {
  readonly clientId: string
  /** The gateway's address, for messages. */
  readonly url: string
  /** The current connection: counts connections since the start. */
  readonly epoch: number
  /** The gateway's welcome of the current session; undefined while there is none. */
  readonly welcome: Welcome | undefined
  /** The session of connection `epoch` is up (the gateway answered its hello); false if that connection is gone. */
  welcomed (env: Welcome, epoch: number): boolean
  /** Sends `env` to the gateway, batched with the others of this tick. */
  send (env: Envelope): void
  /** Sends the envelopes of this tick now. */
  flush (): void
  /** The session is over for good: nothing more is sent. */
  shutdown (): void
  /** Disconnects: `force` drops the connection at once, else what is written goes out first. */
  end (force: boolean): Promise<void>
  /** Publishes an event; FNBUS_DISCONNECTED when it could not go out. */
  publish (topic: string, bytes: Buffer, options: { readonly qos: 0 | 1 | 2, readonly retain: boolean }): Promise<void>
  /** Subscribes to events; FNBUS_NOT_AUTHORIZED when the gateway refuses the filter. */
  subscribe (filter: string, qos: 0 | 1 | 2): Promise<void>
  unsubscribe (filter: string): Promise<void>
  /** Posts a side message on the current connection when it is a function thread's link; else nothing. */
  postSide? (message: object): void
}

/** CONNACK return codes of MQTT 3.1.1 that refuse who the client is: identifier rejected, bad credentials, not authorized. */
const REFUSED_CONNACK_CODES: ReadonlySet<number> = new Set([2, 4, 5])

/**
 * A refused CONNECT (bad credentials, a client id that is not the identity's, anonymous not allowed) is final, as
 * FNBUS_NOT_AUTHORIZED, so that every call fails now instead of waiting for nothing; undefined for any other code
 * (server unavailable, say), which is retried.
 */
export function refusal (url: string, code: number, message: string, cause?: unknown): FnbusError | undefined {
  if (!REFUSED_CONNACK_CODES.has(code)) return undefined
  return new FnbusError('FNBUS_NOT_AUTHORIZED', `the gateway at ${url} refused the connection: ${message}`, cause === undefined ? undefined : { cause })
}
