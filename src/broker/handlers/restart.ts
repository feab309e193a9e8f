import { FnbusError } from '../../errors.js'
import { envelope, parseFunctionName, Payload, type RestartRequest } from '../../protocol/index.js'
import type { BusContext } from '../context.js'
import type { Session } from '../session.js'

/**
 * `restart`: new processes for a supervised function (`fnbus restart`, after its module changed). An operator's
 * request: under a policy it needs `manage` on the function. Answered `{restarted: n}` with the instances restarted.
 */
export function handleRestart (ctx: BusContext, session: Session, request: RestartRequest): void {
  const fn = parseFunctionName(request.fn, 'fn')
  const policy = ctx.options.policy
  if (policy !== undefined && !policy.mayManage(session.subject, fn)) {
    throw new FnbusError('FNBUS_NOT_AUTHORIZED', `${session.subject} may not restart ${fn.name} (it needs a manage grant)`)
  }
  const restarted = ctx.restarter?.(fn.name) ?? 0
  if (restarted === 0) throw new FnbusError('FNBUS_FUNCTION_NOT_FOUND', `the gateway supervises no function ${fn.name} (only functions[] with a module can be restarted)`)
  const payload = Payload.of({ restarted })
  session.send(envelope({ t: 'reply', id: request.id, pk: payload.kind, p: payload.bytes }))
}
