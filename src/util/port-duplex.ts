import type { Duplex } from 'node:stream'
import type { MessagePort, TransferListItem } from 'node:worker_threads'
import { FnbusError } from '../errors.js'

/**
 * Bytes one end may have posted that the other has not yet taken in (acknowledged): the in-memory counterpart of
 * a socket's kernel buffers. Past it the writer holds its writes, so `writableLength` grows as it does on a socket
 * whose peer stopped reading, and the gateway's own bounds on a connection's buffered bytes apply unchanged.
 */
export const LINK_WINDOW_BYTES = 1024 * 1024
/** The largest message one end posts: a larger write, or what waited for room in the window, leaves as several. */
export const LINK_PIECE_BYTES = 256 * 1024
/** Messages one end may have posted that the other has not acknowledged. */
export const LINK_WINDOW_MESSAGES = 1024

/** An acknowledgement: bytes and messages taken in since the last one. Data travels as a bare ArrayBuffer. */
type Ack = [bytes: number, messages: number]

/**
 * A message beside the byte stream: a plain object that is not MQTT (the direct path's grants and reports between
 * a thread and the gateway, src/dispatcher/leases.ts), with the ports it transfers. Counted in the message window
 * like data, so a peer that floods them is cut as one that floods data is; what they mean is the listener's to check.
 */
export interface SideChannel {
  postSide (message: object, transfer?: readonly TransferListItem[]): void
  on (event: 'side', listener: (message: object) => void): this
}

/** The side channel of `stream` when it is a thread link, else undefined (a socket has none). */
export function sideChannelOf (stream: unknown): SideChannel | undefined {
  return typeof (stream as Partial<SideChannel> | null)?.postSide === 'function' ? stream as SideChannel : undefined
}

export interface PortDuplexOptions {
  readonly windowBytes?: number
  readonly pieceBytes?: number
  readonly windowMessages?: number
}

/**
 * A byte stream over a MessagePort, for one MQTT connection between a function's thread and the gateway's: what a
 * socket would carry, with no socket. Each end is one of these over one end of a MessageChannel, so the gateway
 * takes it as it takes a socket (`bus.handle`) and the thread's client reads and writes it as one.
 *
 * - Each write leaves at once as one message, as a write on a socket is one syscall: both ends write whole frames
 *   (the envelope batchers' frames; aedes corks a packet's pieces into one `_writev`), so a message is a frame, copied
 *   once into a buffer of its own whose ArrayBuffer is transferred rather than cloned (transfer: 2.3 µs per 100-byte
 *   message vs 2.9 copied; 5.9 vs 13.2 µs at 16 KiB). Holding the writes of a turn of the event loop for one message
 *   undid the batchers' early flush: a caller's window of 64 calls crossed each port as one convoy (~64 envelopes a
 *   message), and the caller, the gateway and the echo took turns, none busy. Posted per write, the window crosses
 *   as two halves: caller and echo threads at 64 in flight went from 86–90k to 150–152k calls/s (alternated runs).
 * - Bounded like a socket: a writer posts while less than `windowBytes` (and `windowMessages`) are unacknowledged;
 *   the reader acknowledges what its consumer has taken. A peer that posts past the window, or anything but data,
 *   acknowledgements and side messages (plain objects, SideChannel), breaks the protocol: the stream is destroyed
 *   with FNBUS_BAD_MESSAGE, so a thread that floods its port costs the gateway at most a window.
 * - Closing either end closes the port, which the other end sees as the end of its stream; a thread that dies
 *   (terminated, crashed, out of heap) closes its ports the same way.
 *
 * Built lazily from Node's own `stream` module: the SDK's browser bundle reaches this file but never a thread.
 */
export function createPortDuplex (port: MessagePort, options: PortDuplexOptions = {}): Duplex {
  const PortDuplex = portDuplexClass()
  return new PortDuplex(port, options)
}

type PortDuplexClass = new (port: MessagePort, options: PortDuplexOptions) => Duplex
let portDuplex: PortDuplexClass | undefined

