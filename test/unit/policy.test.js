// The authorization policy: its decisions against a reference model written as plainly as possible (topic
// containment by enumerating every topic of a finite universe), over generated policies, identities and requests.
import assert from 'node:assert/strict'
import test from 'node:test'
import fc from 'fast-check'
import { parsePolicy } from '../../dist/security/policy.js'
import { filterContains, filterMatches, levelsOf } from '../../dist/security/topic-filter.js'

// ---- the reference model ----------------------------------------------------------------------------------------

/** Topic levels the generated filters and topics use; `z` appears in no filter, so it stands for "any other level". */
const LEVELS = ['a', 'b', '', '$s', 'sa']
const FRESH = 'z'
const MAX_FILTER_DEPTH = 3

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
function referenceMatch (filter, topic) {
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
function topicsMatchedBy (filter) {
  let set = matchedSets.get(filter)
  if (set === undefined) {
    set = UNIVERSE.filter(topic => referenceMatch(filter, topic))
    matchedSets.set(filter, set)
  }
  return set
}

/** Outer contains inner when every topic of the universe that inner matches, outer matches. */
function referenceContains (outer, inner) {
  return topicsMatchedBy(inner).every(topic => referenceMatch(outer, topic))
}

function referenceIdentityMatch (pattern, identity) {
  if (!pattern.includes('*')) return pattern === identity
  if (identity.startsWith('$')) return false
  const [head, ...rest] = pattern.split('*')
  // patterns here have one `*`: a prefix and a suffix
  const tail = rest.join('*')
  return identity.length >= head.length + tail.length && identity.startsWith(head) && identity.endsWith(tail)
}

function referenceSubstitute (filter, identity) {
  if (!filter.split('/').includes('{identity}')) return filter
  if (identity === '' || /[+#]/.test(identity) || identity.startsWith('$')) return undefined
  return filter.split('/').map(level => level === '{identity}' ? identity : level).join('/')
}

function referenceFunctionMatch (pattern, fn) {
  if (pattern === '*') return true
  const [ps, pf] = pattern.split('/')
  const [s, f] = fn.split('/')
  return (ps === '*' || ps === s) && (pf === '*' || pf === f)
}

function referenceDecide (rules, identity, action, subject) {
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

const level = fc.constantFrom(...LEVELS)
const filterLevel = fc.oneof({ weight: 3, arbitrary: level }, { weight: 1, arbitrary: fc.constant('+') })
const filterArb = fc.tuple(
  fc.array(filterLevel, { minLength: 1, maxLength: MAX_FILTER_DEPTH }),
  fc.boolean(),
).map(([levels, hash]) => (hash ? (levels.length === MAX_FILTER_DEPTH ? [...levels.slice(0, -1), '#'] : [...levels, '#']) : levels).join('/'))
  .filter(filter => filter !== '') // [MQTT-4.7.3-1] a filter has at least one character
const grantFilterArb = fc.oneof(
  { weight: 5, arbitrary: filterArb },
  { weight: 1, arbitrary: fc.constantFrom('#', '{identity}/#', 'a/{identity}', '+/{identity}/#', '$s/#') },
)
const topicArb = fc.array(fc.constantFrom(...LEVELS, FRESH), { minLength: 1, maxLength: MAX_FILTER_DEPTH + 1 }).map(levels => levels.join('/'))
  .filter(topic => topic !== '')
const FUNCTIONS = ['S/f', 'S/g', 'T/f', 'T/g']
const fnPatternArb = fc.constantFrom('S/f', 'S/*', '*/f', '*', '*/*', 'T/g', 'T/*')
const IDENTITIES = ['a', 'b', 'sa', 'sb', '$anonymous', 'a/b', 'x', 'S/f']
const identityPatternArb = fc.constantFrom('a', 'b', 's*', '*', '$anonymous', 'a*', '*b', 'x', 'S/*', 'S/f')

const grantsArb = fc.record({
  publish: fc.array(grantFilterArb, { maxLength: 3 }),
  subscribe: fc.array(grantFilterArb, { maxLength: 3 }),
  invoke: fc.array(fnPatternArb, { maxLength: 2 }),
  serve: fc.array(fnPatternArb, { maxLength: 2 }),
  manage: fc.array(fnPatternArb, { maxLength: 2 }),
}, { requiredKeys: [] })
const ruleArb = fc.record({ identity: identityPatternArb, allow: grantsArb, deny: grantsArb }, { requiredKeys: ['identity', 'allow'] })

const queryArb = fc.oneof(
  fc.tuple(fc.constantFrom('publish', 'receive'), topicArb),
  fc.tuple(fc.constant('subscribe'), filterArb),
  fc.tuple(fc.constantFrom('invoke', 'serve', 'manage'), fc.constantFrom(...FUNCTIONS)),
)

function decide (policy, identity, action, subject) {
  switch (action) {
    case 'publish': return policy.mayPublish(identity, subject)
    case 'subscribe': return policy.maySubscribe(identity, subject)
    case 'receive': return policy.mayReceive(identity, subject)
    default: {
      const [serviceName, functionName] = subject.split('/')
      const fn = { serviceName, functionName, name: subject }
      return action === 'invoke' ? policy.mayInvoke(identity, fn) : action === 'serve' ? policy.mayServe(identity, fn) : policy.mayManage(identity, fn)
    }
  }
}

// ---- properties ---------------------------------------------------------------------------------------------------

test('filter containment equals the enumerated reference on every pair of generated filters', () => {
  let cases = 0
  fc.assert(fc.property(filterArb, filterArb, (outer, inner) => {
    cases++
    return filterContains(levelsOf(outer), levelsOf(inner)) === referenceContains(outer, inner) &&
      filterContains(levelsOf(inner), levelsOf(inner))
  }), { numRuns: 20_000 })
  assert.ok(cases >= 20_000)
})

test('filter matching equals the reference', () => {
  fc.assert(fc.property(filterArb, topicArb, (filter, topic) =>
    filterMatches(levelsOf(filter), levelsOf(topic)) === referenceMatch(filter, topic)), { numRuns: 20_000 })
})

test('policy decisions equal the reference model over 100,000 generated identity/action/subject cases: 0 mismatches', () => {
  const QUERIES = 50
  const RUNS = 2_000
  let cases = 0
  let allowed = 0
  fc.assert(fc.property(
    fc.array(ruleArb, { minLength: 1, maxLength: 4 }),
    fc.array(fc.tuple(fc.constantFrom(...IDENTITIES), queryArb), { minLength: QUERIES, maxLength: QUERIES }),
    (rules, queries) => {
      const policy = parsePolicy(rules)
      for (const [identity, [action, subject]] of queries) {
        cases++
        const expected = referenceDecide(rules, identity, action, subject)
        if (expected) allowed++
        const actual = decide(policy, identity, action, subject)
        if (actual !== expected) {
          throw new Error(`mismatch: ${identity} ${action} ${subject} → ${actual}, the model says ${expected}; rules ${JSON.stringify(rules)}`)
        }
      }
    },
  ), { numRuns: RUNS })
  assert.ok(cases >= 100_000, `${cases} cases`)
  // the generators must exercise both answers, or agreement proves little
  assert.ok(allowed > cases * 0.05 && allowed < cases * 0.95, `${allowed} of ${cases} allowed`)
})

test('a granted subscription only ever receives topics the identity may receive, unless a deny withholds them', () => {
  fc.assert(fc.property(fc.array(ruleArb, { minLength: 1, maxLength: 3 }), fc.constantFrom(...IDENTITIES), filterArb, (rules, identity, filter) => {
    const policy = parsePolicy(rules)
    if (!policy.maySubscribe(identity, filter)) return true
    return topicsMatchedBy(filter).every(topic => policy.mayReceive(identity, topic) ||
      rules.some(rule => referenceIdentityMatch(rule.identity, identity) && (rule.deny?.subscribe ?? [])
        .some(deny => { const d = referenceSubstitute(deny, identity); return d !== undefined && referenceMatch(d, topic) })))
  }), { numRuns: 5_000 })
})

// ---- examples -----------------------------------------------------------------------------------------------------

test('the issue\'s examples', () => {
  const policy = parsePolicy([
    { identity: 'sensor-*', allow: { publish: ['sensors/{identity}/temp'], subscribe: ['sensors/+/temp', 'cmd/#'], invoke: ['Analytics/*'] } },
    { identity: 'Analytics', allow: { serve: ['Analytics/*'] }, deny: { invoke: ['Admin/*'] } },
    { identity: '*', deny: { subscribe: ['cmd/secret/#'] } },
  ])
  assert.equal(policy.maySubscribe('sensor-1', 'sensors/+/temp'), true)
  assert.equal(policy.maySubscribe('sensor-1', 'sensors/room1/temp'), true)
  assert.equal(policy.maySubscribe('sensor-1', 'sensors/#'), false, 'a grant of sensors/+/temp does not allow sensors/#')
  assert.equal(policy.maySubscribe('sensor-1', 'cmd/#'), true, 'partly denied: granted, filtered on delivery')
  assert.equal(policy.mayReceive('sensor-1', 'cmd/secret/x'), false)
  assert.equal(policy.maySubscribe('sensor-1', 'cmd/secret/#'), false, 'wholly denied')
  assert.equal(policy.mayPublish('sensor-1', 'sensors/sensor-1/temp'), true)
  assert.equal(policy.mayPublish('sensor-1', 'sensors/sensor-2/temp'), false, 'a sensor publishes its own topic only')
  const fn = name => ({ serviceName: name.split('/')[0], functionName: name.split('/')[1], name })
  assert.equal(policy.mayInvoke('sensor-1', fn('Analytics/run')), true)
  assert.equal(policy.mayInvoke('sensor-1', fn('Admin/reset')), false, 'default deny for invoke')
  assert.equal(policy.mayServe('sensor-1', fn('Analytics/run')), false, 'invoking is not serving')
  assert.equal(policy.mayServe('Analytics', fn('Analytics/run')), true)
  assert.equal(policy.mayInvoke('$anonymous', fn('Analytics/run')), false, '* does not cover $anonymous')
  assert.equal(policy.mayInvoke('$gateway', fn('Admin/reset')), true, "the gateway's own calls are not restricted")
})

test('an invalid policy is FNBUS_CONFIG_INVALID naming the entry', () => {
  const cases = [
    [{}, /policy must be an array/],
    [[{ allow: {} }], /policy\[0\]\.identity must be/],
    [[{ identity: 'x' }], /policy\[0\] needs "allow" or "deny"/],
    [[{ identity: 'x', allow: { read: [] } }], /policy\[0\]\.allow: unknown action "read"/],
    [[{ identity: 'x', allow: { publish: ['a/#/b'] } }], /policy\[0\]\.allow\.publish\[0\] must be an MQTT topic filter/],
    [[{ identity: 'x', allow: { subscribe: ['a+'] } }], /allow\.subscribe\[0\]/],
    [[{ identity: 'x', deny: { invoke: ['S/f/g'] } }], /policy\[0\]\.deny\.invoke\[0\] must be "Service\/function"/],
    [[{ identity: 'x', allow: { invoke: ['S/constructor'] } }], /allow\.invoke\[0\]/],
    [[{ identity: 'x', allow: { publish: ['a\u0000b'] } }], /allow\.publish\[0\]/],
    [[{ identity: '$gateway', allow: {} }], /is not restricted by the policy/],
    [[{ identity: 'x', allow: {}, extra: 1 }], /unknown key "extra"/],
  ]
  for (const [raw, message] of cases) {
    assert.throws(() => parsePolicy(raw), err => err.code === 'FNBUS_CONFIG_INVALID' && message.test(err.message), JSON.stringify(raw))
  }
})
