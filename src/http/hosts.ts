import { isIP } from 'node:net'
import { hostname } from 'node:os'
import { configError } from '../errors.js'

/** A host name, or `.example.com` for that domain and every name under it; no port. */
const ALLOWED_HOST = /^\.?[a-z0-9_](?:[a-z0-9_-]*)(?:\.[a-z0-9_][a-z0-9_-]*)*$/i

/**
 * The names a browser may use in `Host` to reach the gateway's HTTP listeners (the HTTP port, the WebSocket
 * listener): a defence against DNS rebinding. A page of `evil.example` can make its own name resolve to 127.0.0.1
 * (or the gateway's LAN address) and read what the gateway answers there, as the same origin, with the trust a
 * request from that address gets; what it cannot change is the name its browser puts in `Host`.
 *
 * Always allowed: IP addresses (a rebinding page needs a name; a page cannot read an address's answers without
 * one), `localhost` and names under `.localhost` (resolved to loopback by the system itself, RFC 6761), and the
 * machine's host name (with and without its domain). Besides them: the names the operator lists
 * (`http.allowedHosts`) and the names the listeners were told to listen on.
 */
export class HostAllowList {
  readonly #exact: ReadonlySet<string>
  readonly #suffixes: readonly string[]
  readonly #names: readonly string[]

  constructor (names: readonly string[] = []) {
    this.#names = Object.freeze([...names])
    const exact = new Set<string>(machineNames())
    const suffixes: string[] = ['.localhost']
    for (const name of names) {
      const normal = normalName(name)
      if (normal.startsWith('.')) {
        suffixes.push(normal)
        exact.add(normal.slice(1))
      } else {
        exact.add(normal)
      }
    }
    this.#exact = exact
    this.#suffixes = suffixes
  }

  /** The names given (not the ones always allowed). */
  get names (): readonly string[] {
    return this.#names
  }

  /** This list and `names` besides. */
  with (names: readonly string[]): HostAllowList {
    return names.length === 0 ? this : new HostAllowList([...this.#names, ...names])
  }

  /**
   * Whether a request's `Host` header names this gateway. A request without one is not a browser's (every browser
   * sends it; Node refuses HTTP/1.1 without it), so it is allowed.
   */
  allows (header: string | undefined): boolean {
    if (header === undefined) return true
    const name = hostOf(header)
    if (name === undefined) return false
    if (isIP(name) !== 0) return true
    if (this.#exact.has(name)) return true
    for (const suffix of this.#suffixes) if (name.endsWith(suffix)) return true
    return false
  }
}

/** Validates `http.allowedHosts` (or a listener's own list): an array of host names or `.domain` entries. */
export function parseAllowedHosts (value: unknown, where: string): readonly string[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value)) throw configError(`${where} must be an array of host names, such as ["gateway.example.com", ".plant.example"]`)
  for (const entry of value) {
    if (typeof entry !== 'string' || entry.length > 253 || !ALLOWED_HOST.test(entry)) {
      throw configError(`${where}: ${JSON.stringify(entry)} is not a host name (no scheme, no port; ".example.com" allows a domain and every name under it)`)
    }
  }
  return Object.freeze([...value as string[]])
}

/** `Host`'s name: without its port, lower case, without a final dot; IPv6 without brackets. */
function hostOf (header: string): string | undefined {
  let name: string
  if (header.startsWith('[')) {
    const end = header.indexOf(']')
    if (end < 0) return undefined
    name = header.slice(1, end)
    return isIP(name) === 6 ? name : undefined
  }
  const colon = header.lastIndexOf(':')
  name = colon >= 0 && /^\d*$/.test(header.slice(colon + 1)) ? header.slice(0, colon) : header
  return normalName(name)
}

function normalName (name: string): string {
  const lower = name.toLowerCase()
  return lower.endsWith('.') ? lower.slice(0, -1) : lower
}

function machineNames (): string[] {
  const names = ['localhost']
  const own = normalName(hostname())
  if (own !== '') {
    names.push(own)
    const dot = own.indexOf('.')
    if (dot > 0) names.push(own.slice(0, dot))
  }
  return names
}
