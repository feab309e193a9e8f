/**
 * MQTT topic filters as the policy needs them: does a filter match a topic, and does one filter contain another
 * (match every topic the other matches). Both follow MQTT 3.1.1 §4.7, including [MQTT-4.7.2-1]: a filter that
 * starts with a wildcard does not match topics that start with `$`.
 *
 * Filters and topics are taken as level arrays (`topic.split('/')`), so a decision over many grants splits the
 * topic once.
 */

export type Levels = readonly string[]

export function levelsOf (topicOrFilter: string): Levels {
  return topicOrFilter.split('/')
}

/** True when `filter` is a well-formed MQTT topic filter: `#` only as the whole last level, `+` only as a whole level. */
export function isValidFilter (filter: string): boolean {
  if (filter.length === 0) return false
  const levels = levelsOf(filter)
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] as string
    if (level === '#') {
      if (i !== levels.length - 1) return false
    } else if (level !== '+' && (level.includes('#') || level.includes('+'))) {
      return false
    }
  }
  return true
}

function isDollar (level: string | undefined): boolean {
  return level !== undefined && level.charCodeAt(0) === 36
}

/** Does `filter` match the topic (a name without wildcards)? */
export function filterMatches (filter: Levels, topic: Levels): boolean {
  if (isDollar(topic[0]) && (filter[0] === '+' || filter[0] === '#')) return false
  for (let i = 0; i < filter.length; i++) {
    const level = filter[i] as string
    // `#` also matches the parent level: `a/#` matches `a` [MQTT-4.7.1-2]
    if (level === '#') return true
    if (i >= topic.length) return false
    if (level !== '+' && level !== topic[i]) return false
  }
  return filter.length === topic.length
}

/**
 * Does `outer` match every topic `inner` matches? A grant of `sensors/+/temp` contains `sensors/room1/temp` and
 * itself, but not `sensors/#`, which also matches `sensors/x/humidity`.
 */
export function filterContains (outer: Levels, inner: Levels): boolean {
  for (let i = 0; ; i++) {
    const o = outer[i]
    const n = inner[i]
    if (o === '#') {
      // `#` at the first level does not match `$` topics; the inner filter may only name such topics by a literal
      return !(i === 0 && isDollar(n))
    }
    if (o === undefined || n === undefined) return o === n
    if (n === '#') {
      // Inner `X/#` matches X itself, which outer (not `#` here) does not match: unless X is the empty topic,
      // which no one can publish (inner `#`, or `/#`). Then inner means "anything at least one level further",
      // exactly what outer's `+/#` from here means: `+/#` contains `#`, and `/+/#` contains `/#`.
      const parentIsEmptyTopic = i === 0 || (i === 1 && inner[0] === '')
      return parentIsEmptyTopic && o === '+' && outer[i + 1] === '#'
    }
    // an inner `+` matches levels that only the same or a wider wildcard covers
    if (n === '+') {
      if (o !== '+') return false
    } else if (o === '+') {
      if (i === 0 && isDollar(n)) return false
    } else if (o !== n) {
      return false
    }
  }
}
