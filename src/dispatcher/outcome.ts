import { errorFromWire, FnbusError, type ErrorCode } from '../errors.js'
import type { InvocationOutcome } from '../observations.js'
import { Payload, PayloadKind, type Result } from '../protocol/index.js'
import type { Outcome } from './types.js'

/**
 * A `result` envelope as the dispatcher's outcome: the value (a function error too), or the bus error the worker
 * reported; an answer above `maxPayloadBytes` is FNBUS_PAYLOAD_TOO_LARGE. A worker's session and a cluster's peer
 * gateway answer alike.
 */
export function resultOutcome (result: Result, maxPayloadBytes: number): Outcome {
  if (result.code !== undefined) return { ok: false, error: errorFromWire(result.code, result.msg) }
  if (result.p !== undefined && result.p.length > maxPayloadBytes) {
    return failure('FNBUS_PAYLOAD_TOO_LARGE', `the function's answer of ${result.p.length} bytes exceeds limits.maxPayloadBytes`)
  }
  const payload = result.p === undefined ? Payload.of(null) : Payload.fromWire(result.pk ?? PayloadKind.Bytes, result.p)
  return { ok: true, functionError: result.fe, payload }
}

/** A bus error as an outcome: what the dispatcher, the sessions and the engine settle failed calls with. */
export function failure (code: ErrorCode, message: string): Outcome {
  return { ok: false, error: new FnbusError(code, message) }
}

/** An outcome as observers and the debug log name it: ok, handled, unhandled, or the bus error's code. */
export function outcomeOf (outcome: Outcome): InvocationOutcome {
  if (!outcome.ok) return outcome.error.code
  if (outcome.functionError === undefined) return 'ok'
  return outcome.functionError === 'Handled' ? 'handled' : 'unhandled'
}
