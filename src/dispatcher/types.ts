import type { TransferListItem } from 'node:worker_threads'
import type { FnbusError } from '../errors.js'
import type { FunctionAddress, FunctionErrorKind, InvocationType, Payload } from '../protocol/index.js'

/** What a caller gets back: the function's answer (possibly a function error), or a bus error. */
export type Outcome =
  | { readonly ok: true, readonly functionError?: FunctionErrorKind, readonly payload: Payload }
  | { readonly ok: false, readonly error: FnbusError }

/**
 * Whom queued calls are counted against: a connection. A function's queue is shared fairly between owners, and
 * each owner's queued calls and bytes are bounded across all functions. The dispatcher keeps the two counts.
 */
export interface QueueOwner {
  queuedCalls: number
  queuedBytes: number
  /** Where a function thread's connection takes direct-path grants (leases.ts); undefined for any other. */
  readonly leaseLink?: LeaseLink
}

/** The side channel of a function thread's connection to the gateway (src/util/port-duplex.ts). */
export interface LeaseLink {
  postSide (message: object, transfer?: readonly TransferListItem[]): void
}

/** The side waiting for an answer: a remote session or an in-process promise. */
export interface CallerPort {
  /** Who calls, for the debug log: a client id, or `in-process`. */
  readonly label?: string
  /** False once the caller is gone: its queued calls are skipped and late answers dropped. */
  readonly alive: boolean
  /** The connection the call came from; in-process calls have none (the gateway's own code is not bounded). */
  readonly owner?: QueueOwner
  settle (outcome: Outcome): void
}

/** One invocation handed to one worker. */
export interface Delivery {
  /** The gateway's id for this hand-over; the worker answers with it. */
  readonly deliveryId: number
  readonly fn: FunctionAddress
  readonly type: InvocationType
  /** The invocation's id as the function sees it (`context.requestId`). */
  readonly requestId: string
  /** Epoch ms: what the worker is told (`dl`). */
  readonly deadline: number
  /** The same instant on the dispatcher's monotonic clock (`Dispatcher.clock`). */
  readonly expiresAt: number
  readonly context: Readonly<Record<string, unknown>> | undefined
  readonly payload: Payload
  /** Whom the call is made as (CallRequest.identity): a cluster's peer gateway checks it again (src/cluster/). */
  readonly identity: string | undefined
}

/** The side that runs invocations: a remote session or an in-process handler. */
export interface WorkerPort {
  /** For logs and status: a client id, or `local`. */
  readonly label: string
  /** True while the worker cannot take more (its connection's unread output is high); the dispatcher skips it. */
  readonly congested?: boolean
  /** Where a function thread's connection takes direct-path work (leases.ts); undefined for any other. */
  readonly leaseLink?: LeaseLink
  /** Another gateway of the cluster (src/cluster/): it gets a call only when no worker of this gateway has room. */
  readonly remote?: boolean
  deliver (delivery: Delivery): void
}

export interface CallRequest {
  readonly fn: FunctionAddress
  readonly type: InvocationType
  readonly payload: Payload
  readonly context: Readonly<Record<string, unknown>> | undefined
  /** ms; the dispatcher's default when undefined. */
  readonly timeoutMs: number | undefined
  /** ms to wait for a first worker instead of failing at once; 0 or undefined: don't wait. */
  readonly waitForWorkerMs: number | undefined
  /** Whom the call is made as (the connection's identity, or one an in-process caller names): for observations. */
  readonly identity?: string
  /** Came from another gateway of the cluster: only this gateway's workers run it (a call crosses the cluster once). */
  readonly localOnly?: boolean
}

/** One piece of stored work, ready to run now. */
export interface Work {
  readonly request: CallRequest
  readonly caller: CallerPort
  readonly requestId: string
  /** ms; the function's or the default timeout when undefined. */
  readonly timeoutMs: number | undefined
}

/** Where the dispatcher pulls stored (Async) work of one function from; `next()` must answer synchronously. */
export interface WorkSource {
  next (): Work | undefined
  /** The function has no worker left: let go of what is kept in memory, if nothing is under way. True when it did. */
  release? (): boolean
  /** Work is ready to run now (read, or due after its backoff): no worker's slots are leased away meanwhile. */
  readonly waiting?: boolean
  /** Its work runs on this gateway's workers only (a cluster's: each gateway pulls for its own workers). */
  readonly localOnly?: boolean
}
