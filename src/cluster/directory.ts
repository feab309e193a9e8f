// What each gateway of a cluster tells the others on `PREFIX.dir`: the functions its own workers serve and how many
// calls each takes at once. Sent every heartbeat, at once when it changes, and when a gateway asks (after it joined
// or came back). One MessagePack map; everything that arrives is checked against the bounds below before use.
import { pack, unpackr } from '../protocol/codec.js'
import { parseFunctionName } from '../protocol/names.js'
import { TOKEN } from './cluster-config.js'

/** Functions one announcement may name: more are left out (and logged by the sender). */
export const MAX_ANNOUNCED_FUNCTIONS = 10_000
/** The most calls at once one gateway may announce for one function. */
export const MAX_ANNOUNCED_CONCURRENCY = 1_000_000

export interface Announcement {
  /** The gateway's name in the cluster. */
  readonly gateway: string
  /** This run of it: a gateway that restarts under the same name is another incarnation (its calls in flight are lost). */
  readonly incarnation: string
  /** Its heartbeat, ms: it has left once silent for three. */
  readonly heartbeatMs: number
  /** Function name → concurrency. */
  readonly functions: ReadonlyMap<string, number>
  /** It asks every other gateway to announce itself now (it joined, or came back). */
  readonly solicit: boolean
  /** It is leaving: its calls in flight are lost, it takes no more. */
  readonly leaving: boolean
}

export function encodeAnnouncement (a: Announcement): Buffer {
  return pack({ v: 1, g: a.gateway, i: a.incarnation, hb: a.heartbeatMs, f: [...a.functions], q: a.solicit ? 1 : undefined, bye: a.leaving ? 1 : undefined })
}

/** The announcement in `bytes`, or why it is not one (what a hostile or broken peer sends is dropped and counted). */
export function parseAnnouncement (bytes: Uint8Array): Announcement | string {
  let raw: unknown
  try {
    raw = unpackr.unpack(bytes)
  } catch {
    return 'not MessagePack'
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return 'not a map'
  const m = raw as Record<string, unknown>
  if (m.v !== 1) return `version ${String(m.v)}`
  if (typeof m.g !== 'string' || !TOKEN.test(m.g)) return 'bad gateway name'
  if (typeof m.i !== 'string' || !TOKEN.test(m.i)) return 'bad incarnation'
  if (typeof m.hb !== 'number' || !Number.isInteger(m.hb) || m.hb < 10 || m.hb > 600_000) return 'bad heartbeat'
  if (!Array.isArray(m.f) || m.f.length > MAX_ANNOUNCED_FUNCTIONS) return 'bad function list'
  const functions = new Map<string, number>()
  for (const item of m.f as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2) return 'bad function entry'
    const [name, concurrency] = item as [unknown, unknown]
    if (typeof concurrency !== 'number' || !Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_ANNOUNCED_CONCURRENCY) return 'bad concurrency'
    try {
      functions.set(parseFunctionName(name).name, concurrency)
    } catch {
      return 'bad function name'
    }
  }
  return { gateway: m.g, incarnation: m.i, heartbeatMs: m.hb, functions, solicit: m.q === 1, leaving: m.bye === 1 }
}
