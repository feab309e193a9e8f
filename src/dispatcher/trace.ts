import type { Logger } from '../logger.js'
import { PayloadKind, type Payload } from '../protocol/index.js'
import { outcomeOf } from './outcome.js'
import type { CallerPort, CallRequest, Outcome } from './types.js'

/** How much of a payload a debug line shows when payloads are logged at all (`log.payloads`). */
export const LOGGED_PAYLOAD_BYTES = 1024

/**
 * A payload as a log line shows it: text as text, bytes as base64, MessagePack values as JSON-able values, each
 * cut at LOGGED_PAYLOAD_BYTES with the full size alongside. Only called when the operator asked for payloads.
 */
export function payloadForLog (payload: Payload): Record<string, unknown> {
  let bytes: Buffer
  try {
    bytes = payload.bytes
  } catch {
    return { unencodable: true }
  }
  const truncated = bytes.length > LOGGED_PAYLOAD_BYTES
  const shown = truncated ? bytes.subarray(0, LOGGED_PAYLOAD_BYTES) : bytes
  switch (payload.kind) {
    case PayloadKind.Text: return { text: shown.toString('utf8'), bytes: bytes.length, truncated }
    case PayloadKind.MsgPack:
      if (!truncated) {
        try {
          return { value: payload.value, bytes: bytes.length, truncated }
        } catch {
          // shown as bytes below
        }
      }
      return { msgpack: shown.toString('base64'), bytes: bytes.length, truncated }
    default: return { base64: shown.toString('base64'), bytes: bytes.length, truncated }
  }
}

/** The debug line of a call the dispatcher takes. */
export function traceReceived (trace: Logger, logPayloads: boolean, request: CallRequest, caller: CallerPort, requestId: string): void {
  const entry: Record<string, unknown> = { requestId, fn: request.fn.name, type: request.type, caller: caller.label, identity: request.identity }
  if (logPayloads) entry.payload = payloadForLog(request.payload)
  trace.debug(entry, 'invocation received')
}

/** The debug line of a call that settled: its outcome, its worker, its duration. */
export function traceFinished (trace: Logger, logPayloads: boolean, request: CallRequest, requestId: string, outcome: Outcome,
  worker: string | undefined, durationMs: number): void {
  const entry: Record<string, unknown> = {
    requestId, fn: request.fn.name, type: request.type, worker, outcome: outcomeOf(outcome), durationMs: Math.round(durationMs * 1000) / 1000,
  }
  if (!outcome.ok) entry.error = outcome.error.message
  else if (logPayloads) entry.result = payloadForLog(outcome.payload)
  trace.debug(entry, 'invocation finished')
}
