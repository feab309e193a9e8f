/**
 * The `$fn/` namespace belongs to the gateway. Nothing else in fnbus spells these strings.
 *
 * - `$fn/up`: every client publishes its bus envelopes here; the gateway knows the sender from the connection.
 * - `$fn/in/{clientId}`: the one inbox of a client, where the gateway delivers answers and work. A client may
 *   subscribe to its own inbox and to nothing else under `$fn/`.
 */
export const BUS_PREFIX = '$fn/'
export const UP_TOPIC = '$fn/up'
const INBOX_PREFIX = '$fn/in/'

export function inboxTopic (clientId: string): string {
  return INBOX_PREFIX + clientId
}

export function isBusTopic (topic: string): boolean {
  // '$' is 36: most topics fail on the first character
  return topic.charCodeAt(0) === 36 && (topic.startsWith(BUS_PREFIX) || topic === '$fn')
}
