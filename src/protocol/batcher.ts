import { prepareEnvelope, SlabWriter, writePreparedEnvelope, type PreparedEnvelope } from './envelope-codec.js'
import type { Envelope } from './envelope.js'
import { PublishHeader } from './publish-frame.js'

/**
 * Where every batcher of the process writes its frames, one whole frame at a time (at flush), so one slab serves all
 * connections: an idle connection holds no buffer of its own.
 */
const frames = new SlabWriter()

/**
 * Envelopes that leave at once, before the tick ends. A caller with 64 calls in flight otherwise sends its whole
 * window as one message, and the window travels as one convoy: the gateway takes in all 64 before the worker sees
 * the first, the worker answers all 64 before the gateway sees one, and the processes take turns instead of working
 * side by side. Sent in two halves, one half is on its way while the other is still being read or answered. Measured
 * with Sync calls between processes, 64 in flight, alternating builds: 8 → 1.1×, 16 → 1.3×, 32 → 1.3–1.6× the rate
 * of one message per tick; 24 and 48 no better than 32. The same count as the store's early batches.
 */
const EARLY_FLUSH_ENVELOPES = 32

/**
 * Collects the envelopes one side sends to one topic during a tick and sends them as one MQTT message: the
 * protocol allows several envelopes per message from v1, and under load one frame (one syscall, one MQTT parse on
 * the far side) then carries many calls. A lone envelope still leaves on the same tick, so serial calls wait for
 * nothing; the 32nd leaves at once with those before it (EARLY_FLUSH_ENVELOPES).
 *
 * When they leave, the envelopes are encoded straight into the frame that carries them, behind room for the
 * PUBLISH header: a payload's bytes are copied once, from the message that brought them into the frame that takes
 * them on. What only msgpackr can encode (a nested `ctx`) is encoded when the envelope is added, so an envelope
 * that cannot be encoded is refused to its sender at once.
 */
export class EnvelopeBatcher {
  readonly #send: (frame: Buffer) => void
  readonly #maxBytes: () => number
  readonly #header: PublishHeader | undefined
  #envelopes: Envelope[] = []
  #prepared: PreparedEnvelope[] = []
  #scheduled = false

  /**
   * `send` gets each finished frame (a whole QoS 0 PUBLISH to `topic`; with `topic` null, the envelopes alone, as a
   * cluster's NATS message carries them); `maxBytes`: the size the envelopes of one message may reach before the rest
   * go in another.
   */
  constructor (topic: string | null, send: (frame: Buffer) => void, maxBytes: () => number) {
    this.#header = topic === null ? undefined : new PublishHeader(topic)
    this.#send = send
    this.#maxBytes = maxBytes
  }

  /** Queues `env` for the end of the tick; throws when it cannot be encoded (and then queues nothing). */
  add (env: Envelope): void {
    const prepared = prepareEnvelope(env)
    this.#envelopes.push(env)
    this.#prepared.push(prepared)
    if (this.#envelopes.length >= EARLY_FLUSH_ENVELOPES) this.flush()
    else if (!this.#scheduled) {
      this.#scheduled = true
      process.nextTick(flushAtTickEnd, this)
    }
  }

  /** Sends what was added so far, now: one frame, or several when they outgrow `maxBytes`. */
  flush (): void {
    const envelopes = this.#envelopes
    if (envelopes.length === 0) return
    const prepared = this.#prepared
    this.#envelopes = []
    this.#prepared = []
    const header = this.#header
    const reserve = header === undefined ? 0 : header.reserve
    const maxBytes = this.#maxBytes()
    frames.begin(reserve)
    let count = 0
    for (let i = 0; i < envelopes.length; i++) {
      // relative to the piece: writing may move the piece to a fresh slab
      const before = frames.length
      writePreparedEnvelope(frames, envelopes[i] as Envelope, prepared[i])
      count++
      if (count > 1 && frames.length - reserve > maxBytes) {
        // this one starts the next message: send the others, then move its bytes behind a fresh header's room
        const lastStart = frames.start + before
        const last = frames.buffer.subarray(lastStart, frames.pos)
        frames.pos = lastStart
        this.#send(header === undefined ? frames.finish() : header.frame(frames.finish()))
        frames.begin(reserve)
        frames.ensure(last.length)
        frames.pos += last.copy(frames.buffer, frames.pos)
        count = 1
      }
    }
    this.#send(header === undefined ? frames.finish() : header.frame(frames.finish()))
  }

  /** Forgets what was not sent (the connection it was for is gone). */
  clear (): void {
    this.#envelopes = []
    this.#prepared = []
  }

  tickEnded (): void {
    this.#scheduled = false
    this.flush()
  }
}

function flushAtTickEnd (batcher: EnvelopeBatcher): void {
  batcher.tickEnded()
}
