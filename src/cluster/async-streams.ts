// Where a cluster keeps its Async invocations (docs/cluster.md#async): two JetStream streams. `PREFIX_ASYNC` holds the
// waiting ones, a subject per function, as a work queue: a message leaves it when a gateway acknowledges its
// delivery; each function's durable consumer hands each one to one gateway at a time, and again to another when that
// one dies (ack_wait). `PREFIX_DEAD` keeps the dead letters. What JetStream answers is mapped to fnbus' codes here.
import { AckPolicy, DiscardPolicy, RetentionPolicy, StorageType, type ConsumerConfig, type StreamConfig } from '@nats-io/jetstream'
import { FnbusError } from '../errors.js'

/** JetStream durations are nanoseconds. */
export const nanos = (ms: number): number => Math.round(ms * 1_000_000)

/** A function name as one NATS token and one consumer name: base64url of its UTF-8 (names may hold `.`). */
export function functionToken (fn: string): string {
  return Buffer.from(fn, 'utf8').toString('base64url')
}

export function functionOfToken (token: string): string | undefined {
  if (!/^[A-Za-z0-9_-]+$/.test(token)) return undefined
  return Buffer.from(token, 'base64url').toString('utf8')
}

/** The names a cluster's prefix gives its streams, subjects and consumers. */
export class AsyncNames {
  readonly pending: string
  readonly dead: string
  readonly #prefix: string

  constructor (prefix: string) {
    this.#prefix = prefix
    // upper case, as NATS names its own streams (and as the retained messages' stream is named: subjects.ts)
    const stream = prefix.toUpperCase()
    this.pending = `${stream}_ASYNC`
    this.dead = `${stream}_DEAD`
  }

  pendingSubject (fn: string): string {
    return `${this.#prefix}.async.${functionToken(fn)}`
  }

  deadSubject (fn: string): string {
    return `${this.#prefix}.dead.${functionToken(fn)}`
  }

  get allPending (): string {
    return `${this.#prefix}.async.>`
  }

  get allDead (): string {
    return `${this.#prefix}.dead.>`
  }

  /** The function of a subject of either stream; undefined for anything else. */
  functionOfSubject (subject: string): string | undefined {
    const parts = subject.split('.')
    if (parts.length !== 3 || parts[0] !== this.#prefix || (parts[1] !== 'async' && parts[1] !== 'dead')) return undefined
    return functionOfToken(parts[2] as string)
  }

  consumer (fn: string): string {
    return `${this.#prefix}-${functionToken(fn)}`
  }
}

/** What bounds the streams: the gateway's limits and the functions' Async options, as the standalone store has them. */
export interface AsyncBounds {
  readonly replicas: number
  /** Waiting invocations per function (the largest maxStored of the configured functions). */
  readonly maxStoredPerFunction: number
  /** Waiting invocations of all functions together (limits.maxStoredTotal); 0: no bound. */
  readonly maxStoredTotal: number
  /** How long idempotency keys are remembered (the longest idempotencyWindowMs). */
  readonly idempotencyWindowMs: number
  /** Dead letters kept per function; past it the oldest go. */
  readonly maxDeadPerFunction: number
}

export function pendingStream (names: AsyncNames, bounds: AsyncBounds): Partial<StreamConfig> & { name: string } {
  return {
    name: names.pending,
    subjects: [names.allPending],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    num_replicas: bounds.replicas,
    // full is full: a new invocation is refused (FNBUS_QUEUE_FULL), never an older one dropped
    discard: DiscardPolicy.New,
    discard_new_per_subject: true,
    max_msgs_per_subject: bounds.maxStoredPerFunction,
    max_msgs: bounds.maxStoredTotal > 0 ? bounds.maxStoredTotal : -1,
    duplicate_window: nanos(bounds.idempotencyWindowMs),
    allow_direct: true,
  }
}

export function deadStream (names: AsyncNames, bounds: AsyncBounds): Partial<StreamConfig> & { name: string } {
  return {
    name: names.dead,
    subjects: [names.allDead],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: bounds.replicas,
    discard: DiscardPolicy.Old,
    max_msgs_per_subject: bounds.maxDeadPerFunction,
    // a dead letter written twice (its gateway died between the write and the acknowledgement) is kept once
    duplicate_window: nanos(120_000),
    allow_direct: true,
  }
}

/** One function's durable consumer: every gateway with a worker of it pulls from the same one. */
export function functionConsumer (names: AsyncNames, fn: string, ackWaitMs: number): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: names.consumer(fn),
    filter_subject: names.pendingSubject(fn),
    ack_policy: AckPolicy.Explicit,
    // a gateway that dies with an invocation under way: another gets it once this passes
    ack_wait: nanos(ackWaitMs),
    max_deliver: -1,
    max_ack_pending: 10_000,
  }
}

/**
 * A JetStream failure as fnbus' error: a full stream is FNBUS_QUEUE_FULL (per subject: the function's bound; the whole
 * stream: maxStoredTotal); anything else, a 503 with no JetStream leader included, FNBUS_STORE_FAILURE (nothing was
 * acknowledged as stored).
 */
export function storeError (err: unknown, what: string): FnbusError {
  if (err instanceof FnbusError) return err
  const message = err instanceof Error ? err.message : String(err)
  if (/maximum messages per subject exceeded/i.test(message)) return new FnbusError('FNBUS_QUEUE_FULL', `${what}: the function has as many waiting invocations as the cluster keeps (async.maxStored)`)
  if (/maximum (messages|bytes) exceeded/i.test(message)) return new FnbusError('FNBUS_QUEUE_FULL', `${what}: the cluster keeps as many waiting invocations as it may (limits.maxStoredTotal)`)
  // nats.js reads a 503 on a publish as "jetstream is not enabled": it is the stream without a leader (seen while
  // the leader's node was killed and the others elected, ~5 s, in benchmarks/faults/cluster.js)
  if (/no responders|503|jetstream is not enabled/i.test(message)) return new FnbusError('FNBUS_STORE_FAILURE', `${what}: the cluster's JetStream does not answer (no leader yet, or not enough servers)`)
  return new FnbusError('FNBUS_STORE_FAILURE', `${what}: ${message}`)
}
