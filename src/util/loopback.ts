import { isIP } from 'node:net'

/**
 * True for addresses only this machine reaches: 127.0.0.0/8, ::1 (either way it is written), IPv4 loopback mapped
 * into IPv6, and the name `localhost`. Serves both a host to listen on and a peer's remote address.
 */
export function isLoopback (host: string): boolean {
  if (host === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  const v6 = host.toLowerCase()
  return v6 === '::1' || v6 === '0:0:0:0:0:0:0:1' || v6.startsWith('::ffff:127.')
}
