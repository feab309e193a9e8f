import { envelope, type Hello } from '../../protocol/index.js'
import { VERSION } from '../../version.js'
import type { BusContext } from '../context.js'
import type { Session } from '../session.js'

/** `hello`: the gateway tells the SDK its version and the limits it checks payloads against itself. */
export function handleHello (ctx: BusContext, session: Session, hello: Hello): void {
  session.send(envelope({
    t: 'welcome',
    id: hello.id,
    gw: VERSION,
    maxPayload: ctx.options.limits.maxPayloadBytes,
    maxFrame: ctx.options.limits.maxFrameBytes,
  }))
}
