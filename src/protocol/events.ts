import { invalidArgument } from '../errors.js'
import { viewBytes } from './codec.js'
import { isBusTopic } from './topics.js'

/**
 * Events are ordinary MQTT messages, so plain MQTT clients read them: strings travel as UTF-8, bytes as they are (a
 * typed array or DataView as the bytes it covers, an ArrayBuffer whole), anything else as JSON.
 */
export function encodeEventPayload (payload: unknown): Buffer {
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8')
  if (Buffer.isBuffer(payload)) return payload
  if (ArrayBuffer.isView(payload)) return viewBytes(payload)
  if (payload instanceof ArrayBuffer) return Buffer.from(payload)
  if (payload === undefined) return Buffer.alloc(0)
  try {
    return Buffer.from(JSON.stringify(payload), 'utf8')
  } catch (err) {
    throw invalidArgument(`event payload cannot be encoded as JSON: ${(err as Error).message}`)
  }
}

/** A topic an event may be published on: not empty, no wildcards, no NUL, not in the gateway's `$fn/` namespace. */
export function checkEventTopic (topic: unknown): string {
  if (typeof topic !== 'string' || topic.length === 0) throw invalidArgument('topic must be a non-empty string')
  if (topic.includes('+') || topic.includes('#')) throw invalidArgument(`topic ${JSON.stringify(topic)} must not contain wildcards`)
  if (topic.includes('\u0000')) throw invalidArgument('topic must not contain NUL')
  if (isBusTopic(topic)) throw invalidArgument(`topic ${JSON.stringify(topic)} is in the gateway's reserved $fn/ namespace`)
  return topic
}

/** A subscription filter: `+` only as a whole level, `#` only as the whole last level ([MQTT-4.7.1-2], [MQTT-4.7.1-3]). */
export function checkEventFilter (filter: unknown): string {
  if (typeof filter !== 'string' || filter.length === 0) throw invalidArgument('filter must be a non-empty string')
  if (filter.includes('\u0000')) throw invalidArgument('filter must not contain NUL')
  if (isBusTopic(filter)) throw invalidArgument(`filter ${JSON.stringify(filter)} is in the gateway's reserved $fn/ namespace`)
  const levels = filter.split('/')
  levels.forEach((level, i) => {
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) {
      throw invalidArgument(`filter ${JSON.stringify(filter)}: # must be the whole last level`)
    }
    if (level.includes('+') && level !== '+') throw invalidArgument(`filter ${JSON.stringify(filter)}: + must be a whole level`)
  })
  return filter
}

/** Whether a topic matches a filter, with MQTT's rule that wildcards at the first level skip `$` topics. */
export function topicMatches (filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    const level = f[i]
    if (level === '#') return true
    if (i >= t.length) return false
    if (level !== '+' && level !== t[i]) return false
  }
  return f.length === t.length
}
