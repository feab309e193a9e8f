// MQTT topics as NATS subjects, for the cluster's events (docs/cluster.md, "Events"): a pure bijection, so that the
// gateway a message arrives at rebuilds exactly the topic it was published on, and no topic can be made to land on
// another's subject.

/**
 * How a topic becomes the tokens of a subject. Each MQTT level (the parts between `/`) is one NATS token:
 *
 * - A character NATS reserves or rejects is written `%XX`, its byte in two upper-case hex digits: `%` itself (`%25`),
 *   `.` (`%2E`: NATS' token separator), `*` and `>` (`%2A`, `%3E`: its wildcards), and every ASCII whitespace or
 *   control character, U+0000–U+0020 and U+007F (NATS splits its protocol lines on whitespace).
 * - Every other character, UTF-8 included, stands as it is (`°C` stays `°C`): subjects stay readable in `nats sub`.
 * - An empty level (`a//b`, a leading or trailing `/`) is the token `%` alone, which no escaped level can be (an
 *   escape is always three characters).
 *
 * So `sensors/line 1/temp.avg` is `PREFIX.ev.sensors.line%201.temp%2Eavg` and `/a/` is `PREFIX.ev.%.a.%`. Decoding
 * accepts only what encoding writes (upper-case hex, only the escaped characters escaped, no raw `/`), so every
 * subject has at most one topic and the round trip is exact both ways. (`+` and `#` stand as they are: no topic
 * published has them, and the gateway refuses one that arrives with them as it refuses any topic a client could not
 * publish.) A topic with a lone UTF-16 surrogate
 * (not expressible in UTF-8, so never from an MQTT client) has no subject.
 */
export const SUBJECT_ESCAPING = 'percent-encoding of %, ., *, >, U+0000-U+0020 and U+007F per level; an empty level is %'

/**
 * The longest subject the gateway publishes, in bytes. nats-server refuses a protocol line over its
 * `max_control_line` (4 KiB by default) and closes the connection that sent it: a subject must leave room in the
 * line for the verb, the reply inbox and the sizes. A topic of up to 1,300 bytes (every byte escaped: ×3) always fits.
 */
export const MAX_SUBJECT_BYTES = 3_968

const PERCENT = 0x25
/** Upper-case hex digits, by value. */
const HEX = '0123456789ABCDEF'

/** Whether `code` (a UTF-16 unit) is written `%XX` in a token. */
function escaped (code: number): boolean {
  return code <= 0x20 || code === 0x7f || code === PERCENT || code === 0x2e || code === 0x2a || code === 0x3e
}

/** The token of one MQTT level. */
export function encodeLevel (level: string): string {
  if (level.length === 0) return '%'
  let out: string | undefined
  let from = 0
  for (let i = 0; i < level.length; i++) {
    const code = level.charCodeAt(i)
    if (!escaped(code)) continue
    out = (out ?? '') + level.slice(from, i) + '%' + HEX[code >> 4] + HEX[code & 15]
    from = i + 1
  }
  // most levels need no escape: no string is built for them
  return out === undefined ? level : out + level.slice(from)
}

/** The level of one token; undefined when no level encodes to it. */
export function decodeLevel (token: string): string | undefined {
  if (token === '%') return ''
  if (token.length === 0) return undefined
  let out: string | undefined
  let from = 0
  for (let i = 0; i < token.length; i++) {
    const code = token.charCodeAt(i)
    if (code === PERCENT) {
      const value = hexValue(token.charCodeAt(i + 1)) * 16 + hexValue(token.charCodeAt(i + 2))
      // NaN for a missing or non-hex digit; an escape of a character that is not escaped is not ours either
      if (!(value >= 0) || !escaped(value)) return undefined
      out = (out ?? '') + token.slice(from, i) + String.fromCharCode(value)
      i += 2
      from = i + 1
      continue
    }
    // raw, these are never written by encodeLevel (`/` splits levels)
    if (escaped(code) || code === 0x2f) return undefined
    if (isLoneSurrogate(token, i)) return undefined
    if (code >= 0xd800 && code <= 0xdbff) i++
  }
  return out === undefined ? token : out + token.slice(from)
}

