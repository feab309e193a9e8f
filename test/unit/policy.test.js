// The authorization policy: its decisions against the reference model of ../policy-model.js, over generated
// policies, identities and requests.
import assert from 'node:assert/strict'
import test from 'node:test'
import fc from 'fast-check'
import { parsePolicy } from '../../dist/security/policy.js'
import { filterContains, filterMatches, levelsOf } from '../../dist/security/topic-filter.js'
import {
  filterArb, IDENTITIES, queryArb, referenceContains, referenceDecide, referenceIdentityMatch, referenceMatch,
  referenceSubstitute, ruleArb, topicArb, topicsMatchedBy,
} from '../policy-model.js'
/** @import { Thrown } from '../helpers.js' */

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
  }), { numRuns: 10_000 })
  assert.ok(cases >= 10_000)
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
    }
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
  /** @type {[unknown, RegExp][]} */
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
    assert.throws(() => parsePolicy(raw), (/** @type {Thrown} */ err) => err.code === 'FNBUS_CONFIG_INVALID' && message.test(err.message), JSON.stringify(raw))
  }
})
