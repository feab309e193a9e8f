import { nanoid } from 'nanoid'
import { paddedDecimal } from '../util/decimal.js'

/**
 * Sync calls' request ids, 21 characters like the store's invocation ids: a random prefix per gateway run, then a
 * counter — unique without drawing random bytes per call.
 */
export class RequestIds {
  readonly #prefix = nanoid(11)
  #next = 0
  /** The prefix and the counter's digits above the last six, as one string: it changes every million calls. */
  #high = this.#prefix + '0000'

  next (): string {
    // decimal, the prefix and the high digits kept as one string; the low six without String(number) (see decimal.ts)
    const n = this.#next++
    const low = n % 1_000_000
    if (low === 0) this.#high = this.#prefix + String(n / 1_000_000).padStart(4, '0')
    return this.#high + paddedDecimal(low, 6)
  }
}
