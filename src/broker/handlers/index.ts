import type { Client as AedesClient, PublishPacket } from 'aedes'
import { decodeMessage, envelope, EnvelopeError, parseEnvelope, UP_TOPIC, type Envelope } from '../../protocol/index.js'
import type { BusContext } from '../context.js'
import type { Session } from '../session.js'
import { handleCall } from './call.js'
import { handleCancel } from './cancel.js'
import { handleHello } from './hello.js'
import { handleQueue } from './queue.js'
import { handleRegister, handleUnregister } from './register.js'
import { handleResult } from './result.js'
import { handleStatus } from './status.js'
import { handleRestart } from './restart.js'

/**
 * A bus message from `client` (authorizePublish took it out of aedes' routing): decoded into its envelopes, each
 * handled in turn. Every refusal is answered in-band, never by failing the hook (docs/design.md, pitfall 9).
 */
export function handleBusMessage (ctx: BusContext, client: AedesClient, packet: PublishPacket): void {
  const session = ctx.sessionOf(client)
  if (packet.topic !== UP_TOPIC) {
    ctx.observeDrop('wrong_bus_topic', client)
    session.send(envelope({ t: 'error', id: 0, code: 'FNBUS_NOT_AUTHORIZED', msg: `bus envelopes go to ${UP_TOPIC}, not ${packet.topic}` }))
    return
  }
  const bytes = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
  let raws: Record<string, unknown>[]
  try {
    raws = decodeMessage(bytes)
  } catch (err) {
    ctx.observeDrop((err as EnvelopeError).code, client)
    ctx.answerError(session, err, 0)
    return
  }
  for (const raw of raws) {
    let env: Envelope
    try {
      env = parseEnvelope(raw, ctx.options.limits)
    } catch (err) {
      ctx.observeDrop((err as EnvelopeError).code, client)
      ctx.answerError(session, err, err instanceof EnvelopeError ? err.requestId : 0)
      continue
    }
    try {
      handleEnvelope(ctx, session, env)
    } catch (err) {
      ctx.answerError(session, err, env.id)
    }
  }
}

/** One handler per envelope type a client may send; anything else is refused. */
export function handleEnvelope (ctx: BusContext, session: Session, env: Envelope): void {
  switch (env.t) {
    case 'hello': return handleHello(ctx, session, env)
    case 'call': return handleCall(ctx, session, env)
    case 'reg': return handleRegister(ctx, session, env)
    case 'unreg': return handleUnregister(ctx, session, env)
    case 'result': return handleResult(ctx, session, env)
    case 'cancel': return handleCancel(ctx, session, env)
    case 'queue': return handleQueue(ctx, session, env)
    case 'status': return handleStatus(ctx, session, env)
    case 'restart': return handleRestart(ctx, session, env)
    default:
      throw new EnvelopeError('FNBUS_BAD_MESSAGE', `a client does not send ${env.t} envelopes`, env.id)
  }
}
