/**
 * Entries under integer ids that the table chooses: what the hot paths keep per call in flight (the dispatcher's
 * running calls, the SDK's requests and its handlers running) instead of a `Map<number, T>` or a `Set<T>` with an add
 * and a delete per call.
 *
 * Why not a Map: V8 rehashes a Map's or Set's backing table into a new one as entries come and go (when deleted
 * entries fill it, and on every delete that leaves it under half full), and the old table keeps its entries and a
 * link to its successor. With a steady churn of a few live entries, each table outlives a scavenge through the one
 * before it, is promoted to the old generation with every call it still names, and so is the next: dead calls
 * promoted by the thousand. Measured on in-process calls at 1 in flight: ~155 KB promoted per scavenge and ~14% of
 * the time in scavenges, all of it allocated by `Map.prototype.delete`.
 *
 * Here an id picks its slot by its low bits (`id & mask`); ids only grow, and an id whose slot is taken is skipped,
 * so an id is not reused before 2^32 − 1 more were handed out, and a stale one (a late reply) finds nothing. At most
 * half the slots are used: the table doubles before that, and doubling keeps every live id's slot distinct (the new
 * mask only adds a bit). Ids stay within 1..2^32 − 1, the bus protocol's range for request and delivery ids: after
 * the last one the next is 1 again (a process handing out 100,000 a second gets there after 12 hours).
 */
const MAX_ID = 0xffffffff

export class IdTable<T> {
  #entries: (T | undefined)[]
  #ids: Float64Array
  #mask: number
  #size = 0
  #nextId = 1

  /** `capacity`: slots to start with, a power of two; `firstId`: the first id handed out. */
  constructor (capacity = 64, firstId = 1) {
    if (!Number.isInteger(Math.log2(capacity)) || capacity < 2) throw new RangeError('IdTable capacity must be a power of two ≥ 2')
    this.#entries = new Array<T | undefined>(capacity).fill(undefined)
    this.#ids = new Float64Array(capacity)
    this.#mask = capacity - 1
    this.#nextId = firstId
  }

  get size (): number {
    return this.#size
  }

  /** Stores `entry` and returns its id: a positive integer this table never handed out before. */
  add (entry: T): number {
    if ((this.#size + 1) * 2 > this.#entries.length) this.#grow()
    const entries = this.#entries
    const mask = this.#mask
    let id = this.#nextId
    while (id > MAX_ID || entries[id & mask] !== undefined) id = id >= MAX_ID ? 1 : id + 1
    this.#nextId = id + 1
    const slot = id & mask
    entries[slot] = entry
    this.#ids[slot] = id
    this.#size++
    return id
  }

  get (id: number): T | undefined {
    const slot = id & this.#mask
    return this.#ids[slot] === id ? this.#entries[slot] : undefined
  }

  has (id: number): boolean {
    return this.get(id) !== undefined
  }

  /** Removes the entry of `id`; false when there is none. */
  delete (id: number): boolean {
    const slot = id & this.#mask
    if (this.#ids[slot] !== id || this.#entries[slot] === undefined) return false
    this.#entries[slot] = undefined
    this.#ids[slot] = 0
    this.#size--
    return true
  }

  /**
   * The entries in the order they were added (by id), as a Map would give them: a copy, so the table may change
   * while the caller goes through it. For the rare paths (a reconnection resending requests in the order they were
   * made, a lost worker, a drain): it sorts.
   */
  values (): T[] {
    const slots: number[] = []
    for (let slot = 0; slot < this.#entries.length; slot++) if (this.#entries[slot] !== undefined) slots.push(slot)
    const ids = this.#ids
    slots.sort((a, b) => (ids[a] as number) - (ids[b] as number))
    return slots.map(slot => this.#entries[slot] as T)
  }

  #grow (): void {
    const entries = this.#entries
    const ids = this.#ids
    const capacity = entries.length * 2
    this.#entries = new Array<T | undefined>(capacity).fill(undefined)
    this.#ids = new Float64Array(capacity)
    this.#mask = capacity - 1
    for (let slot = 0; slot < entries.length; slot++) {
      const entry = entries[slot]
      if (entry === undefined) continue
      const id = ids[slot] as number
      this.#entries[id & this.#mask] = entry
      this.#ids[id & this.#mask] = id
    }
  }
}
