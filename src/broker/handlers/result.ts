import { resultOutcome } from '../../dispatcher/index.js'
import type { Result } from '../../protocol/index.js'
import type { BusContext } from '../context.js'
import type { Session } from '../session.js'

/** `result`: a worker's answer to an invocation, completed in the dispatcher. */
export function handleResult (ctx: BusContext, session: Session, result: Result): void {
  // false: a late answer (the call timed out) or one from a worker that was not given the call; both ignored
  ctx.dispatcher.complete(result.id, session, resultOutcome(result, ctx.options.limits.maxPayloadBytes))
}
