// The connection to a bridge's remote broker: one MQTT.js client per attempt (its own reconnection and its
// in-memory resend queue are off, so what is sent again after a reconnection is decided by the bridge's queue
// alone, in its order), backoff with jitter between attempts, and what went wrong kept for status, log and metrics.
import type { IClientOptions, MqttClient } from 'mqtt'

/** Why the link is not up, as status and metrics name it. */
export type LinkFailure = 'refused_bad_credentials' | 'refused_not_authorized' | 'refused_identifier' | 'refused' | 'unreachable' | 'dropped' | 'keeps_dropping' | 'timeout'

export interface LinkOptions {
  readonly url: string
  readonly mqtt: IClientOptions
  /** First pause after a failure; each failure doubles it up to maxDelayMs. */
  readonly minDelayMs: number
  readonly maxDelayMs: number
  /** A connection that lasted less than this before it dropped counts as dropped at once (a client id taken elsewhere). */
  readonly stableMs: number
  readonly random?: () => number
  /** Loads MQTT.js: only a gateway with bridges does. */
  readonly load?: () => Promise<(url: string, options: IClientOptions) => MqttClient>
  readonly onUp: (client: MqttClient) => void
  readonly onDown: (failure: LinkFailure, detail: string) => void
}

const SHORT_DROPS_REPORTED = 3

async function loadMqtt (): Promise<(url: string, options: IClientOptions) => MqttClient> {
  const mqtt = await import('mqtt')
  return mqtt.connect
}

export class RemoteLink {
  readonly #options: LinkOptions
  #client: MqttClient | undefined
  #timer: NodeJS.Timeout | undefined
  #delayMs: number
  #closed = false
  #upSince = 0
  #shortDrops = 0
  /** Attempts that failed since the start, and connections made. */
  failures = 0
  connects = 0
  state: 'connecting' | 'connected' | 'waiting' | 'closed' = 'waiting'
  lastFailure: LinkFailure | undefined
  lastError: string | undefined
  lastConnectedAt: number | undefined

  constructor (options: LinkOptions) {
    this.#options = options
    this.#delayMs = options.minDelayMs
  }

  get connected (): boolean {
    return this.state === 'connected'
  }

  /** The pause before the next attempt, ms (status shows it). */
  get nextDelayMs (): number {
    return this.#delayMs
  }

  start (): void {
    this.#attempt().catch(err => this.#failed('unreachable', (err as Error).message))
  }

