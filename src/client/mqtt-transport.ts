import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import type { Duplex } from 'node:stream'
import { customAlphabet } from 'nanoid'
import { FnbusError, invalidArgument } from '../errors.js'
import { EnvelopeBatcher, inboxTopic, UP_TOPIC, type Envelope, type Welcome } from '../protocol/index.js'
import { clientIdStem, isValidIdentityName } from '../security/identity-names.js'
import { FrameWriter, InboxTap } from './mqtt-internals.js'
import type { Transport, TransportListener } from './transport.js'
import { DEFAULT_URL, type FCClientOptions } from './types.js'

/** CONNACK return codes of MQTT 3.1.1 that refuse who the client is: identifier rejected, bad credentials, not authorized. */
const REFUSED_CONNACK_CODES: ReadonlySet<number> = new Set([2, 4, 5])

const clientSuffix = customAlphabet('0123456789abcdefghijklmnopqrstuvwxyz', 16)

/**
 * The client's transport through MQTT.js: its setup and reconnections (each one an `epoch`), the
 * session's state (welcomed or not), the `$fn/up` messages out (batched per tick, written past MQTT.js'
 * publish machinery) and the inbox in (read off the socket before MQTT.js parses it: see mqtt-internals.ts), and
 * MQTT.js' own publish and subscribe for events.
 */
export class MqttTransport implements Transport {
  readonly clientId: string
  readonly url: string
  readonly #mqtt: MqttClient
  readonly #inbox: string
  readonly #outbox: EnvelopeBatcher
  readonly #tap: InboxTap
  readonly #listener: TransportListener
  #epoch = 0
  #welcome: Welcome | undefined

