import type { AedesPublishPacket } from 'aedes'
import { FnbusError, invalidArgument } from '../errors.js'
import {
  checkContextArgument, checkEventFilter, checkEventTopic, checkIdempotencyKey, encodeEventPayload, parseFunctionName, Payload,
} from '../protocol/index.js'
import type { InProcessCaller, InProcessValueCaller } from '../runtime/in-process.js'
import { InProcessWorker } from '../runtime/in-process.js'
import type { Handler } from '../runtime/handler.js'
import { GATEWAY_IDENTITY } from '../security/identity.js'
import type { BusContext } from './context.js'

export interface ServeOptions {
  /** Calls this worker runs at once. Default 8. */
  readonly concurrency?: number
}

export interface InvokeOptions {
  /** ms; default `limits.defaultTimeoutMs` (30 s). */
  readonly timeout?: number
  /** ms to wait for a worker to appear instead of failing FNBUS_FUNCTION_NOT_FOUND at once. */
  readonly waitForWorker?: number
  /** The invoker context the function sees as `context.invokerContext`. */
  readonly context?: Record<string, unknown>
  /** The identity the call is made as (the policy and rate limit apply to it). Default: the gateway's own, unrestricted. */
  readonly identity?: string
}

export interface InvokeAsyncOptions {
  readonly idempotencyKey?: string
  readonly context?: Record<string, unknown>
  readonly identity?: string
}

export interface PublishOptions {
  readonly qos?: 0 | 1 | 2
  readonly retain?: boolean
}

export type EventHandler = (topic: string, payload: Buffer, packet: { readonly qos: number, readonly retain: boolean }) => void

export interface ServedFunction {
  readonly name: string
  /** Stops taking calls; those in flight complete. */
  close (): Promise<void>
}

export const DEFAULT_CONCURRENCY = 8

/** Serves a function inside the gateway process. */
export function serveInProcess (ctx: BusContext, name: string, handler: Handler, options: ServeOptions): ServedFunction {
  const fn = parseFunctionName(name)
  if (typeof handler !== 'function') throw invalidArgument('handler must be a function')
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw invalidArgument(`concurrency must be a positive integer, got ${concurrency}`)
  if (ctx.closed) throw new FnbusError('FNBUS_SHUTTING_DOWN', 'the gateway is shutting down')
  const dispatcher = ctx.dispatcher
  const worker = new InProcessWorker(dispatcher, handler)
  dispatcher.register(fn, worker, concurrency)
  ctx.async.served(fn)
  return {
    name: fn.name,
    close: async () => { dispatcher.unregister(fn, worker) },
  }
}

/**
 * A Sync call from inside the gateway process: `caller` is the request too, one object per call, settled straight
 * from the dispatcher. Throws (inside the façade's promise executor: a rejection) on a malformed name.
 */
export function invokeInProcess (ctx: BusContext, name: string, payload: unknown, options: InvokeOptions, caller: InProcessCaller | InProcessValueCaller): void {
  const fn = ctx.resolve(parseFunctionName(name))
  checkContextArgument(options.context, ctx.options.limits.maxContextBytes, 'options.context')
  ctx.admitCall(options.identity ?? GATEWAY_IDENTITY, fn, 'Sync')
  ctx.dispatcher.call(caller.prepare(fn, payload, options), caller)
}

/** Stores an Async invocation in process; resolves with its id once it is durable. */
export async function invokeAsyncInProcess (ctx: BusContext, name: string, payload: unknown, options: InvokeAsyncOptions): Promise<{ invocationId: string }> {
  const fn = ctx.resolve(parseFunctionName(name))
  const { limits } = ctx.options
  checkContextArgument(options.context, limits.maxContextBytes, 'options.context')
  checkIdempotencyKey(options.idempotencyKey, 'options.idempotencyKey')
  ctx.admitCall(options.identity ?? GATEWAY_IDENTITY, fn, 'Async')
  const wire = Payload.of(payload)
  if (wire.byteLength > limits.maxPayloadBytes) {
    throw ctx.refused(fn, 'Async', new FnbusError('FNBUS_PAYLOAD_TOO_LARGE', `payload of ${wire.byteLength} bytes exceeds limits.maxPayloadBytes`))
  }
  return await ctx.accept(fn, wire, options.context, options.idempotencyKey, options.identity ?? GATEWAY_IDENTITY)
}

/** Publishes an event as the gateway. */
export async function publishInProcess (ctx: BusContext, topic: string, payload: unknown, options: PublishOptions): Promise<void> {
  checkEventTopic(topic)
  const bytes = encodeEventPayload(payload)
  if (bytes.length > ctx.options.limits.maxPayloadBytes) {
    throw new FnbusError('FNBUS_PAYLOAD_TOO_LARGE', `event payload of ${bytes.length} bytes exceeds limits.maxPayloadBytes`)
  }
  await ctx.publishEvent(topic, bytes, options.qos ?? 0, options.retain ?? false)
}

/** Subscribes to events inside the gateway process; resolves with a function that ends the subscription. */
export async function subscribeInProcess (ctx: BusContext, filter: string, handler: EventHandler): Promise<() => Promise<void>> {
  checkEventFilter(filter)
  const { aedes, events, options } = ctx
  const deliver = (packet: AedesPublishPacket, done: () => void): void => {
    // MQTT: first-level wildcards do not match $ topics ([MQTT-4.7.2-1])
    if (!(packet.topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#')))) {
      if (events.observed('eventMessage')) events.emit('eventMessage', { direction: 'out', topic: packet.topic })
      const bytes = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
      try {
        handler(packet.topic, bytes, { qos: packet.qos, retain: packet.retain })
      } catch (err) {
        options.logger.error({ err, topic: packet.topic }, 'event handler threw')
      }
    }
    done()
  }
  await new Promise<void>(resolve => aedes.subscribe(filter, deliver, resolve))
  return async () => {
    await new Promise<void>(resolve => aedes.unsubscribe(filter, deliver, resolve))
  }
}
