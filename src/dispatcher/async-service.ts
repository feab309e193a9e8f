import type { FunctionAddress, Payload } from '../protocol/index.js'
import type { DeadInvocation } from '../store/types.js'
import type { AsyncFunctionOptions } from './async-options.js'

export interface QueueStats {
  readonly fn: string
  /** Stored, not dead: waiting, in backoff or being delivered. */
  readonly pending: number
  readonly inFlight: number
  readonly dead: number
  /** Neither configured nor ever served since the gateway started: its invocations may wait for a worker that never comes. */
  readonly unknown?: true
}

/**
 * What the bus asks of whatever stores and delivers Async invocations: the gateway's own engine over its store
 * (AsyncEngine), or a cluster's, over JetStream (src/cluster/cluster-async.ts). Both keep the same promises:
 * accepted only once durable, retries with backoff, maxEventAge, dead letters, destinations, idempotency keys.
 */
export interface AsyncService {
  /** The store is open: deliveries may begin. */
  start (): void
  /** `name` is a function of the configuration: its stored invocations wait for a worker on purpose. */
  declare (name: string): void
  /** A worker of this gateway registered for `fn`. */
  served (fn: FunctionAddress): void
  configure (fn: string, options: Partial<AsyncFunctionOptions>): void
  options (fn: string): AsyncFunctionOptions
  /** Resolves with the invocation's id once it is durable. `caller` scopes the idempotency key. */
  accept (fn: FunctionAddress, payload: Payload, context: Readonly<Record<string, unknown>> | undefined,
    idempotencyKey: string | undefined, caller: string): Promise<{ readonly invocationId: string, readonly duplicate: boolean }>
  /** The function a stored invocation (waiting or dead) belongs to. */
  functionOf (id: string): Promise<string | undefined>
  /** Its function and who made it. */
  ownerOf (id: string): Promise<{ readonly fn: string, readonly caller: string | undefined } | undefined>
  /** Cancels a waiting invocation. */
  cancel (id: string): Promise<void>
  queueStats (fn?: string): QueueStats[]
  listDead (fn: string | undefined, limit: number): Promise<DeadInvocation[]>
  /** Sends dead invocations back to their queue; resolves with how many. */
  revive (selector: { readonly id: string } | { readonly fn: string | undefined }, resolveAddress: (name: string) => FunctionAddress): Promise<number>
  purgeDead (fn: string | undefined): Promise<number>
  /** Takes no new invocations; those the shutdown interrupts stay stored. */
  shutDown (): void
  close (): Promise<void>
}
