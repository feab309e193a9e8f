/**
 * A Bloom filter of the idempotency keys on disk. The SDK gives every Async call a key, so the idempotency check
 * sits on the hot path; almost every key is new, and a key the filter has never seen needs no disk read. "Maybe"
 * still reads the disk: a false positive costs a read, never a wrong answer. Expired keys stay in the filter
 * until the next sweep rebuilds it.
 */
export class KeyFilter {
  /** About 1% false positives. */
  static readonly BITS_PER_KEY = 9.6
  static readonly PROBES = 7
  static readonly MIN_KEYS = 65_536

  readonly #bits: Uint32Array
  readonly #size: number
  /** Keys it was sized for; past that the false-positive rate climbs and it should be rebuilt. */
  readonly capacity: number
  #added = 0

  constructor (capacity: number = KeyFilter.MIN_KEYS) {
    this.capacity = Math.max(KeyFilter.MIN_KEYS, Math.ceil(capacity))
    this.#size = Math.ceil(this.capacity * KeyFilter.BITS_PER_KEY)
    this.#bits = new Uint32Array(Math.ceil(this.#size / 32))
  }

  /** A filter with room to grow (twice what it holds now): the keys a sweep found plus those written meanwhile. */
  static of (found: KeyHashes, written: Iterable<string>): KeyFilter {
    let writtenCount = 0
    for (const _ of written) writtenCount++
    const filter = new KeyFilter(2 * (found.count + writtenCount))
    found.forEach((h1, h2) => filter.#addHashes(h1, h2))
    for (const key of written) filter.add(key)
    return filter
  }

  get full (): boolean {
    return this.#added > this.capacity
  }

  add (key: string): void {
    hash(key)
    this.#addHashes(lane1, lane2)
  }

  mightContain (key: string): boolean {
    hash(key)
    // double hashing (Kirsch–Mitzenmacher): PROBES positions from two 32-bit hashes
    for (let i = 0; i < KeyFilter.PROBES; i++) {
      const bit = ((lane1 + Math.imul(i, lane2)) >>> 0) % this.#size
      if ((this.#bits[bit >>> 5]! & (1 << (bit & 31))) === 0) return false
    }
    return true
  }

  #addHashes (h1: number, h2: number): void {
    for (let i = 0; i < KeyFilter.PROBES; i++) {
      const bit = ((h1 + Math.imul(i, h2)) >>> 0) % this.#size
      this.#bits[bit >>> 5]! |= 1 << (bit & 31)
    }
    this.#added++
  }
}

/** The hashes of many keys, 8 bytes each: a sweep over millions of keys does not hold their strings. */
export class KeyHashes {
  #data = new Uint32Array(2048)
  #length = 0

  get count (): number {
    return this.#length >>> 1
  }

  add (key: string): void {
    if (this.#length + 2 > this.#data.length) {
      const grown = new Uint32Array(this.#data.length * 2)
      grown.set(this.#data)
      this.#data = grown
    }
    hash(key)
    this.#data[this.#length++] = lane1
    this.#data[this.#length++] = lane2
  }

  forEach (visit: (h1: number, h2: number) => void): void {
    for (let i = 0; i < this.#length; i += 2) visit(this.#data[i]!, this.#data[i + 1]!)
  }
}

// The two 32-bit lanes of the last hash(): module state rather than a returned array, since it runs per append.
let lane1 = 0
let lane2 = 0

/** cyrb53's two lanes: fast, well mixed, not cryptographic (a crafted collision only costs a disk read). */
function hash (key: string): void {
  let h1 = 0xdeadbeef
  let h2 = 0x41c6ce57
  for (let i = 0; i < key.length; i++) {
    const ch = key.charCodeAt(i)
    h1 = Math.imul(h1 ^ ch, 2654435761)
    h2 = Math.imul(h2 ^ ch, 1597334677)
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507)
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507)
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  lane1 = h1 >>> 0
  // odd, so that the probe sequence visits distinct positions
  lane2 = (h2 | 1) >>> 0
}
