import { FnbusError, invalidArgument } from '../../errors.js'
import { envelope, parseFunctionName, Payload, type Call } from '../../protocol/index.js'
import { isPrototypeName } from '../../protocol/names.js'
import type { BusContext } from '../context.js'
import type { Session } from '../session.js'

/**
 * `call`: a Sync call goes to the dispatcher, whose answer the session writes to the caller's inbox; an Async one is
 * stored and answered `accepted`. The Sync path allocates nothing here beyond the request and its caller.
 */
export function handleCall (ctx: BusContext, session: Session, call: Call): void {
  const fn = ctx.resolve(parseFunctionName(call.fn, 'fn'))
  const { limits } = ctx.options
  if (call.p.length > limits.maxPayloadBytes) {
    throw ctx.refused(fn, call.it, new FnbusError('FNBUS_PAYLOAD_TOO_LARGE', `payload of ${call.p.length} bytes exceeds limits.maxPayloadBytes (${limits.maxPayloadBytes})`))
  }
  if (call.ik !== undefined && isPrototypeName(call.ik)) throw invalidArgument(`idempotency key ${call.ik} is reserved`)
  const maxInFlight = limits.maxInFlightPerClient
  if (session.inFlight >= maxInFlight) {
    throw ctx.refused(fn, call.it, new FnbusError('FNBUS_RATE_LIMITED', `the connection has ${maxInFlight} calls in flight (limits.maxInFlightPerClient)`))
  }
  if (session.congested) {
    // its answers would only pile up behind the ones it has not read
    throw ctx.refused(fn, call.it, new FnbusError('FNBUS_RATE_LIMITED', `the connection has ${session.buffered} bytes of answers it has not read (limits.maxBufferedBytesPerClient)`))
  }
  ctx.admitCall(session.subject, fn, call.it)
  session.inFlight++
  if (call.it === 'Async') {
    // accepted only once durable: the answer waits for the store's write (docs/design.md, pitfall 1)
    ctx.accept(fn, Payload.fromWire(call.pk, call.p), call.ctx, call.ik, session.subject).then(
      ({ invocationId }) => {
        session.inFlight--
        session.send(envelope({ t: 'accepted', id: call.id, iid: invocationId }))
      },
      (err: unknown) => {
        session.inFlight--
        ctx.answerError(session, err, call.id)
      }
    )
    return
  }
  try {
    ctx.dispatcher.call({
      fn,
      type: call.it,
      payload: Payload.fromWire(call.pk, call.p),
      context: call.ctx,
      timeoutMs: call.to,
      waitForWorkerMs: call.ww,
      identity: session.identity,
    }, session.caller(call.id))
  } catch (err) {
    session.inFlight--
    throw err
  }
}
