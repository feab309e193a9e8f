import type { ServerResponse } from 'node:http'

/** Answers `value` as JSON, never cached. A module of its own: plugins import it from the package, which stays without the HTTP server. */
export function sendJson (res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' })
  res.end(body)
}
