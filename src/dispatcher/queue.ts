import { failure } from './outcome.js'
import { State, type FunctionEntry, type PendingCall } from './pending-call.js'
import type { Outcome, QueueOwner } from './types.js'

/** The bounds of the calls waiting for a worker (the dispatcher's options). */
export interface QueueBounds {
  /** Calls that may wait for a free worker, per function; one more is FNBUS_QUEUE_FULL. */
  readonly maxQueuedCalls: number
  /** Payload bytes of the calls waiting for a worker of one function. Default: no bound. */
  readonly maxQueuedBytes?: number
  /** Payload bytes of the calls one connection has waiting, all functions together. Default: no bound. */
  readonly maxQueuedBytesPerClient?: number
}

/**
 * Whether a call of `bytes` from `owner` may wait in `entry`'s queue: undefined when it may, else why not. A full
 * queue is shared fairly: a connection with fewer calls waiting there than the connection with the most pushes
 * that one's newest call out (`pushOut` settles it with FNBUS_QUEUE_FULL), so one caller cannot keep every other
 * one out.
 */
export function admitToQueue (entry: FunctionEntry, owner: QueueOwner | undefined, bytes: number, bounds: QueueBounds,
  pushOut: (call: PendingCall, outcome: Outcome) => void): string | undefined {
  const maxCalls = bounds.maxQueuedCalls
  const maxBytes = bounds.maxQueuedBytes ?? Infinity
  const name = entry.address.name
  if (owner !== undefined && owner.queuedBytes + bytes > (bounds.maxQueuedBytesPerClient ?? Infinity)) {
    return `the connection has ${owner.queuedBytes} bytes of calls waiting for workers (limits.maxQueuedBytesPerClient)`
  }
  if (bytes > maxBytes) return `a payload of ${bytes} bytes exceeds what may wait for ${name} (limits.maxQueuedBytes)`
  const full = (): boolean => entry.waiting >= maxCalls || entry.queuedBytes + bytes > maxBytes
  if (!full()) return undefined
  const why = entry.waiting >= maxCalls
    ? `${name} has ${entry.waiting} calls waiting for a worker (limits.maxQueuedCalls)`
    : `${name} has ${entry.queuedBytes} bytes of calls waiting for a worker (limits.maxQueuedBytes)`
  if (owner === undefined || maxCalls === 0) return why
  // the full path only: count the waiting calls per connection
  const counts = new Map<QueueOwner, number>()
  for (const call of entry.queue) {
    const o = call.state === State.Queued ? call.caller.owner : undefined
    if (o !== undefined) counts.set(o, (counts.get(o) ?? 0) + 1)
  }
  const mine = counts.get(owner) ?? 0
  while (full()) {
    let heaviest: QueueOwner | undefined
    let most = mine + 1
    for (const [o, n] of counts) if (n > most) { heaviest = o; most = n }
    if (heaviest === undefined) return why
    let newest: PendingCall | undefined
    for (const call of entry.queue) if (call.state === State.Queued && call.caller.owner === heaviest) newest = call
    if (newest === undefined) return why
    counts.set(heaviest, most - 1)
    pushOut(newest, failure('FNBUS_QUEUE_FULL', `${name}'s queue is full, and this connection had more calls waiting there than others (its fair share of limits.maxQueuedCalls)`))
  }
  return undefined
}

export function enqueue (entry: FunctionEntry, call: PendingCall, bytes: number): void {
  entry.queue.push(call)
  entry.waiting++
  entry.queuedBytes += bytes
  call.queuedBytes = bytes
  const owner = call.caller.owner
  if (owner !== undefined) {
    owner.queuedCalls++
    owner.queuedBytes += bytes
  }
}

/** The call leaves its function's queue (started or settled): its counts go. Before release(), which drops its caller. */
export function dequeued (call: PendingCall): void {
  const entry = call.entry
  entry.waiting--
  entry.queuedBytes -= call.queuedBytes
  const owner = call.caller.owner
  if (owner !== undefined) {
    owner.queuedCalls--
    owner.queuedBytes -= call.queuedBytes
  }
  call.queuedBytes = 0
}
