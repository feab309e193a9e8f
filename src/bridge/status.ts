// What status, `/api/status`, the metrics and the dashboard show of each bridge (docs/bridge.md#operations).

/** Why messages left a bridge's queue, or never entered it, without reaching the remote broker. */
export type BridgeDropReason = 'maxMessages' | 'maxBytes' | 'maxAgeMs' | 'offline'

/** Why inbound messages were not published locally. */
export type BridgeInboundDropReason = 'policy' | 'limits' | 'unmatched'

export interface BridgeStatus {
  readonly name: string
  /** The remote broker's url, without credentials. */
  readonly url: string
  readonly connected: boolean
  /** `connected`, `connecting`, `waiting` (for the next attempt, after a failure) or `closed`. */
  readonly state: string
  /** What went wrong last (`refused_bad_credentials`, `unreachable`, `keeps_dropping`, …), if anything did. */
  readonly lastFailure: string | undefined
  readonly lastError: string | undefined
  /** Epoch ms of the last connection made. */
  readonly lastConnectedAt: number | undefined
  /** Connections made, and attempts or connections that failed, since the start. */
  readonly connects: number
  readonly failures: number
  /** Outbound QoS 1 messages waiting for the remote broker's PUBACK (on disk with a data directory). */
  readonly queuedMessages: number
  readonly queuedBytes: number
  /** Outbound messages the remote broker took (QoS 1: acknowledged; QoS 0: written). */
  readonly sent: number
  /** Outbound messages dropped, by reason. */
  readonly dropped: Readonly<Record<BridgeDropReason, number>>
  /** Inbound messages published locally. */
  readonly received: number
  /** Inbound messages not published locally, by reason. */
  readonly receivedDropped: Readonly<Record<BridgeInboundDropReason, number>>
}
