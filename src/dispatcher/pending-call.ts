import type { Timed } from '../util/deadlines.js'
import type { Fifo } from '../util/fifo.js'
import { Payload, type FunctionAddress, type InvocationType } from '../protocol/index.js'
import type { InvocationTally } from './tally.js'
import type { CallerPort, CallRequest, Delivery, WorkerPort, WorkSource } from './types.js'

/** One worker's registration for one function. */
export interface Slot {
  readonly worker: WorkerPort
  readonly entry: FunctionEntry
  concurrency: number
  inFlight: number
}

/** What the dispatcher knows of one function name: its workers, its waiting calls, its stored work, its tallies. */
export interface FunctionEntry {
  readonly address: FunctionAddress
  slots: Slot[]
  readonly queue: Fifo<PendingCall>
  /** Queued calls still waiting; the queue also holds settled ones, skipped when reached. */
  waiting: number
  /** Their payload bytes (as they came off the wire; an in-process value counts 0). */
  queuedBytes: number
  /** Round-robin cursor: where the next search for a free worker starts. */
  cursor: number
  /** Stored (Async) work of this function, pulled when no Sync call waits. */
  source: WorkSource | undefined
  /** Settled calls of each type, counted here rather than by a listener per call (see InvocationTally). */
  syncTally: InvocationTally
  asyncTally: InvocationTally
}

export const enum State { Queued, Running, Done }

/** What a finished call holds instead of its request and caller: nothing that keeps other objects alive. */
const RELEASED_CALLER: CallerPort = { alive: false, settle: () => {} }
const RELEASED_REQUEST: CallRequest = {
  fn: { serviceName: '', functionName: '', name: '' },
  type: 'Sync',
  payload: Payload.of(null),
  context: undefined,
  timeoutMs: undefined,
  waitForWorkerMs: undefined,
}

/** A call, from its arrival to its outcome; while it runs, it is also the Delivery its worker gets. */
export class PendingCall implements Timed, Delivery {
  deliveryId = 0
  state = State.Queued
  slot: Slot | undefined = undefined
  deadlineAt = 0
  deadlinePrev: Timed | undefined = undefined
  deadlineNext: Timed | undefined = undefined
  deadlineLane: Timed['deadlineLane'] = undefined
  /** Until when (the dispatcher's monotonic clock) the call waits for a first worker; 0 when it does not wait. */
  waitUntil = 0
  /** Payload bytes counted against its function's queue and its connection while it waits. */
  queuedBytes = 0
  /** Epoch ms, as the worker gets it (`dl`): set when the call is handed to one. */
  deadline = 0

  constructor (
    readonly entry: FunctionEntry,
    public request: CallRequest,
    public caller: CallerPort,
    readonly requestId: string,
    /** When the call times out, on the dispatcher's monotonic clock. */
    readonly expiresAt: number,
    /** The monotonic clock when the dispatcher took the call; 0 when it is not timed (see InvocationTally.timeCall). */
    readonly takenAt: number
  ) {}

  /**
   * Drops what the call held once it is done. A finished call may sit in V8's old space, dead but not yet collected,
   * for a while; whatever young objects it still pointed to (the caller's promise, the payload) would survive every
   * scavenge meanwhile and be promoted in turn. Measured: in-process calls at 64 in flight promoted half as much
   * and cost ~15% less CPU once finished calls let go.
   */
  release (): void {
    this.request = RELEASED_REQUEST
    this.caller = RELEASED_CALLER
  }

  get fn (): FunctionAddress { return this.entry.address }
  get type (): InvocationType { return this.request.type }
  get context (): Readonly<Record<string, unknown>> | undefined { return this.request.context }
  get payload (): Payload { return this.request.payload }
  get identity (): string | undefined { return this.request.identity }
}
