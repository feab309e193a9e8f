/**
 * A FIFO queue with O(1) push and shift: `Array#shift` is O(n), which a long queue of waiting calls would feel.
 */
export class Fifo<T> {
  #items: (T | undefined)[] = []
  #head = 0

  get length (): number {
    return this.#items.length - this.#head
  }

  push (item: T): void {
    this.#items.push(item)
  }

  peek (): T | undefined {
    return this.#items[this.#head]
  }

  /** The item `index` places from the oldest (0: the one `peek` returns). */
  at (index: number): T | undefined {
    return index < 0 ? undefined : this.#items[this.#head + index]
  }

  shift (): T | undefined {
    if (this.#head >= this.#items.length) return undefined
    const item = this.#items[this.#head]
    this.#items[this.#head++] = undefined
    // compact once the dead prefix dominates, so memory follows the live length
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return item
  }

  /** Keeps the items `keep` accepts, in order. */
  retain (keep: (item: T) => boolean): void {
    const kept: T[] = []
    for (let i = this.#head; i < this.#items.length; i++) {
      const item = this.#items[i] as T
      if (keep(item)) kept.push(item)
    }
    this.#items = kept
    this.#head = 0
  }

  * [Symbol.iterator] (): IterableIterator<T> {
    for (let i = this.#head; i < this.#items.length; i++) yield this.#items[i] as T
  }
}
