import { isIPv4, isIPv6 } from 'node:net'

/** A login that waited while its connection closed: nobody is left to answer, so its check never ran. */
export class LoginAbandoned extends Error {
  constructor () {
    super('the connection closed before its login was checked')
    this.name = 'LoginAbandoned'
  }
}

/** A login refused unchecked: its source address already has as many logins waiting as it may. */
export class LoginQueueFull extends Error {
  constructor (readonly source: string, readonly limit: number) {
    super(`${limit} logins from ${source} are waiting already (limits.maxPendingLoginsPerAddress)`)
    this.name = 'LoginQueueFull'
  }
}

interface Waiter {
  readonly task: () => Promise<unknown>
  readonly gone: () => boolean
  readonly resolve: (value: unknown) => void
  readonly reject: (err: unknown) => void
}

const NEVER_GONE = (): boolean => false

/**
 * The turns of the secret checks (scrypt derivations) that MQTT logins and HTTP Basic sign-ins share: at most
 * `concurrency` run at once, since they share libuv's thread pool with the store. Those that wait are queued per
 * source address and served in turn, one address after the other, so a flood from one address delays a login from
 * another by one check at most; each address may have `maxWaitingPerSource` waiting, and one more is refused at
 * once (LoginQueueFull). A check whose connection closed while it waited is dropped when its turn comes
 * (LoginAbandoned), and so does not delay the logins behind it.
 */
export class LoginQueue {
  readonly #concurrency: number
  readonly #maxWaitingPerSource: number
  #running = 0
  /** Waiting checks by source; a Map keeps the sources in turn order (a served source goes to the back). */
  readonly #waiting = new Map<string, Waiter[]>()

  constructor (concurrency: number, maxWaitingPerSource: number) {
    this.#concurrency = concurrency
    this.#maxWaitingPerSource = maxWaitingPerSource
  }

  /** Checks waiting for their turn, all sources together. */
  get waiting (): number {
    let count = 0
    for (const queue of this.#waiting.values()) count += queue.length
    return count
  }

  /**
   * Runs `task` in its turn. Rejects with LoginQueueFull when `source` has too many checks waiting, and with
   * LoginAbandoned when `gone()` says its connection closed before the turn came.
   */
  run<T> (source: string, task: () => Promise<T>, gone: () => boolean = NEVER_GONE): Promise<T> {
    if (gone()) return Promise.reject(new LoginAbandoned())
    if (this.#running < this.#concurrency && this.#waiting.size === 0) return this.#start(task)
    let queue = this.#waiting.get(source)
    if (queue !== undefined && queue.length >= this.#maxWaitingPerSource) {
      // those whose connection closed meanwhile give their places back first
      const live = queue.filter(waiter => {
        if (!waiter.gone()) return true
        waiter.reject(new LoginAbandoned())
        return false
      })
      queue.splice(0, queue.length, ...live)
      if (queue.length >= this.#maxWaitingPerSource) return Promise.reject(new LoginQueueFull(source, this.#maxWaitingPerSource))
    }
    return new Promise<T>((resolve, reject) => {
      if (queue === undefined) this.#waiting.set(source, queue = [])
      queue.push({ task, gone, resolve: resolve as (value: unknown) => void, reject })
    })
  }

  #start<T> (task: () => Promise<T>): Promise<T> {
    this.#running++
    const running = (async () => await task())()
    const done = (): void => {
      this.#running--
      this.#next()
    }
    running.then(done, done)
    return running
  }

  #next (): void {
    while (this.#running < this.#concurrency) {
      const first = this.#waiting.entries().next()
      if (first.done === true) return
      const [source, queue] = first.value
      const waiter = queue.shift()
      // the source goes to the back of the line, or leaves it
      this.#waiting.delete(source)
      if (queue.length > 0) this.#waiting.set(source, queue)
      if (waiter === undefined) continue
      if (waiter.gone()) {
        waiter.reject(new LoginAbandoned())
        continue
      }
      this.#start(waiter.task).then(waiter.resolve, waiter.reject)
    }
  }
}

/**
 * The key logins are queued under: an IPv4 address as it is, an IPv6 address by its /64 prefix (one subscriber's
 * network, where every host may take any number of addresses), and connections without an address (a Unix socket,
 * a stream an application hands to the bus) under one key.
 */
export function sourceOf (address: string | undefined): string {
  if (address === undefined || address === '') return 'local'
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped !== null) return mapped[1] as string
  if (isIPv4(address)) return address
  if (!isIPv6(address)) return address
  const [head = '', tail = ''] = address.split('%')[0]?.split('::') ?? []
  const left = head === '' ? [] : head.split(':')
  const right = tail === '' ? [] : tail.split(':')
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left
  return `${groups.slice(0, 4).map(group => Number.parseInt(group, 16).toString(16)).join(':')}::/64`
}