function portDuplexClass (): PortDuplexClass {
  portDuplex ??= definePortDuplex(process.getBuiltinModule('node:stream').Duplex)
  return portDuplex
}

function definePortDuplex (DuplexBase: typeof Duplex): PortDuplexClass {
  return class PortDuplex extends DuplexBase {
    readonly #port: MessagePort
    readonly #windowBytes: number
    readonly #pieceBytes: number
    readonly #windowMessages: number
    /** Written, not yet posted. */
    #out: Buffer[] = []
    #outBytes = 0
    /** Posted, not yet acknowledged. */
    #inFlightBytes = 0
    #inFlightMessages = 0
    /** The callback of a write held while the window is full. */
    #heldCallback: ((err?: Error | null) => void) | undefined
    /** Received and not yet acknowledged (the peer's view of its window). */
    #unackedBytes = 0
    #unackedMessages = 0
    /** Received and taken by the consumer, not yet acknowledged. */
    #takenBytes = 0
    #takenMessages = 0
    /** Received while the consumer did not want more: taken when it next reads. */
    #waitingBytes = 0
    #waitingMessages = 0
    #portClosed = false

    constructor (port: MessagePort, options: PortDuplexOptions) {
      super({ allowHalfOpen: false })
      this.#port = port
      this.#windowBytes = options.windowBytes ?? LINK_WINDOW_BYTES
      this.#pieceBytes = options.pieceBytes ?? LINK_PIECE_BYTES
      this.#windowMessages = options.windowMessages ?? LINK_WINDOW_MESSAGES
      port.on('message', (message: unknown) => this.#onMessage(message))
      port.once('close', () => this.#onPortClose())
    }

    /** Posts a side message now, ahead of data waiting for room in the window (SideChannel). */
    postSide (message: object, transfer: readonly TransferListItem[] = []): void {
      if (this.#portClosed || this.destroyed) return
      this.#inFlightMessages++
      this.#port.postMessage(message, transfer as TransferListItem[])
    }

    /** A socket's: the inbox reader and the gateway set it on sockets; a port has no Nagle to turn off. */
    setNoDelay (): this {
      return this
    }

    override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
      this.#queue(chunk)
      this.#flush()
      if (this.#inFlightBytes + this.#outBytes <= this.#windowBytes) callback()
      else this.#heldCallback = callback
    }

    override _writev (chunks: { chunk: Buffer }[], callback: (err?: Error | null) => void): void {
      for (const { chunk } of chunks) this.#queue(chunk)
      this.#flush()
      if (this.#inFlightBytes + this.#outBytes <= this.#windowBytes) callback()
      else this.#heldCallback = callback
    }

    override _read (): void {
      if (this.#waitingBytes === 0 && this.#waitingMessages === 0) return
      this.#takenBytes += this.#waitingBytes
      this.#takenMessages += this.#waitingMessages
      this.#waitingBytes = 0
      this.#waitingMessages = 0
      this.#acknowledge()
    }

    override _final (callback: (err?: Error | null) => void): void {
      this.#flush(true)
      this.#closePort()
      callback()
    }

    override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
      // what was written before a destroy goes out, as a socket's kernel sends what it accepted: a CONNACK refusal
      // written just before the gateway destroys the connection must reach the client
      if (err === null) this.#flush(true)
      this.#closePort()
      this.#heldCallback = undefined
      callback(err)
    }

    #queue (chunk: Buffer): void {
      // the other end is gone: like a socket reset, writes go nowhere
      if (chunk.length === 0 || this.#portClosed) return
      this.#out.push(chunk)
      this.#outBytes += chunk.length
    }

    /**
     * Posts what was written, in pieces, while the window has room (`all`: regardless of it, before closing); what
     * does not fit waits for the next acknowledgement.
     */
    #flush (all = false): void {
      while (this.#outBytes > 0 && !this.#portClosed &&
        (all || (this.#inFlightBytes < this.#windowBytes && this.#inFlightMessages < this.#windowMessages))) {
        const size = Math.min(this.#outBytes, this.#pieceBytes)
        const piece = Buffer.allocUnsafeSlow(size)
        let at = 0
        while (at < size) {
          const chunk = this.#out[0] as Buffer
          const take = Math.min(chunk.length, size - at)
          chunk.copy(piece, at, 0, take)
          at += take
          if (take === chunk.length) this.#out.shift()
          else this.#out[0] = chunk.subarray(take)
        }
        this.#outBytes -= size
        this.#inFlightBytes += size
        this.#inFlightMessages++
        this.#port.postMessage(piece.buffer, [piece.buffer])
      }
      this.#release()
    }

    /** A write held for room goes on once what waits fits in the window again. */
    #release (): void {
      const callback = this.#heldCallback
      if (callback === undefined || this.#inFlightBytes + this.#outBytes > this.#windowBytes) return
      this.#heldCallback = undefined
      callback()
    }

    #onMessage (message: unknown): void {
      if (this.destroyed) return
      if (message instanceof ArrayBuffer) {
        this.#onData(message)
      } else if (Array.isArray(message) && message.length === 2 && Number.isSafeInteger(message[0]) && Number.isSafeInteger(message[1])) {
        this.#onAck(message as Ack)
      } else if (message !== null && typeof message === 'object' && !Array.isArray(message)) {
        this.#onSide(message)
      } else {
        this.#violation('a message that is neither data, an acknowledgement nor a side message')
      }
    }

    #onData (data: ArrayBuffer): void {
      const size = data.byteLength
      this.#unackedBytes += size
      this.#unackedMessages++
      if (size === 0 || size > this.#pieceBytes) {
        this.#violation(`a message of ${size} bytes`)
        return
      }
      if (this.#unackedBytes > this.#windowBytes + this.#pieceBytes || this.#unackedMessages > this.#windowMessages) {
        this.#violation(`${this.#unackedBytes} bytes in ${this.#unackedMessages} messages past its window`)
        return
      }
      if (this.push(Buffer.from(data))) {
        this.#takenBytes += size
        this.#takenMessages++
        this.#acknowledge()
      } else {
        this.#waitingBytes += size
        this.#waitingMessages++
      }
    }

    #onSide (message: object): void {
      if (++this.#unackedMessages > this.#windowMessages) {
        this.#violation(`${this.#unackedMessages} messages past its window`)
        return
      }
      // taken at once: its listener handles it now
      this.#takenMessages++
      this.#acknowledge()
      try {
        this.emit('side', message)
      } catch (err) {
        // a side message its listener could not take is the peer's fault: nothing reaches the event loop
        this.#violation(`a side message its listener refused (${(err as Error).message})`)
      }
    }

    /** Acknowledges what the consumer took once it is a quarter of either window: a few acknowledgements a window. */
    #acknowledge (): void {
      if (this.#takenBytes * 4 < this.#windowBytes && this.#takenMessages * 4 < this.#windowMessages) return
      const ack: Ack = [this.#takenBytes, this.#takenMessages]
      this.#unackedBytes -= this.#takenBytes
      this.#unackedMessages -= this.#takenMessages
      this.#takenBytes = 0
      this.#takenMessages = 0
      if (!this.#portClosed) this.#port.postMessage(ack)
    }

    #onAck ([bytes, messages]: Ack): void {
      if (bytes < 0 || messages < 0 || bytes > this.#inFlightBytes || messages > this.#inFlightMessages) {
        this.#violation('an acknowledgement of more than was sent')
        return
      }
      this.#inFlightBytes -= bytes
      this.#inFlightMessages -= messages
      if (this.#outBytes > 0) this.#flush()
      else this.#release()
    }

    #violation (what: string): void {
      this.destroy(new FnbusError('FNBUS_BAD_MESSAGE', `thread link: the other end broke the protocol (${what})`))
    }

    #onPortClose (): void {
      this.#portClosed = true
      this.#out = []
      this.#outBytes = 0
      this.#release()
      // the other end is gone: what it sent is still read, then the stream ends (and, not half-open, closes)
      if (!this.destroyed) this.push(null)
    }

    #closePort (): void {
      if (this.#portClosed) return
      this.#portClosed = true
      this.#port.close()
    }
  }
}
