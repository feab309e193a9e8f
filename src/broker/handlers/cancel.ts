import { envelope, type Cancel } from '../../protocol/index.js'
import type { BusContext } from '../context.js'
import { authorizeCancel, cancelStored } from '../operator.js'
import type { Session } from '../session.js'

/** `cancel`: a stored invocation that has not started is cancelled, if the asker may. */
export function handleCancel (ctx: BusContext, session: Session, cancel: Cancel): void {
  authorizeCancel(ctx, session.subject, cancel.iid).then(() => cancelStored(ctx, cancel.iid)).then(
    () => session.send(envelope({ t: 'ack', id: cancel.id })),
    (err: unknown) => ctx.answerError(session, err, cancel.id)
  )
}
