import { errorFromWire } from '../../errors.js'
import { failure, type Outcome } from '../../dispatcher/index.js'
import { Payload, PayloadKind, type Result } from '../../protocol/index.js'
import type { BusContext } from '../context.js'
import type { Session } from '../session.js'

/** `result`: a worker's answer to an invocation, completed in the dispatcher. */
export function handleResult (ctx: BusContext, session: Session, result: Result): void {
  let outcome: Outcome
  if (result.code !== undefined) {
    outcome = { ok: false, error: errorFromWire(result.code, result.msg) }
  } else if (result.p !== undefined && result.p.length > ctx.options.limits.maxPayloadBytes) {
    outcome = failure('FNBUS_PAYLOAD_TOO_LARGE', `the function's answer of ${result.p.length} bytes exceeds limits.maxPayloadBytes`)
  } else {
    const payload = result.p === undefined ? Payload.of(null) : Payload.fromWire(result.pk ?? PayloadKind.Bytes, result.p)
    outcome = { ok: true, functionError: result.fe, payload }
  }
  // false: a late answer (the call timed out) or one from a worker that was not given the call; both ignored
  ctx.dispatcher.complete(result.id, session, outcome)
}
