import type { Duplex } from 'node:stream'
import type { MessagePort } from 'node:worker_threads'
import { createPortDuplex } from '../util/port-duplex.js'

/**
 * The key of `workerData` under which a thread host hands a function's thread its way to the gateway. Every copy of
 * the SDK in the thread (the function may bundle its own) finds it there: the thread's data, not a module's state.
 */
export const THREAD_DATA_KEY = 'fnbus:thread'
/** What travels under THREAD_DATA_KEY; `v` changes when its shape does. */
export interface ThreadData {
  readonly v: 1
  /** Where the thread asks for connections (`{ t: 'link', port }`) and talks with its supervisor. */
  readonly control: MessagePort
  /** The gateway's address, for messages. */
  readonly url: string
}

/** A connection request: the thread keeps one end of a MessageChannel, the host hands the other to the gateway. */
export interface LinkRequest {
  readonly t: 'link'
  readonly port: MessagePort
}

/** The way to the gateway of the thread this code runs in, when it is a function's thread; else undefined. */
export interface ThreadLink {
  readonly url: string
  /** Opens one connection: a byte stream the gateway reads as it reads a socket. */
  readonly connect: (options?: unknown) => Duplex
}

/**
 * Found through `workerData` (Node only: fetched, not imported, since the browser bundle reaches this file), so a
 * function's `new FCClient()` in a thread connects without a socket and without any setting.
 */
export function findThreadLink (): ThreadLink | undefined {
  if (typeof process === 'undefined' || typeof process.getBuiltinModule !== 'function') return undefined
  const threads = process.getBuiltinModule('node:worker_threads')
  if (threads === undefined || threads.isMainThread) return undefined
  const data = (threads.workerData as Record<string, unknown> | null | undefined)?.[THREAD_DATA_KEY] as Partial<ThreadData> | undefined
  if (data?.v !== 1 || !(data.control instanceof threads.MessagePort) || typeof data.url !== 'string') return undefined
  const control = data.control
  return {
    url: data.url,
    connect: () => {
      const { port1, port2 } = new threads.MessageChannel()
      control.postMessage({ t: 'link', port: port2 } satisfies LinkRequest, [port2])
      return createPortDuplex(port1)
    },
  }
}
