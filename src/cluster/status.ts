import type { LatencyHistogram } from './call-times.js'
import type { ClusterStoreStatus } from './cluster-async.js'
import type { ClusterEventsStatus } from './events.js'

/** What status, `/api/status`, metrics and the dashboard show of a gateway's cluster (docs/cluster.md#operations). */
export interface ClusterStatus {
  /** This gateway's name in the cluster. */
  readonly name: string
  /** `connecting`: NATS not reached yet; `reconnecting`: lost, coming back; `closed`: the gateway is closing. */
  readonly state: 'connecting' | 'connected' | 'reconnecting' | 'closed'
  /** Epoch ms of the last change of state. */
  readonly since: number
  /** The NATS server it is connected to. */
  readonly server: string | undefined
  /** Why the last attempt to connect failed, while not connected. */
  readonly lastError: string | undefined
  /** The other gateways, by name. */
  readonly members: readonly ClusterMemberStatus[]
  /** Where the cluster's Async invocations are: JetStream's streams, once they answer. */
  readonly store: ClusterStoreStatus
  /** Events across gateways (docs/cluster.md#events); undefined until NATS first answered. */
  readonly events: ClusterEventsStatus | undefined
  /** Messages from peers dropped: malformed, from no known gateway, over a bound. */
  readonly dropped: number
}

export interface ClusterMemberStatus {
  readonly name: string
  /** The functions its own workers serve. */
  readonly functions: readonly string[]
  /** Since its last announcement, ms. */
  readonly lastSeenMs: number
  /** Calls this gateway sent it and it answered; calls it sent here; batches NATS refused. */
  readonly calls: { readonly sent: number, readonly answered: number, readonly served: number, readonly unsent: number }
  /** Round trips of the calls this gateway handed it, from the hand-over to the answer. */
  readonly latency: LatencyHistogram
  /** Its calls running or waiting here now. */
  readonly inFlight: number
}