  /**
   * `stream`: opens each connection's byte stream instead of MQTT.js dialling `url` (a function thread's link to
   * its gateway: thread-link.ts); `url` then only names the gateway in messages.
   */
  constructor (options: FCClientOptions, listener: TransportListener, stream?: { readonly url: string, readonly connect: (options?: unknown) => Duplex }) {
    this.#listener = listener
    this.url = stream?.url ?? options.url ?? process.env.FNBUS_URL ?? DEFAULT_URL
    const username = options.username ?? options.mqtt?.username ?? nonEmpty(process.env.FNBUS_USERNAME)
    const password = options.password ?? options.mqtt?.password ?? nonEmpty(process.env.FNBUS_PASSWORD)
    // the gateway accepts an identity only on client ids of its own form: pick one by default
    const stem = username !== undefined && isValidIdentityName(username) ? clientIdStem(username) + '.' : 'fnbus-'
    this.clientId = options.clientId ?? stem + clientSuffix()
    this.#inbox = inboxTopic(this.clientId)
    const mqttOptions: IClientOptions = {
      protocolVersion: 4,
      clean: true,
      keepalive: 30,
      reconnectPeriod: options.reconnectPeriod ?? 1000,
      connectTimeout: 10_000,
      // our own queue holds calls while disconnected, each with its deadline
      queueQoSZero: false,
      // the page's own timers for the keep-alive: MQTT.js' default in a browser runs them in a Worker made from a
      // blob: URL, which a page's Content Security Policy (the dashboard's default-src 'self') refuses; in Node the
      // default is these already
      timerVariant: 'native',
      ...options.mqtt,
      ...tlsOptions(options),
      clientId: this.clientId,
      username,
      password,
    }
    this.#mqtt = stream === undefined ? mqtt.connect(this.url, mqttOptions) : new mqtt.MqttClient(() => stream.connect(mqttOptions), mqttOptions)
    // Every connection's socket is read from its first byte, so that the inbox's frames can be taken off it
    // (inbox-reader.ts): the first one was just built and has read nothing yet; reconnections build new ones.
    this.#tap = new InboxTap(this.#mqtt, this.#inbox, listener.inbox)
    const writer = new FrameWriter(this.#mqtt, UP_TOPIC)
    // leave room under the gateway's frame limit for the topic and MQTT header
    this.#outbox = new EnvelopeBatcher(UP_TOPIC, frame => writer.write(frame),
      () => (this.#welcome?.maxFrame ?? 64 * 1024) - 1024)
    this.#mqtt.on('connect', () => this.#onConnect(writer))
    this.#mqtt.on('close', () => this.#onClose())
    this.#mqtt.on('message', (topic, payload, packet) => this.#onMessage(topic, payload, packet))
    // MQTT.js reports refused and dropped connections here; it keeps reconnecting, and calls keep waiting
    this.#mqtt.on('error', err => this.#onError(err))
  }

  /** The current connection: counts connections since the start. */
  get epoch (): number {
    return this.#epoch
  }

  /** The gateway's welcome of the current session; undefined while there is none. */
  get welcome (): Welcome | undefined {
    return this.#welcome
  }

  /** The session of connection `epoch` is up (the gateway answered its hello); false if that connection is gone. */
  welcomed (env: Welcome, epoch: number): boolean {
    if (epoch !== this.#epoch) return false
    this.#welcome = env
    return true
  }

  /** Sends `env` on `$fn/up` at the end of the tick (or at once with the envelopes before it: EnvelopeBatcher). */
  send (env: Envelope): void {
    this.#outbox.add(env)
  }

  /** Sends the envelopes of this tick now. */
  flush (): void {
    this.#outbox.flush()
  }

  /** The session is over for good: nothing more is sent. */
  shutdown (): void {
    this.#welcome = undefined
  }

  /** Disconnects: `force` drops the socket at once, else what is written goes out first. */
  end (force: boolean): Promise<void> {
    return new Promise<void>(resolve => this.#mqtt.end(force, {}, () => resolve()))
  }

  /** Publishes an event through MQTT.js. */
  publish (topic: string, bytes: Buffer, options: { readonly qos: 0 | 1 | 2, readonly retain: boolean }): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#mqtt.publish(topic, bytes, { qos: options.qos, retain: options.retain }, err => {
        if (err) reject(new FnbusError('FNBUS_DISCONNECTED', `publish failed: ${err.message}`, { cause: err }))
        else resolve()
      })
    })
  }

  /** Subscribes to events through MQTT.js; FNBUS_NOT_AUTHORIZED when the gateway refuses the filter. */
  subscribe (filter: string, qos: 0 | 1 | 2): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#mqtt.subscribe(filter, { qos }, (err, granted) => {
        // MQTT.js reports a refused subscription (SUBACK 0x80) as an error carrying the SUBACK
        const refused = (granted?.[0]?.qos as number | undefined) === 128 || (err as { packet?: { cmd?: string } } | null)?.packet?.cmd === 'suback'
        if (refused) reject(new FnbusError('FNBUS_NOT_AUTHORIZED', `the gateway refused the subscription to ${filter}`))
        else if (err) reject(new FnbusError('FNBUS_DISCONNECTED', `subscribe failed: ${err.message}`, { cause: err }))
        else resolve()
      })
    })
  }

  unsubscribe (filter: string): Promise<void> {
    return new Promise<void>(resolve => this.#mqtt.unsubscribe(filter, () => resolve()))
  }

  #onConnect (writer: FrameWriter): void {
    const epoch = ++this.#epoch
    this.#tap.checkConnection()
    writer.checkConnection()
    // MQTT.js opens its socket with Nagle's algorithm on: small calls and answers would wait for it
    const stream = this.#mqtt.stream as { setNoDelay?: (noDelay: boolean) => void } | undefined
    stream?.setNoDelay?.(true)
    this.#mqtt.subscribe(this.#inbox, { qos: 0 }, (err) => {
      if (err !== null && err !== undefined) return // the connection dropped; the next 'connect' starts again
      if (epoch !== this.#epoch) return
      this.#listener.subscribed(epoch)
    })
  }

  #onClose (): void {
    this.#outbox.clear()
    const wasUp = this.#welcome !== undefined
    this.#welcome = undefined
    this.#listener.closed(this.#epoch, wasUp)
  }

  #onMessage (topic: string, payload: Buffer, packet: { qos: number, retain: boolean }): void {
    if (topic === this.#inbox) {
      // the gateway's bus messages are QoS 0, not retained: the inbox reader takes them off a socket it reads
      if (this.#tap.reading && packet.qos === 0 && !packet.retain) this.#tap.passedBy()
      this.#listener.inbox(payload)
      return
    }
    this.#listener.message(topic, payload, packet)
  }

  /**
   * A refused CONNECT (bad credentials, a client id that is not the identity's, anonymous not allowed) is final:
   * MQTT.js stops reconnecting, so every call fails now with FNBUS_NOT_AUTHORIZED instead of waiting for nothing.
   */
  #onError (err: Error & { code?: unknown }): void {
    if (typeof err.code === 'number' && REFUSED_CONNACK_CODES.has(err.code)) {
      const refusal = new FnbusError('FNBUS_NOT_AUTHORIZED', `the gateway at ${this.url} refused the connection: ${err.message.replace(/^Connection refused: /, '')}`, { cause: err })
      this.#listener.warning(refusal)
      this.#listener.refused(refusal)
      return
    }
    this.#listener.warning(err)
  }
}

function nonEmpty (value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}

/** The CA to trust for `mqtts://`: the option, else the file `FNBUS_CA` names (read once, at construction). */
function tlsOptions (options: FCClientOptions): { ca?: string | Buffer } {
  if (options.ca !== undefined) return { ca: options.ca }
  if (options.mqtt?.ca !== undefined) return {}
  const file = nonEmpty(process.env.FNBUS_CA)
  if (file === undefined) return {}
  try {
    // fetched here, not imported: the SDK's browser bundle has no node:fs, and a page never has FNBUS_CA
    return { ca: process.getBuiltinModule('node:fs').readFileSync(file) }
  } catch (err) {
    throw invalidArgument(`FNBUS_CA: cannot read ${file}: ${(err as Error).message}`)
  }
}
