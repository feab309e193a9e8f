import { encodeEnvelope, type Envelope } from './envelope.js'

/**
 * Collects the envelopes one side sends during a tick and sends them as one MQTT message: the protocol allows
 * several envelopes per message from v1, and under load one frame (one syscall, one MQTT parse on the far side)
 * then carries many calls. A lone envelope still leaves on the same tick, so serial calls wait for nothing.
 */
export class EnvelopeBatcher {
  readonly #send: (message: Buffer) => void
  readonly #maxBytes: () => number
  #parts: Buffer[] = []
  #bytes = 0
  #scheduled = false

  /** `maxBytes`: the size a message may reach before it leaves without waiting for the tick to end. */
  constructor (send: (message: Buffer) => void, maxBytes: () => number) {
    this.#send = send
    this.#maxBytes = maxBytes
  }

  add (env: Envelope): void {
    const bytes = encodeEnvelope(env)
    if (this.#parts.length > 0 && this.#bytes + bytes.length > this.#maxBytes()) this.flush()
    this.#parts.push(bytes)
    this.#bytes += bytes.length
    if (!this.#scheduled) {
      this.#scheduled = true
      process.nextTick(flushAtTickEnd, this)
    }
  }

  flush (): void {
    const parts = this.#parts
    if (parts.length === 0) return
    this.#parts = []
    this.#bytes = 0
    this.#send(parts.length === 1 ? parts[0] as Buffer : Buffer.concat(parts))
  }

  /** Forgets what was not sent (the connection it was for is gone). */
  clear (): void {
    this.#parts = []
    this.#bytes = 0
  }

  tickEnded (): void {
    this.#scheduled = false
    this.flush()
  }
}

function flushAtTickEnd (batcher: EnvelopeBatcher): void {
  batcher.tickEnded()
}
