import { FnbusError, invalidArgument } from '../errors.js'
import {
  checkContextArgument, checkIdempotencyKey, envelope, PROTOCOL_VERSION, type Envelope, type FunctionAddress, type InvocationType, type Payload,
} from '../protocol/index.js'
import type { Clock } from '../util/clock.js'
import { paddedDecimal } from '../util/decimal.js'
import { Deadlines, UNTIMED, type Timed } from '../util/deadlines.js'
import { IdTable } from '../util/id-table.js'
import { randomIdOf } from '../util/random-id.js'
import { VERSION } from '../version.js'
import type { DirectCaller } from './direct-caller.js'
import type { Transport } from './transport.js'
import type { InvokeOptions } from './types.js'

/** Digits of an automatic key's counter; past 10^12 calls a client takes a new random prefix. */
const AUTO_KEY_DIGITS = 12
const AUTO_KEY_LIMIT = 10 ** AUTO_KEY_DIGITS
const autoKeyNonce = randomIdOf('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz', 16)

/** A request sent to the gateway (or waiting to be), answered by an envelope with its id. */
interface PendingRequest extends Timed {
  id: number
  /** Connection the request went out on; 0 while it waits for one. */
  epoch: number
  readonly build: (id: number, remainingMs: number) => Envelope
  /** On the client's monotonic clock. */
  readonly deadline: number
  /** Sync calls fail on disconnect (they may have run); Async calls (idempotent by key) and registrations are sent again. */
  readonly resend: boolean
  readonly resolve: (env: Envelope) => void
  readonly reject: (err: FnbusError) => void
}

/**
 * The caller's side of the client: requests to the gateway (calls, and every other request) from the moment they
 * are made until their answer, their deadline, or the end of the connection they went out on. A request made while
 * the session is down waits for it, as long as its deadline allows.
 */
export class Caller {
  readonly #connection: Transport
  readonly #clock: Clock
  /** The default timeout of requests, ms. */
  readonly #timeout: number
  /**
   * The keys this client gives Async calls made without one: a random prefix of its own (95 bits) and a counter.
   * Ascending keys cost LevelDB less than random ones (its compactions rewrite fewer tables), measured here.
   */
  #autoKeyPrefix = `auto.${autoKeyNonce()}.`
  #autoKeys = 0
  /** Requests sent and not yet answered, by id (the table hands the ids out; see IdTable for why not a Map). */
  readonly #requests = new IdTable<PendingRequest>()
  /**
   * Every request's deadline on one timer (no timer per call). Unreferenced: while the client is open, MQTT.js' socket
   * or reconnection timer keeps the process alive.
   */
  readonly #deadlines: Deadlines<PendingRequest>
  /** Requests waiting for the session, in the order they were made. */
  readonly #waiting = new Set<PendingRequest>()
  #closed: FnbusError | undefined
  /** The direct path's leases, once the gateway granted one (a function thread's client only). */
  direct: DirectCaller | undefined

  constructor (connection: Transport, clock: Clock, timeout: number) {
    this.#connection = connection
    this.#clock = clock
    this.#timeout = timeout
    this.#deadlines = new Deadlines<PendingRequest>(request => this.#expired(request), { unref: true, clock })
  }

  /** A call of `fn`: resolves with the gateway's answer (`reply`, or `accepted` for Async). */
  call (fn: FunctionAddress, type: InvocationType, payload: Payload, options: InvokeOptions & { readonly idempotencyKey?: string }): Promise<Envelope> {
    const timeout = checkTimeout(options.timeout, this.#timeout, 'timeout')
    const waitForWorker = options.waitForWorker === undefined ? undefined : checkTimeout(options.waitForWorker, 0, 'waitForWorker', 0)
    // the gateway's rules, checked here so that a bad argument fails its own call (the size is the gateway's to judge)
    checkContextArgument(options.context)
    checkIdempotencyKey(options.idempotencyKey)
    if (type === 'Sync' && this.#direct(fn.name)) return (this.direct as DirectCaller).call(fn.name, payload, options.context, timeout)
    const bytes = payload.bytes
    // An Async call always carries a key, so sending it again after a dropped connection cannot store it twice.
    const async = type === 'Async'
    const idempotencyKey = async ? options.idempotencyKey ?? this.#autoKey() : undefined
    return this.#request(this.#clock.now() + timeout, async, (id, remainingMs) => {
      const limit = this.#connection.welcome?.maxPayload ?? Infinity
      if (bytes.length > limit) {
        throw new FnbusError('FNBUS_PAYLOAD_TOO_LARGE', `payload of ${bytes.length} bytes exceeds the gateway's limit of ${limit}`)
      }
      // a literal envelope on the hot path: one object of a fixed shape, no spread
      return { v: PROTOCOL_VERSION, t: 'call', id, fn: fn.name, it: type, to: remainingMs, ww: waitForWorker, ctx: options.context, ik: idempotencyKey, pk: payload.kind, p: bytes }
    })
  }