/** 0–15 for an upper-case hex digit, NaN otherwise. */
function hexValue (code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30
  if (code >= 0x41 && code <= 0x46) return code - 0x37
  return Number.NaN
}

function isLoneSurrogate (text: string, i: number): boolean {
  const code = text.charCodeAt(i)
  if (code >= 0xd800 && code <= 0xdbff) {
    const next = text.charCodeAt(i + 1)
    return !(next >= 0xdc00 && next <= 0xdfff)
  }
  return code >= 0xdc00 && code <= 0xdfff
}

/**
 * The subject under `base` (`PREFIX.ev` or `PREFIX.ret`) of an MQTT topic; undefined when it has none: an empty topic,
 * a lone surrogate, or a subject over MAX_SUBJECT_BYTES.
 */
export function topicToSubject (base: string, topic: string): string | undefined {
  if (topic.length === 0) return undefined
  let subject = base
  let from = 0
  for (let i = 0; i <= topic.length; i++) {
    if (i < topic.length) {
      const code = topic.charCodeAt(i)
      if (code !== 0x2f) {
        if (code >= 0xd800 && code <= 0xdfff) {
          if (isLoneSurrogate(topic, i)) return undefined
          i++
        }
        continue
      }
    }
    subject += '.' + encodeLevel(topic.slice(from, i))
    from = i + 1
  }
  // a UTF-16 unit is 1 to 3 UTF-8 bytes: count the bytes only when the length cannot tell
  if (subject.length > MAX_SUBJECT_BYTES || (subject.length * 3 > MAX_SUBJECT_BYTES && Buffer.byteLength(subject) > MAX_SUBJECT_BYTES)) return undefined
  return subject
}

/**
 * The MQTT topic of a subject under `base`; undefined when the subject is not under it, or is not one that
 * topicToSubject writes. `maxLevels` stops the work early on a subject of more tokens than any topic the gateway
 * takes (the caller checks its own bounds on what this returns).
 */
export function subjectToTopic (base: string, subject: string, maxLevels = Number.POSITIVE_INFINITY): string | undefined {
  if (subject.length <= base.length + 1 || !subject.startsWith(base) || subject.charCodeAt(base.length) !== 0x2e) return undefined
  let topic = ''
  let levels = 0
  let from = base.length + 1
  for (;;) {
    const dot = subject.indexOf('.', from)
    const token = dot === -1 ? subject.slice(from) : subject.slice(from, dot)
    const level = decodeLevel(token)
    if (level === undefined || ++levels > maxLevels) return undefined
    topic += levels === 1 ? level : '/' + level
    // one empty level is the empty topic, which is none
    if (dot === -1) return topic.length === 0 ? undefined : topic
    from = dot + 1
  }
}

/** Subject prefixes are NATS tokens of letters, digits, `-` and `_`, separated by dots: `fnbus`, `site-7.fnbus`. */
const PREFIX = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/

/** The subject spaces of the cluster's events under one prefix. */
export interface EventSubjects {
  /** `PREFIX.ev`: live messages, one subject per topic. */
  readonly events: string
  /** `PREFIX.ret`: the last retained message of each topic, in the retained stream. */
  readonly retained: string
  /** `PREFIX_RETAINED`, upper-case, dots as `_`: the JetStream stream of retained messages. */
  readonly retainedStream: string
}

/** The subject spaces of `prefix`; throws on a prefix that is not one (a configuration error). */
export function eventSubjects (prefix: string): EventSubjects {
  if (!PREFIX.test(prefix) || prefix.length > 128) {
    throw new Error(`cluster subject prefix ${JSON.stringify(prefix)}: must be dot-separated tokens of letters, digits, - and _ (at most 128 characters)`)
  }
  return {
    events: `${prefix}.ev`,
    retained: `${prefix}.ret`,
    retainedStream: `${prefix.replaceAll('.', '_').toUpperCase()}_RETAINED`,
  }
}