  async #attempt (): Promise<void> {
    if (this.#closed) return
    this.state = 'connecting'
    const connect = await (this.#options.load ?? loadMqtt)()
    if (this.#closed) return
    const client = connect(this.#options.url, { ...this.#options.mqtt, reconnectPeriod: 0, resubscribe: false, queueQoSZero: false })
    writePublishesWhole(client)
    this.#client = client
    let failure: { kind: LinkFailure, detail: string } | undefined
    client.on('connect', () => {
      if (this.#client !== client) return
      this.state = 'connected'
      this.connects++
      this.#upSince = performance.now()
      this.lastConnectedAt = Date.now()
      this.#options.onUp(client)
    })
    client.on('error', (err: Error & { code?: unknown }) => {
      failure ??= classify(err)
    })
    client.on('close', () => {
      if (this.#client !== client) return
      this.#client = undefined
      client.removeAllListeners('connect')
      // a client the link let go of must not resend or reconnect on its own
      client.end(true)
      if (this.#closed) return
      if (this.state === 'connected') {
        const short = performance.now() - this.#upSince < this.#options.stableMs
        this.#shortDrops = short ? this.#shortDrops + 1 : 0
        if (!short) this.#delayMs = this.#options.minDelayMs
        const kind: LinkFailure = this.#shortDrops >= SHORT_DROPS_REPORTED ? 'keeps_dropping' : 'dropped'
        this.#failed(kind, failure?.detail ?? (kind === 'keeps_dropping'
          ? `the connection dropped ${this.#shortDrops} times in a row within ${this.#options.stableMs} ms of connecting (is the client id in use elsewhere?)`
          : 'the remote broker closed the connection'))
        return
      }
      this.#failed(failure?.kind ?? 'unreachable', failure?.detail ?? 'the connection closed before the remote broker accepted it')
    })
  }

  #failed (kind: LinkFailure, detail: string): void {
    this.failures++
    this.lastFailure = kind
    this.lastError = detail
    this.state = 'waiting'
    this.#options.onDown(kind, detail)
    if (this.#closed) return
    // full jitter over the upper half: links of many gateways that lost the same broker do not come back in step
    const delay = Math.round(this.#delayMs * (0.5 + 0.5 * (this.#options.random ?? Math.random)()))
    this.#delayMs = Math.min(this.#delayMs * 2, this.#options.maxDelayMs)
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.start()
    }, delay)
  }

  /** Closes the connection for good: what is in flight stays in the bridge's queue. */
  async close (): Promise<void> {
    this.#closed = true
    this.state = 'closed'
    clearTimeout(this.#timer)
    const client = this.#client
    this.#client = undefined
    if (client !== undefined) await new Promise<void>(resolve => client.end(true, {}, () => resolve()))
  }
}

/** What an MQTT.js error says about the attempt. */
function classify (err: Error & { code?: unknown }): { kind: LinkFailure, detail: string } {
  switch (err.code) {
    case 4: case 134: return { kind: 'refused_bad_credentials', detail: 'the remote broker refused the connection: bad user name or password' }
    case 5: case 135: return { kind: 'refused_not_authorized', detail: 'the remote broker refused the connection: not authorized' }
    case 2: case 133: return { kind: 'refused_identifier', detail: 'the remote broker refused the client id' }
    case 1: case 3: return { kind: 'refused', detail: `the remote broker refused the connection (CONNACK ${err.code})` }
    default: return { kind: /timeout/i.test(err.message) ? 'timeout' : 'unreachable', detail: err.message }
  }
}

/** What MQTT.js writes a packet with (a private method of its client, 5.x). */
type WritePacket = (this: MqttClient, packet: { cmd: string }, cb?: () => void) => void
const PUBLISH = 0x30

/**
 * Has `client` write each MQTT 3.1.1 PUBLISH as one buffer, one write. MQTT.js writes a packet through mqtt-packet's
 * writeToStream, which makes five or six writes of a few bytes each through the socket's Writable (header, length,
 * topic's length, topic, id, payload): measured, with aedes' PUBACKs, ~9 chunks per message forwarded in the
 * socket's writev and the streams' bookkeeping for each. Writes of one turn still leave together (corked until the
 * next tick, as mqtt-packet does). Anything else, and a client of another MQTT.js without that method, is left alone.
 */
export function writePublishesWhole (client: MqttClient): void {
  const internals = client as unknown as { _writePacket?: WritePacket, noop?: unknown }
  const original = internals._writePacket
  if (typeof original !== 'function') return
  internals._writePacket = function writePacket (this: MqttClient, packet, cb) {
    const publish = packet as unknown as { cmd: string, topic: unknown, payload: unknown, qos?: number, retain?: boolean, dup?: boolean, messageId?: number, properties?: unknown }
    if (publish.cmd !== 'publish' || this.options.protocolVersion === 5 || publish.properties !== undefined ||
      typeof publish.topic !== 'string' || !Buffer.isBuffer(publish.payload) || (publish.qos !== 0 && typeof publish.messageId !== 'number')) {
      original.call(this, packet, cb)
      return
    }
    const stream = this.stream
    this.emit('packetsend', packet as never)
    const qos = publish.qos ?? 0
    const topicBytes = Buffer.byteLength(publish.topic)
    const remaining = 2 + topicBytes + (qos > 0 ? 2 : 0) + publish.payload.length
    let lengthBytes = 1
    for (let n = remaining; n > 127; n = Math.floor(n / 128)) lengthBytes++
    const out = Buffer.allocUnsafe(1 + lengthBytes + remaining)
    out[0] = PUBLISH | (qos << 1) | (publish.dup === true ? 8 : 0) | (publish.retain === true ? 1 : 0)
    let at = 1
    let n = remaining
    do {
      const digit = n % 128
      n = Math.floor(n / 128)
      out[at++] = n > 0 ? digit | 0x80 : digit
    } while (n > 0)
    out.writeUInt16BE(topicBytes, at)
    at += 2
    at += out.write(publish.topic, at, 'utf8')
    if (qos > 0) {
      out.writeUInt16BE(publish.messageId as number, at)
      at += 2
    }
    publish.payload.copy(out, at)
    stream.cork()
    process.nextTick(uncork, stream)
    const flowing = stream.write(out)
    if (!flowing && cb !== undefined && cb !== internals.noop) stream.once('drain', cb)
    else if (cb !== undefined) cb()
  }
}

function uncork (stream: MqttClient['stream']): void {
  stream.uncork()
}
