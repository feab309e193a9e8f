import type { AbstractSublevel } from 'abstract-level'
import { nanoid } from 'nanoid'
import { paddedDecimal } from '../util/decimal.js'
import type { Database } from './database.js'

/** The sublevel of the gateway's database that holds the stored invocations, with the layout below. */
export type AsyncSublevel = AbstractSublevel<Database, string | Buffer | Uint8Array, string, Buffer>

/**
 * The key layout of the `async` sublevel, all in one place.
 *
 *     p!{fn}!{seq}   pending invocation (msgpack record)      seq: 16 digits, zero-padded, so key order is queue order
 *     d!{fn}!{seq}   dead invocation (record with its error)
 *     f!{fn}         the function's number (decimal), which invocation ids carry
 *     i!{id}         the key of the record of an invocation that moved from where its id says (revived), and of
 *                    every invocation stored before ids said where (the first layout indexed them all)
 *     k!{fn}!{key}   idempotency key (URI-encoded) → { id, exp }
 *     m!seq          seqs reserved through here (decimal): none up to it is handed out again after a restart
 *
 * An id is `{function number}.{seq}.{random}` (numbers in base 36): it names its record's key, so an append
 * writes no index entry and get(id) is one read. An index entry per invocation, with its random key, cost about
 * a third of the CPU of an append (LevelDB compacts random keys), measured here.
 *
 * `!` sorts below every character a function name may hold (`[A-Za-z0-9_/-]`, lowest `-`), and `"` right after
 * it, so `[p!S/fn1!, p!S/fn1")` holds exactly the keys of `S/fn1` and none of `S/fn10` (aedes-persistence-level's
 * prefix bug, docs/design.md pitfall 4). Names are validated before they reach a key.
 */
export const Keys = {
  pending: (fn: string, seq: number): string => `p!${fn}!${pad(seq)}`,
  pendingBetween: (fn: string, afterSeq: number, throughSeq: number): Range => ({ gt: `p!${fn}!${pad(afterSeq)}`, lte: `p!${fn}!${pad(throughSeq)}` }),
  allPending: { gt: 'p!', lt: 'p"' } satisfies Range,
  dead: (fn: string, seq: number): string => `d!${fn}!${pad(seq)}`,
  deadOf: (fn: string): Range => ({ gt: `d!${fn}!`, lt: `d!${fn}"` }),
  allDead: { gt: 'd!', lt: 'd"' } satisfies Range,
  function: (fn: string): string => `f!${fn}`,
  allFunctions: { gt: 'f!', lt: 'f"' } satisfies Range,
  index: (id: string): string => `i!${id}`,
  idempotency: (fn: string, key: string): string => `k!${fn}!${encodeURIComponent(key)}`,
  allIdempotency: { gt: 'k!', lt: 'k"' } satisfies Range,
  sequence: 'm!seq',
  /** `p!Service/function!0000000000000042` → `Service/function` */
  functionOf: (recordKey: string): string => recordKey.slice(2, recordKey.length - SEQ_DIGITS - 1),
  seqOf: (recordKey: string): number => Number(recordKey.slice(recordKey.length - SEQ_DIGITS)),
  isDead: (recordKey: string): boolean => recordKey.startsWith('d!'),
}

export type Range = { readonly gt: string, readonly lt: string } | { readonly gt: string, readonly lte: string }

/** Invocation ids: where the record was first stored, and enough randomness that ids cannot be guessed. */
export const Ids = {
  make: (functionNumber: number, seq: number): string => `${functionNumber.toString(36)}.${seq.toString(36)}.${nanoid(16)}`,
  parse (id: string): { readonly functionNumber: number, readonly seq: number } | undefined {
    const first = id.indexOf('.')
    const second = id.indexOf('.', first + 1)
    if (first < 0 || second < 0) return undefined
    const number = id.slice(0, first)
    const seq = id.slice(first + 1, second)
    if (!BASE36.test(number) || !BASE36.test(seq)) return undefined
    return { functionNumber: parseInt(number, 36), seq: parseInt(seq, 36) }
  },
  /** Whether the record of `id`, now at `seq`, needs an index entry to be found: revived, or an older id. */
  needsIndex (id: string, seq: number): boolean {
    return Ids.parse(id)?.seq !== seq
  },
}

/** Up to 10 digits: every such number is a safe integer. */
const BASE36 = /^[0-9a-z]{1,10}$/

/** Enough for every safe integer. */
export const SEQ_DIGITS = 16

function pad (seq: number): string {
  return paddedDecimal(seq, SEQ_DIGITS)
}

/** Records read or changed at a time by revive, purge and sweeps: memory stays bounded whatever the backlog. */
export const BULK = 1000
/** Keys a range scan asks the native iterator for at a time. */
export const SCAN_PAGE = 1024
