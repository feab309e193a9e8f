import type { Duplex } from 'node:stream'

export interface FrameGuardOptions {
  /** Largest MQTT remaining length accepted; a frame declaring more cuts the connection. */
  readonly maxFrameBytes: number
  /** `kind` is a stable word for metrics; `reason` says what happened. */
  readonly onViolation: (reason: string, kind: FrameViolation) => void
}

export type FrameViolation = 'frame_too_large' | 'malformed_frame'


const enum Phase { Type, Length, Body }

/**
 * Reads MQTT frame boundaries on the raw byte stream, before aedes buffers anything: aedes 1.x has no maximum
 * packet size, so one connection declaring a 256 MB PUBLISH would make it buffer that much (DESIGN.md, pitfall 3).
 *
 * aedes pulls bytes with `conn.read()` on 'readable', so the guard wraps `read` on the connection itself. Writes
 * stay on the socket untouched: no extra stream, no copy, and direct writes keep their order.
 */
export function guardFrames (conn: Duplex, options: FrameGuardOptions): void {
  let phase: Phase = Phase.Type
  let length = 0
  let multiplier = 1
  let remaining = 0
  let lengthBytes = 0
  let violated = false

  const violate = (reason: string, kind: FrameViolation): null => {
    violated = true
    options.onViolation(reason, kind)
    conn.destroy()
    return null
  }

  const read = conn.read
  conn.read = function guardedRead (this: Duplex, size?: number) {
    const chunk: unknown = read.call(this, size)
    if (violated) return null
    if (!Buffer.isBuffer(chunk)) return chunk
    let i = 0
    while (i < chunk.length) {
      switch (phase) {
        case Phase.Type:
          i++
          phase = Phase.Length
          length = 0
          multiplier = 1
          lengthBytes = 0
          break
        case Phase.Length: {
          const byte = chunk[i++] as number
          length += (byte & 0x7f) * multiplier
          multiplier *= 128
          lengthBytes++
          if ((byte & 0x80) === 0) {
            if (length > options.maxFrameBytes) {
              return violate(`frame of ${length} bytes exceeds the limit of ${options.maxFrameBytes}`, 'frame_too_large')
            }
            remaining = length
            phase = remaining === 0 ? Phase.Type : Phase.Body
          } else if (lengthBytes === 4) {
            // [MQTT-2.2.3] the remaining length takes at most four bytes
            return violate('malformed remaining length', 'malformed_frame')
          }
          break
        }
        case Phase.Body: {
          const take = Math.min(remaining, chunk.length - i)
          i += take
          remaining -= take
          if (remaining === 0) phase = Phase.Type
          break
        }
      }
    }
    return chunk
  }
}
