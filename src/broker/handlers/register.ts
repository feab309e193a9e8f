import { FnbusError, invalidArgument } from '../../errors.js'
import { envelope, parseFunctionName, type Register, type Unregister } from '../../protocol/index.js'
import type { BusContext } from '../context.js'
import type { Session } from '../session.js'

/** `reg`: the connection serves a function, within the policy and limits.maxRegistrationsPerClient. */
export function handleRegister (ctx: BusContext, session: Session, reg: Register): void {
  const fn = parseFunctionName(reg.fn, 'fn')
  const { limits, policy } = ctx.options
  const max = limits.maxConcurrency
  if (reg.conc < 1 || reg.conc > max) throw invalidArgument(`concurrency must be between 1 and ${max} (limits.maxConcurrency), got ${reg.conc}`)
  if (ctx.closed) throw new FnbusError('FNBUS_SHUTTING_DOWN', 'the gateway is shutting down')
  if (policy !== undefined && !policy.mayServe(session.subject, fn)) {
    throw new FnbusError('FNBUS_NOT_AUTHORIZED', `${session.subject} may not serve ${fn.name}`)
  }
  const maxRegistrations = limits.maxRegistrationsPerClient
  if (session.registrations.size >= maxRegistrations && !session.registrations.has(fn.name)) {
    ctx.limitReached('maxRegistrationsPerClient', session.label)
    throw invalidArgument(`the connection serves ${maxRegistrations} functions already (limits.maxRegistrationsPerClient)`)
  }
  ctx.dispatcher.register(fn, session, reg.conc)
  session.registrations.set(fn.name, fn)
  ctx.async.served(fn)
  session.send(envelope({ t: 'ack', id: reg.id }))
}

/** `unreg`: the connection no longer serves a function; calls it has in flight complete. */
export function handleUnregister (ctx: BusContext, session: Session, unreg: Unregister): void {
  const fn = parseFunctionName(unreg.fn, 'fn')
  ctx.dispatcher.unregister(fn, session)
  session.registrations.delete(fn.name)
  session.send(envelope({ t: 'ack', id: unreg.id }))
}
