import { nanoid } from 'nanoid'
import { FnbusError } from '../errors.js'
import type {
  AppendOptions, AppendResult, DeadInvocation, FunctionCounts, InvocationError, InvocationStore, NewInvocation,
  StoredInvocation,
} from './types.js'

interface FunctionQueues {
  /** By seq; insertion order is seq order, since seqs only grow. */
  readonly pending: Map<number, StoredInvocation>
  readonly dead: Map<number, DeadInvocation>
}

/**
 * Stored invocations in memory, for `memory: true` gateways and tests: the same semantics as the LevelDB store
 * (answers come asynchronously, never within the call), nothing survives the process.
 */
export class MemoryInvocationStore implements InvocationStore {
  readonly #functions = new Map<string, FunctionQueues>()
  readonly #index = new Map<string, { fn: string, seq: number }>()
  readonly #keys = new Map<string, { id: string, exp: number }>()
  readonly #counts = new Map<string, { pending: number, dead: number }>()
  #nextSeq = 1

  async open (): Promise<void> {}

  async append (invocation: NewInvocation, options: AppendOptions): Promise<AppendResult> {
    await settled()
    const fn = invocation.fn
    const keyName = invocation.idempotencyKey === undefined ? undefined : `${fn}!${invocation.idempotencyKey}`
    if (keyName !== undefined) {
      const seen = this.#keys.get(keyName)
      if (seen !== undefined && seen.exp > invocation.createdAt) return { id: seen.id, duplicate: true }
    }
    const queues = this.#queues(fn)
    if (queues.pending.size >= options.maxStored) {
      throw new FnbusError('FNBUS_QUEUE_FULL', `${fn} has ${queues.pending.size} stored invocations (async.maxStored is ${options.maxStored})`)
    }
    const stored: StoredInvocation = { ...invocation, id: nanoid(), seq: this.#nextSeq++, attempts: 0, notBefore: 0 }
    queues.pending.set(stored.seq, stored)
    this.#index.set(stored.id, { fn, seq: stored.seq })
    if (keyName !== undefined) this.#keys.set(keyName, { id: stored.id, exp: invocation.createdAt + options.idempotencyWindowMs })
    return { id: stored.id, duplicate: false }
  }

  async readPending (fn: string, afterSeq: number, limit: number): Promise<StoredInvocation[]> {
    await settled()
    const out: StoredInvocation[] = []
    for (const invocation of this.#functions.get(fn)?.pending.values() ?? []) {
      if (invocation.seq <= afterSeq) continue
      out.push(invocation)
      if (out.length >= limit) break
    }
    return out
  }

  async get (id: string): ReturnType<InvocationStore['get']> {
    await settled()
    const entry = this.#index.get(id)
    const queues = entry === undefined ? undefined : this.#functions.get(entry.fn)
    if (entry === undefined || queues === undefined) return undefined
    const pending = queues.pending.get(entry.seq)
    if (pending !== undefined) return { state: 'pending', invocation: pending }
    const dead = queues.dead.get(entry.seq)
    return dead === undefined ? undefined : { state: 'dead', invocation: dead }
  }

  async complete (invocation: StoredInvocation): Promise<void> {
    await settled()
    if (this.#functions.get(invocation.fn)?.pending.delete(invocation.seq) === true) this.#index.delete(invocation.id)
  }

  async reschedule (invocation: StoredInvocation, error: InvocationError, notBefore: number): Promise<StoredInvocation> {
    await settled()
    const updated: StoredInvocation = { ...invocation, attempts: invocation.attempts + 1, notBefore, lastError: error }
    const pending = this.#functions.get(invocation.fn)?.pending
    if (pending?.has(invocation.seq) === true) pending.set(invocation.seq, updated)
    return updated
  }

  async deadLetter (invocation: StoredInvocation, error: InvocationError, diedAt: number, countAttempt: boolean): Promise<DeadInvocation> {
    await settled()
    const dead: DeadInvocation = { ...invocation, attempts: invocation.attempts + (countAttempt ? 1 : 0), notBefore: 0, lastError: error, diedAt }
    const queues = this.#queues(invocation.fn)
    if (queues.pending.delete(invocation.seq)) queues.dead.set(invocation.seq, dead)
    return dead
  }

  async remove (id: string): Promise<StoredInvocation | undefined> {
    await settled()
    const entry = this.#index.get(id)
    const pending = entry === undefined ? undefined : this.#functions.get(entry.fn)?.pending
    const invocation = entry === undefined ? undefined : pending?.get(entry.seq)
    if (entry === undefined || invocation === undefined) return undefined
    pending?.delete(entry.seq)
    this.#index.delete(id)
    return invocation
  }

  async listDead (fn: string | undefined, limit: number): Promise<DeadInvocation[]> {
    await settled()
    const all = [...this.#functions.entries()]
      .filter(([name]) => fn === undefined || name === fn)
      .flatMap(([, queues]) => [...queues.dead.values()])
    return all.sort((a, b) => a.seq - b.seq).slice(0, limit)
  }

  async revive (selector: { readonly id: string } | { readonly fn: string | undefined }): Promise<number> {
    await settled()
    const now = Date.now()
    const chosen = 'id' in selector
      ? [this.#index.get(selector.id)].filter(e => e !== undefined).map(e => this.#functions.get(e.fn)?.dead.get(e.seq)).filter(d => d !== undefined)
      : (await this.listDead(selector.fn, Infinity))
    for (const dead of chosen) {
      const queues = this.#queues(dead.fn)
      queues.dead.delete(dead.seq)
      const { diedAt: _diedAt, ...rest } = dead
      const revived: StoredInvocation = { ...rest, seq: this.#nextSeq++, attempts: 0, notBefore: 0, createdAt: now }
      queues.pending.set(revived.seq, revived)
      this.#index.set(revived.id, { fn: revived.fn, seq: revived.seq })
    }
    return chosen.length
  }

  async purgeDead (fn: string | undefined): Promise<number> {
    await settled()
    let purged = 0
    for (const [name, queues] of this.#functions) {
      if (fn !== undefined && name !== fn) continue
      for (const dead of queues.dead.values()) this.#index.delete(dead.id)
      purged += queues.dead.size
      queues.dead.clear()
    }
    return purged
  }

  counts (): ReadonlyMap<string, FunctionCounts> {
    this.#counts.clear()
    for (const [fn, queues] of this.#functions) {
      if (queues.pending.size > 0 || queues.dead.size > 0) this.#counts.set(fn, { pending: queues.pending.size, dead: queues.dead.size })
    }
    return this.#counts
  }

  async close (): Promise<void> {}

  #queues (fn: string): FunctionQueues {
    let queues = this.#functions.get(fn)
    if (queues === undefined) {
      queues = { pending: new Map(), dead: new Map() }
      this.#functions.set(fn, queues)
    }
    return queues
  }
}

/** Answers come on a later turn, as a real store's do, so callers cannot come to rely on synchronous effects. */
function settled (): Promise<void> {
  return new Promise(resolve => setImmediate(resolve))
}
