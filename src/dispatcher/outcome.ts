import { FnbusError, type ErrorCode } from '../errors.js'
import type { InvocationOutcome } from '../observations.js'
import type { Outcome } from './types.js'

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
