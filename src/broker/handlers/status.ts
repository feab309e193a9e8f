import { FnbusError } from '../../errors.js'
import type { FunctionStats } from '../../dispatcher/index.js'
import type { QueueStats } from '../../dispatcher/async-engine.js'
import { envelope, parseFunctionName, Payload, type StatusRequest } from '../../protocol/index.js'
import type { BusContext } from '../context.js'
import type { Session } from '../session.js'

export interface BusStats {
  readonly sessions: number
  readonly inFlight: number
  readonly functions: FunctionStats[]
}

export interface BusDescription extends BusStats {
  readonly queues: QueueStats[]
}

/**
 * `status`: without a policy anyone on the bus may read the status. Under one it is an operator's request like
 * `queue`: an identity with no `manage` grant is refused, and the others see the functions they may manage and no
 * others.
 */
export function handleStatus (ctx: BusContext, session: Session, request: StatusRequest): void {
  const id = request.id
  const policy = ctx.options.policy
  let visible: ((fn: string) => boolean) | undefined
  if (policy !== undefined) {
    const subject = session.subject
    if (!policy.managesAny(subject)) throw new FnbusError('FNBUS_NOT_AUTHORIZED', `${subject} may not read the gateway's status (it needs a manage grant)`)
    visible = name => policy.mayManage(subject, parseFunctionName(name))
  }
  const source = ctx.statusSource ?? (async (only?: (fn: string) => boolean) => describeBus(ctx, only))
  source(visible).then(
    value => {
      const payload = Payload.of(value)
      session.send(envelope({ t: 'reply', id, pk: payload.kind, p: payload.bytes }))
    },
    (err: unknown) => ctx.answerError(session, err, id)
  )
}

export function busStats (ctx: BusContext): BusStats {
  return { sessions: ctx.sessionCount, inFlight: ctx.dispatcher.inFlight, functions: ctx.dispatcher.stats() }
}

/** The bus's own view: functions with their workers, stored invocation counts, connections. */
export function describeBus (ctx: BusContext, visible?: (fn: string) => boolean): BusDescription {
  const stats = busStats(ctx)
  if (visible === undefined) return { ...stats, queues: ctx.async.queueStats() }
  return { ...stats, functions: stats.functions.filter(f => visible(f.name)), queues: ctx.async.queueStats().filter(q => visible(q.fn)) }
}
