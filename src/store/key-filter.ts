import { createHash } from 'node:crypto'

/**
 * A Bloom filter of the idempotency keys on disk: an append whose key the filter has never seen skips the disk
 * read that would look it up (almost every append: callers' keys are new). "Maybe seen" still reads the disk, so
 * a false positive costs a read, never a wrong answer. Expired keys stay in the filter until it is rebuilt.
 */
export class KeyFilter {
  readonly #bits: Uint32Array
  readonly #size: number
  /** Keys it was sized for. */
  readonly capacity: number
  static readonly HASHES = 7

  /** Sized for `capacity` keys at about 1% false positives (9.6 bits a key). */
  constructor (capacity: number) {
    this.capacity = capacity
    this.#size = Math.max(1024, Math.ceil(capacity * 9.6))
    this.#bits = new Uint32Array(Math.ceil(this.#size / 32))
  }

  add (key: string): void {
    this.#forEachBit(key, bit => { this.#bits[bit >>> 5]! |= 1 << (bit & 31) })
  }

  mightContain (key: string): boolean {
    let all = true
    this.#forEachBit(key, bit => { if ((this.#bits[bit >>> 5]! & (1 << (bit & 31))) === 0) all = false })
    return all
  }

  /** Double hashing (Kirsch–Mitzenmacher): k bit positions from two 32-bit hashes of one digest. */
  #forEachBit (key: string, visit: (bit: number) => void): void {
    const digest = createHash('md5').update(key).digest()
    const h1 = digest.readUInt32LE(0)
    const h2 = digest.readUInt32LE(4) | 1
    for (let i = 0; i < KeyFilter.HASHES; i++) visit(((h1 + Math.imul(i, h2)) >>> 0) % this.#size)
  }
}
