import type { Writable } from 'node:stream'
import type { InvocationResult } from '../client/fc-client.js'

/**
 * Writes a result the way the contract fixes it (docs/design.md): strings and Buffers as they are, anything else as one line of
 * JSON. A newline follows text only on a terminal, so that piped output is exactly what the function returned.
 */
export function writeValue (stream: Writable, value: unknown): void {
  if (typeof value === 'string' || Buffer.isBuffer(value)) {
    stream.write(value)
    const endsWithNewline = typeof value === 'string' ? value.endsWith('\n') : value.at(-1) === 0x0a
    if (isTerminal(stream) && !endsWithNewline) stream.write('\n')
    return
  }
  stream.write(toJson(value) + '\n')
}

/** The result object for `--json`; a Buffer payload becomes base64 with `"payloadEncoding": "base64"`. */
export function toJsonResult (result: InvocationResult): Record<string, unknown> {
  if (result.statusCode === 202) return { ...result }
  const { payload, ...rest } = result
  return Buffer.isBuffer(payload) ? { ...rest, payload: payload.toString('base64'), payloadEncoding: 'base64' } : { ...rest, payload: payload ?? null }
}

/** JSON that survives what msgpack can carry: Buffers as base64, bigints as numbers' text, undefined as null. */
export function toJson (value: unknown): string {
  return JSON.stringify(value ?? null, (_key, v: unknown) => {
    if (typeof v === 'bigint') return v.toString()
    // JSON.stringify has already turned a nested Buffer into { type: 'Buffer', data } by the time we see it
    if (v !== null && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
      return Buffer.from((v as { data: number[] }).data).toString('base64')
    }
    return v
  })
}

function isTerminal (stream: Writable): boolean {
  return (stream as Writable & { isTTY?: boolean }).isTTY === true
}
