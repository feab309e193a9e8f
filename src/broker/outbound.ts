import type { Duplex } from 'node:stream'

/**
 * Writes one finished MQTT frame (a QoS 0 PUBLISH to the client's inbox, built by the session's batcher) straight to
 * the connection, bypassing aedes' topic matching: the gateway already knows the one recipient. Returns false when
 * the connection is not writable.
 */
export function writeFrame (conn: Duplex, frame: Buffer): boolean {
  if (conn.destroyed || !conn.writable) return false
  conn.write(frame)
  return true
}
