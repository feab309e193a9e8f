import type { Aedes, Client as AedesClient, Connection } from 'aedes'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { NormalizedBusOptions } from '../options.js'
import type { GatewayEvents } from '../observations.js'
import { Admission } from './admission.js'
import { guardFrames } from './frame-guard.js'
import { patchPointMissing } from './patch-points.js'

/**
 * Where connections enter: the bounds on how many there are (all of them, and those not logged in yet), and the
 * frame guard in front of aedes.
 */
export class ConnectionGate {
  readonly #aedes: Aedes
  readonly #options: NormalizedBusOptions
  readonly #events: GatewayEvents
  /** Connections that have not logged in yet, within limits.maxPendingConnections. */
  readonly #admission: Admission
  /**
   * Connections handed to the frame guard whose CONNECT it has not passed yet. aedes registering one of them as a
   * client means it read the CONNECT around the guard (see patch-points.ts, `conn.read`).
   */
  readonly #unguarded = new WeakSet<Duplex>()
  #count = 0

  constructor (aedes: Aedes, options: NormalizedBusOptions, events: GatewayEvents) {
    this.#aedes = aedes
    this.#options = options
    this.#events = events
    this.#admission = new Admission(options.limits.maxPendingConnections, options.logger, () => {
      if (events.observed('rejected')) events.emit('rejected', { reason: 'max_pending_connections' })
    })
    aedes.on('client', (client: AedesClient) => {
      const conn = client.conn as Duplex
      this.#admission.admitted(conn)
      if (this.#unguarded.has(conn)) patchPointMissing(options.logger, 'conn.read', { clientId: client.id })
    })
  }

  /** Open client connections (those `handle` took). */
  get count (): number {
    return this.#count
  }

  /** Applies the bounds and the frame guard, then hands the connection to aedes. */
  handle (stream: Connection, request?: IncomingMessage): AedesClient | undefined {
    const { limits, logger } = this.#options
    const events = this.#events
    if (this.#count >= limits.maxConnections) {
      // before aedes sees it: a connection over the bound costs nothing but its socket, closed at once
      logger.warn({ limit: limits.maxConnections }, 'connection refused: limits.maxConnections reached')
      if (events.observed('rejected')) events.emit('rejected', { reason: 'max_connections' })
      stream.destroy()
      return undefined
    }
    // until it has logged in, a connection counts against a smaller budget of its own as well
    if (!this.#admission.enter(stream as Duplex)) return undefined
    this.#count++
    let counted = true
    const release = (): void => {
      if (counted) { counted = false; this.#count-- }
    }
    stream.once('close', release)
    this.#unguarded.add(stream as Duplex)
    guardFrames(stream, {
      maxFrameBytes: limits.maxFrameBytes,
      connectTimeoutMs: limits.connectTimeoutMs,
      onConnect: () => {
        this.#unguarded.delete(stream as Duplex)
        this.#admission.connected(stream as Duplex)
      },
      onViolation: (reason, kind) => {
        logger.warn({ reason }, 'connection cut by the frame guard')
        // a CONNECT refused (CONNACK 1 or 2) or never complete is a refused connection, as the authenticator's refusals are
        if (kind === 'identifier_rejected' || kind === 'unacceptable_protocol_version' || kind === 'connect_timeout') {
          if (events.observed('rejected')) events.emit('rejected', { reason: kind })
        } else if (events.observed('frameDropped')) {
          events.emit('frameDropped', { reason: kind })
        }
      },
    })
    return this.#aedes.handle(stream, request)
  }
}
