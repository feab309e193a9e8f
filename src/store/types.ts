import type { PayloadKind } from '../protocol/index.js'

/** The last failure of a stored invocation, as plain data. */
export interface InvocationError {
  readonly code: string
  readonly message: string
}

/** What a caller's Async call stores. */
export interface NewInvocation {
  /** `Service/function`. */
  readonly fn: string
  readonly payloadKind: PayloadKind
  readonly payload: Buffer
  readonly context?: Readonly<Record<string, unknown>>
  /** Caller-supplied: a second append with the same key for the same function within the window returns the first id. */
  readonly idempotencyKey?: string
  /** Epoch ms when the gateway accepted it; `maxEventAge` counts from here. */
  readonly createdAt: number
  /** Who made it (an identity, `$anonymous`, `$gateway`): the one caller that may cancel it besides operators. */
  readonly caller?: string
}

/** An invocation waiting for delivery (or being delivered: the store does not know, the gateway does). */
export interface StoredInvocation extends NewInvocation {
  /** The invocation id the caller got (`context.requestId` for the function). */
  readonly id: string
  /**
   * Position in the store: a persistent, strictly increasing sequence shared by all functions (never reused,
   * never reset by a restart). Pending invocations of a function are read in `seq` order.
   */
  readonly seq: number
  /** Failed deliveries so far. */
  readonly attempts: number
  /** Epoch ms before which it must not be delivered (retry backoff); 0 when ready. */
  readonly notBefore: number
  readonly lastError?: InvocationError
}

/** An invocation that exhausted its retries or aged out, kept with its last error. */
export interface DeadInvocation extends StoredInvocation {
  readonly lastError: InvocationError
  readonly diedAt: number
}

export interface AppendOptions {
  /** Pending invocations the function may have; one more is FNBUS_QUEUE_FULL. */
  readonly maxStored: number
  /** How long an idempotency key is remembered, ms. */
  readonly idempotencyWindowMs: number
}

export interface AppendResult {
  readonly id: string
  /** True when the idempotency key was seen within the window: nothing new was stored, `id` is the first one. */
  readonly duplicate: boolean
}

export interface FunctionCounts {
  /** Stored and not dead: waiting, in backoff, or being delivered. */
  readonly pending: number
  readonly dead: number
}

/**
 * Durable storage of Async invocations. Every method that changes state resolves only after the change is
 * durable (one atomic batch per change; concurrent changes are group-committed), and rejects with
 * FNBUS_STORE_FAILURE when the write failed — nothing is acknowledged early.
 *
 * Implementations: `LevelInvocationStore` (the gateway's LevelDB) and `MemoryInvocationStore`. Both pass the
 * abstract suite in `test/store/invocation-store.suite.js`.
 */
export interface InvocationStore {
  /** Loads what the store needs in memory (counters, the sequence). Called once before anything else. */
  open (): Promise<void>

  /**
   * Stores a new invocation. Rejects FNBUS_QUEUE_FULL when the function already has `maxStored` pending.
   * With an idempotency key already used for this function within the window, stores nothing and returns the
   * first invocation's id with `duplicate: true`.
   */
  append (invocation: NewInvocation, options: AppendOptions): Promise<AppendResult>

  /** Up to `limit` pending invocations of `fn` with `seq > afterSeq`, in `seq` order, read from disk. */
  readPending (fn: string, afterSeq: number, limit: number): Promise<StoredInvocation[]>

  /** A pending or dead invocation by id. */
  get (id: string): Promise<{ readonly state: 'pending', readonly invocation: StoredInvocation } | { readonly state: 'dead', readonly invocation: DeadInvocation } | undefined>

  /**
   * Delivered successfully: forgets it (its idempotency key stays until the window ends).
   *
   * complete, reschedule and deadLetter take an invocation the caller read from the store and still holds (not
   * removed since), and write without reading it again. A remove() of the same id under way is the exception the
   * stores handle: the change waits for it and does nothing if the invocation is gone.
   */
  complete (invocation: StoredInvocation): Promise<void>

  /** Failed with retries left: same `seq`, `attempts + 1`, the error, and when it may be delivered again. */
  reschedule (invocation: StoredInvocation, error: InvocationError, notBefore: number): Promise<StoredInvocation>

  /** Moves it to the dead-letter set, with `attempts + 1` when `countAttempt`. */
  deadLetter (invocation: StoredInvocation, error: InvocationError, diedAt: number, countAttempt: boolean): Promise<DeadInvocation>

  /** Removes a pending invocation (cancel). Resolves with it, or undefined when no pending one has that id. */
  remove (id: string): Promise<StoredInvocation | undefined>

  /** Dead invocations, oldest first (by `seq`), of one function or all; at most `limit`. */
  listDead (fn: string | undefined, limit: number): Promise<DeadInvocation[]>

  /**
   * Moves dead invocations back to pending, at the end of their function's queue (a new `seq`), with
   * `attempts` reset to 0, no `notBefore`, and `createdAt` set to now (so that maxEventAge does not dead-letter
   * it again at once; `lastError` stays). `maxStored` does not apply. One by id, or every one of `fn` (all
   * functions when undefined). Resolves with how many moved.
   */
  revive (selector: { readonly id: string } | { readonly fn: string | undefined }): Promise<number>

  /** Deletes dead invocations of `fn` (all functions when undefined). Resolves with how many. */
  purgeDead (fn: string | undefined): Promise<number>

  /** Per function with anything stored. Kept in memory: cheap to call. */
  counts (): ReadonlyMap<string, FunctionCounts>

  /**
   * Calls `listener` each time the store has recovered from a failed write (a store on a database that reopens
   * after one): a write reported failed may have reached the disk after all, so whoever reads pending
   * invocations reads them again from the start. Optional: a store that cannot fail that way has none.
   */
  onRecovered? (listener: () => void): void

  close (): Promise<void>
}
