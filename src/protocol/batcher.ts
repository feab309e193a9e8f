import { SlabWriter, writeEnvelope } from './envelope-codec.js'
import type { Envelope } from './envelope.js'
import { PublishHeader } from './publish-frame.js'

/**
 * Collects the envelopes one side sends to one topic during a tick and sends them as one MQTT message: the
 * protocol allows several envelopes per message from v1, and under load one frame (one syscall, one MQTT parse on
 * the far side) then carries many calls. A lone envelope still leaves on the same tick, so serial calls wait for
 * nothing.
 *
 * Envelopes are encoded straight into the frame that will carry them, behind room for the PUBLISH header: a
 * payload's bytes are copied once, from the message that brought them into the frame that takes them on.
 */
export class EnvelopeBatcher {
  readonly #send: (frame: Buffer) => void
  readonly #maxBytes: () => number
  readonly #header: PublishHeader
  readonly #out = new SlabWriter()
  #count = 0
  #scheduled = false

  /**
   * `send` gets each finished frame (a whole QoS 0 PUBLISH to `topic`); `maxBytes`: the size the envelopes of one
   * message may reach before it leaves without waiting for the tick to end.
   */
  constructor (topic: string, send: (frame: Buffer) => void, maxBytes: () => number) {
    this.#header = new PublishHeader(topic)
    this.#send = send
    this.#maxBytes = maxBytes
  }

  add (env: Envelope): void {
    const out = this.#out
    const reserve = this.#header.reserve
    if (this.#count === 0) out.begin(reserve)
    // relative to the piece: writing may move the piece to a fresh slab
    const before = out.length
    try {
      writeEnvelope(out, env)
    } catch (err) {
      // nothing of it stays in the frame; the envelopes before it still leave
      out.pos = out.start + before
      if (this.#count === 0) out.discard()
      throw err
    }
    this.#count++
    if (this.#count > 1 && out.length - reserve > this.#maxBytes()) {
      // this one starts the next message: send the others, then move its bytes behind a fresh header's room
      const lastStart = out.start + before
      const last = out.buffer.subarray(lastStart, out.pos)
      out.pos = lastStart
      this.#count--
      this.flush()
      out.begin(reserve)
      out.ensure(last.length)
      out.pos += last.copy(out.buffer, out.pos)
      this.#count = 1
    }
    if (!this.#scheduled) {
      this.#scheduled = true
      process.nextTick(flushAtTickEnd, this)
    }
  }

  flush (): void {
    if (this.#count === 0) return
    this.#count = 0
    this.#send(this.#header.frame(this.#out.finish()))
  }

  /** Forgets what was not sent (the connection it was for is gone). */
  clear (): void {
    if (this.#count === 0) return
    this.#count = 0
    this.#out.discard()
  }

  tickEnded (): void {
    this.#scheduled = false
    this.flush()
  }
}

function flushAtTickEnd (batcher: EnvelopeBatcher): void {
  batcher.tickEnded()
}