  #direct (name: string): boolean {
    return this.direct !== undefined && this.#closed === undefined && this.direct.has(name)
  }

  /**
   * A request other than a call, with the client's timeout. `resend`: sent again on the next connection if the one
   * it went out on drops (else it fails with FNBUS_DISCONNECTED).
   */
  request (resend: boolean, build: PendingRequest['build']): Promise<Envelope> {
    return this.#request(this.#clock.now() + this.#timeout, resend, build)
  }

  /** Starts the session of connection `epoch`: its `welcome`, or a refusal, is answered to the callbacks. */
  hello (epoch: number, welcomed: (env: Envelope) => void, refused: (err: FnbusError) => void): void {
    const hello: PendingRequest = {
      id: 0,
      epoch,
      build: id => envelope({ t: 'hello', id, sdk: `fnbus-js/${VERSION}` }),
      deadline: Infinity,
      resend: true,
      resolve: welcomed,
      reject: refused,
      ...UNTIMED,
    }
    const id = hello.id = this.#requests.add(hello)
    this.#connection.send(envelope({ t: 'hello', id, sdk: `fnbus-js/${VERSION}` }))
  }

  /** The gateway answered request `id` (`welcome`, `reply`, `accepted` or `ack`); nothing if it is no longer waited for. */
  answered (id: number, env: Envelope): void {
    const request = this.#requests.get(id)
    if (request === undefined) return // answered after its deadline
    this.#requests.delete(id)
    this.#deadlines.clear(request)
    request.resolve(env)
  }

  /** The gateway failed request `id`; false when no request has that id. */
  failed (id: number, err: FnbusError): boolean {
    const request = this.#requests.get(id)
    if (request === undefined) return false
    this.#fail(request, err)
    return true
  }

  /** The session is up: the requests that waited for it go out, in the order they were made. */
  sessionUp (): void {
    const waiting = [...this.#waiting]
    this.#waiting.clear()
    for (const request of waiting) this.#send(request)
  }

  /** Connection `epoch` dropped: its requests are sent again on the next one, or fail if they may have run. */
  disconnected (epoch: number): void {
    for (const request of this.#requests.values()) {
      if (request.epoch !== epoch) continue
      this.#requests.delete(request.id)
      if (request.deadline === Infinity) continue // the session's hello: the next connection sends its own
      if (request.resend) {
        request.id = 0
        request.epoch = 0
        this.#waiting.add(request)
      } else {
        this.#fail(request, new FnbusError('FNBUS_DISCONNECTED', 'the connection to the gateway dropped while the call was in flight; it may or may not have run'))
      }
    }
  }

  /** Fails every request, now and from now on, with `reason`. */
  shutdown (reason: FnbusError): void {
    this.#closed = reason
    for (const request of [...this.#requests.values(), ...this.#waiting]) this.#fail(request, reason)
  }

  /** Sends a request now if the session is up, else when it is, as long as its deadline allows. */
  #request (deadline: number, resend: boolean, build: PendingRequest['build']): Promise<Envelope> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed)
    return new Promise<Envelope>((resolve, reject) => {
      // the Timed fields written out: one object literal of a fixed shape per call, no spread
      const request: PendingRequest = {
        id: 0, epoch: 0, build, deadline, resend, resolve, reject,
        deadlineAt: 0, deadlinePrev: undefined, deadlineNext: undefined, deadlineLane: undefined,
      }
      this.#deadlines.set(request, deadline)
      if (this.#connection.welcome !== undefined) this.#send(request)
      else this.#waiting.add(request)
    })
  }

  #send (request: PendingRequest): void {
    const id = this.#requests.add(request)
    let env: Envelope
    try {
      env = request.build(id, Math.max(Math.round(request.deadline - this.#clock.now()), 1))
    } catch (err) {
      this.#requests.delete(id)
      this.#fail(request, err as FnbusError)
      return
    }
    request.id = id
    request.epoch = this.#connection.epoch
    this.#connection.send(env)
  }

  #expired (request: PendingRequest): void {
    this.#fail(request, new FnbusError('FNBUS_TIMEOUT', request.epoch === 0
      ? `no connection to the gateway at ${this.#connection.url} before the deadline`
      : 'the gateway did not answer before the deadline'))
  }

  #fail (request: PendingRequest, err: FnbusError): void {
    this.#deadlines.clear(request)
    this.#waiting.delete(request)
    if (request.id !== 0) this.#requests.delete(request.id)
    request.reject(err)
  }

  #autoKey (): string {
    if (++this.#autoKeys === AUTO_KEY_LIMIT) {
      this.#autoKeyPrefix = `auto.${autoKeyNonce()}.`
      this.#autoKeys = 1
    }
    return this.#autoKeyPrefix + paddedDecimal(this.#autoKeys, AUTO_KEY_DIGITS)
  }
}

export function checkTimeout (value: unknown, fallback: number, name: string, min = 1): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) throw invalidArgument(`${name} must be a number of ms ≥ ${min}, got ${JSON.stringify(value)}`)
  return Math.min(Math.floor(value), 2_147_483_647)
}

/** Link IoT Edge passes the invoker context as base64 of JSON; fnbus also takes the object. */
export function decodeInvokerContext (value: unknown): Record<string, unknown> | undefined {
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value === 'object' && !Array.isArray(value) && !Buffer.isBuffer(value)) return value as Record<string, unknown>
  if (typeof value === 'string') {
    let decoded: unknown
    try {
      decoded = JSON.parse(Buffer.from(value, 'base64').toString('utf8'))
    } catch {
      throw invalidArgument('invokerContext must be base64 of a JSON object (or the object itself)')
    }
    if (decoded !== null && typeof decoded === 'object' && !Array.isArray(decoded)) return decoded as Record<string, unknown>
  }
  throw invalidArgument('invokerContext must be base64 of a JSON object (or the object itself)')
}
