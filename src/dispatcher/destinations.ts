import type { Logger } from '../logger.js'
import type { GatewayEvents } from '../observations.js'
import { PayloadKind, type Payload } from '../protocol/index.js'
import type { DeadInvocation, InvocationError, StoredInvocation } from '../store/types.js'
import type { AsyncFunctionOptions } from './async-options.js'

/** What the destinations need of the gateway: the async engine's hooks. */
export interface DestinationHooks {
  /** Publishes an event (onSuccess/onFailure destinations). */
  readonly publish: (topic: string, payload: Buffer) => Promise<void>
  readonly logger: Logger
  readonly events?: GatewayEvents
}

/**
 * Where the outcomes of stored invocations are told: the onSuccess and onFailure topics of their function (JSON
 * events), and for a dead letter also the log and the `deadLetter` observation.
 */
export class Destinations {
  readonly #hooks: DestinationHooks
  readonly #options: (fn: string) => AsyncFunctionOptions

  constructor (hooks: DestinationHooks, options: (fn: string) => AsyncFunctionOptions) {
    this.#hooks = hooks
    this.#options = options
  }

  /** An invocation was dead-lettered: the log, the observation and the onFailure event say so. */
  reportDead (fn: string, invocation: StoredInvocation, dead: DeadInvocation, error: InvocationError): void {
    this.#hooks.logger.warn({ requestId: invocation.id, fn, attempts: dead.attempts, error },
      `invocation of ${fn} dead-lettered after ${dead.attempts} attempt(s): ${error.code}: ${error.message}`)
    const events = this.#hooks.events
    if (events?.observed('deadLetter') === true) {
      events.emit('deadLetter', { requestId: invocation.id, function: fn, attempts: dead.attempts, error })
    }
    this.announce(fn, 'onFailure', invocation, () => ({ attempts: dead.attempts, error }))
  }

  /**
   * Publishes an onSuccess/onFailure event, if the function has that destination (`fields` is only called then:
   * describing a result decodes its payload). Never throws: what JSON cannot hold is written as the event says.
   */
  announce (fn: string, destination: 'onSuccess' | 'onFailure', invocation: StoredInvocation, fields: () => Record<string, unknown>): void {
    const topic = this.#options(fn)[destination]
    if (topic === undefined) return
    let json: string
    try {
      json = eventJson({ invocationId: invocation.id, function: fn, ...fields() })
    } catch (err) {
      this.#hooks.logger.error({ err, topic }, `the ${destination} event could not be built`)
      return
    }
    this.#hooks.publish(topic, Buffer.from(json)).catch((err: unknown) => {
      this.#hooks.logger.warn({ err, topic }, `publishing to the ${destination} topic failed`)
    })
  }
}

/** A function error's payload as the text of the invocation's last error. */
export function messageOf (payload: Payload): string {
  try {
    const value = payload.value
    return typeof value === 'string' ? value : JSON.stringify(value)
  } catch {
    return '(undecodable payload)'
  }
}

/**
 * A result as JSON: text as a string, bytes as base64, MessagePack values as themselves, integers beyond JSON's
 * exact range (BigInt) as decimal strings. A value JSON cannot hold (a cycle, a MessagePack that does not decode)
 * travels as the base64 of its bytes, with `payloadError` saying why.
 */
export function describePayload (payload: Payload): Record<string, unknown> {
  if (payload.kind === PayloadKind.Bytes) return { payload: payload.bytes.toString('base64'), payloadEncoding: 'base64' }
  try {
    const value = payload.value
    eventJson(value)
    return { payload: value }
  } catch (err) {
    return {
      payload: payload.bytes.toString('base64'),
      payloadEncoding: 'base64',
      payloadError: { code: 'FNBUS_BAD_MESSAGE', message: `the result cannot be written as JSON: ${(err as Error).message}` },
    }
  }
}

/** JSON of an event: a BigInt becomes its decimal string (JSON.stringify throws on one). */
export function eventJson (value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => typeof v === 'bigint' ? v.toString() : v)
}
