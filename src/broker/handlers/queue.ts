import { envelope, Payload, type QueueRequest } from '../../protocol/index.js'
import type { BusContext } from '../context.js'
import { queueAs } from '../operator.js'
import type { Session } from '../session.js'

/** `queue`: an operator's request on stored invocations (`fnbus queue`), answered with a `reply`. */
export function handleQueue (ctx: BusContext, session: Session, request: QueueRequest): void {
  queueAs(ctx, session.subject, request).then(
    value => {
      const payload = Payload.of(value)
      session.send(envelope({ t: 'reply', id: request.id, pk: payload.kind, p: payload.bytes }))
    },
    (err: unknown) => ctx.answerError(session, err, request.id)
  )
}
