// The reference model of the authorization policy, written as plainly as possible (topic containment by
// enumerating every topic of a finite universe), and generators of policies and requests over that universe.
// Shared by the property tests of the policy and the end-to-end delivery test.
import fc from 'fast-check'

// ---- the reference model ----------------------------------------------------------------------------------------

/** Topic levels the generated filters and topics use; `z` appears in no filter, so it stands for "any other level". */
export const LEVELS = ['a', 'b', '', '$s', 'sa']
export const FRESH = 'z'
export const MAX_FILTER_DEPTH = 3

/** Every topic of up to MAX_FILTER_DEPTH + 1 levels over LEVELS and FRESH: enough to tell any two filters apart. */
const UNIVERSE = (() => {
  const out = []
  const grow = prefix => {
    if (prefix.length > 0 && prefix.join('/') !== '') out.push(prefix.join('/'))
    if (prefix.length === MAX_FILTER_DEPTH + 1) return
    for (const level of [...LEVELS, FRESH]) grow([...prefix, level])
  }
  grow([])
  return out
})()

/** MQTT 3.1.1 §4.7, spelled out: recursion over levels; wildcards at the first level skip `$` topics. */
export function referenceMatch (filter, topic) {
  const f = filter.split('/')
  const t = topic.split('/')
  if (t[0].startsWith('$') && (f[0] === '+' || f[0] === '#')) return false
  const go = (i) => {
    if (i === f.length) return i === t.length
    if (f[i] === '#') return true
    if (i === t.length) return false
    return (f[i] === '+' || f[i] === t[i]) && go(i + 1)
  }
  return go(0)
}

const matchedSets = new Map()
export function topicsMatchedBy (filter) {
  let set = matchedSets.get(filter)
  if (set === undefined) {
    set = UNIVERSE.filter(topic => referenceMatch(filter, topic))
    matchedSets.set(filter, set)
  }
  return set
}

/** Outer contains inner when every topic of the universe that inner matches, outer matches. */
export function referenceContains (outer, inner) {
  return topicsMatchedBy(inner).every(topic => referenceMatch(outer, topic))
}

export function referenceIdentityMatch (pattern, identity) {
  if (!pattern.includes('*')) return pattern === identity
  if (identity.startsWith('$')) return false
  const [head, ...rest] = pattern.split('*')
  // patterns here have one `*`: a prefix and a suffix
  const tail = rest.join('*')
  return identity.length >= head.length + tail.length && identity.startsWith(head) && identity.endsWith(tail)
}

export function referenceSubstitute (filter, identity) {
  if (!filter.split('/').includes('{identity}')) return filter
  if (identity === '' || /[+#]/.test(identity) || identity.startsWith('$')) return undefined
  return filter.split('/').map(level => level === '{identity}' ? identity : level).join('/')
}

export function referenceFunctionMatch (pattern, fn) {
  if (pattern === '*') return true
  const [ps, pf] = pattern.split('/')
  const [s, f] = fn.split('/')
  return (ps === '*' || ps === s) && (pf === '*' || pf === f)
}

export function referenceDecide (rules, identity, action, subject) {
  if (identity === '$gateway') return true
  const applying = rules.filter(rule => referenceIdentityMatch(rule.identity, identity))
  const listed = side => applying.flatMap(rule => rule[side]?.[action === 'receive' ? 'subscribe' : action] ?? [])
  const grants = side => {
    const list = listed(side)
    if (action === 'invoke' || action === 'serve' || action === 'manage') return list
    return list.map(filter => referenceSubstitute(filter, identity)).filter(filter => filter !== undefined)
  }
  const test = grant => {
    switch (action) {
      case 'publish': case 'receive': return referenceMatch(grant, subject)
      case 'subscribe': return referenceContains(grant, subject)
      default: return referenceFunctionMatch(grant, subject)
    }
  }
  // a function's own identity serves it unless a deny says otherwise
  if (action === 'serve' && identity === subject) return !grants('deny').some(test)
  return grants('allow').some(test) && !grants('deny').some(test)
}

// ---- generators ---------------------------------------------------------------------------------------------------

export const level = fc.constantFrom(...LEVELS)
export const filterLevel = fc.oneof({ weight: 3, arbitrary: level }, { weight: 1, arbitrary: fc.constant('+') })
export const filterArb = fc.tuple(
  fc.array(filterLevel, { minLength: 0, maxLength: MAX_FILTER_DEPTH }),
  fc.boolean()
).map(([levels, hash]) => (hash ? (levels.length === MAX_FILTER_DEPTH ? [...levels.slice(0, -1), '#'] : [...levels, '#']) : levels).join('/'))
  .filter(filter => filter !== '') // [MQTT-4.7.3-1] a filter has at least one character
export const grantFilterArb = fc.oneof(
  { weight: 5, arbitrary: filterArb },
  { weight: 1, arbitrary: fc.constantFrom('#', '{identity}/#', 'a/{identity}', '+/{identity}/#', '$s/#') }
)
export const topicArb = fc.array(fc.constantFrom(...LEVELS, FRESH), { minLength: 1, maxLength: MAX_FILTER_DEPTH + 1 }).map(levels => levels.join('/'))
  .filter(topic => topic !== '')
export const FUNCTIONS = ['S/f', 'S/g', 'T/f', 'T/g']
export const fnPatternArb = fc.constantFrom('S/f', 'S/*', '*/f', '*', '*/*', 'T/g', 'T/*')
export const IDENTITIES = ['a', 'b', 'sa', 'sb', '$anonymous', 'a/b', 'x', 'S/f']
export const identityPatternArb = fc.constantFrom('a', 'b', 's*', '*', '$anonymous', 'a*', '*b', 'x', 'S/*', 'S/f')

export const grantsArb = fc.record({
  publish: fc.array(grantFilterArb, { maxLength: 3 }),
  subscribe: fc.array(grantFilterArb, { maxLength: 3 }),
  invoke: fc.array(fnPatternArb, { maxLength: 2 }),
  serve: fc.array(fnPatternArb, { maxLength: 2 }),
  manage: fc.array(fnPatternArb, { maxLength: 2 }),
}, { requiredKeys: [] })
export const ruleArb = fc.record({ identity: identityPatternArb, allow: grantsArb, deny: grantsArb }, { requiredKeys: ['identity', 'allow'] })

export const queryArb = fc.oneof(
  fc.tuple(fc.constantFrom('publish', 'receive'), topicArb),
  fc.tuple(fc.constant('subscribe'), filterArb),
  fc.tuple(fc.constantFrom('invoke', 'serve', 'manage'), fc.constantFrom(...FUNCTIONS))
)
