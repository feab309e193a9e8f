// Property, end to end: under a generated policy, identities subscribe to generated filters and one of them
// publishes generated topics (some retained, before the subscriptions) through a real gateway. Exactly what the
// reference model allows arrives: nothing it forbids, nothing it allows goes missing.
import assert from 'node:assert/strict'
import test from 'node:test'
import fc from 'fast-check'
import mqtt from 'mqtt'
import { hashSecret } from '../../dist/security/credentials.js'
import { filterArb, referenceDecide, referenceMatch, ruleArb, topicArb } from '../policy-model.js'
import { startGateway, waitFor } from '../helpers.js'

// identities of the model that are also valid fnbus identities; `$anonymous` connects without a user name
const NAMED = ['a', 'sa', 'a/b']
const SUBJECTS = [...NAMED, '$anonymous']
const identities = Object.fromEntries(await Promise.all(NAMED.map(async name =>
  [name, { hash: await hashSecret(`${name}-secret`, { ln: 10, r: 8, p: 1 }) }])))

async function connectAs (gw, subject, tag) {
  const credentials = subject === '$anonymous' ? {} : { username: subject, password: `${subject}-secret` }
  const stem = subject === '$anonymous' ? 'anon' : subject.replace('/', ':')
  return await mqtt.connectAsync(gw.url, { clientId: `${stem}.${tag}`, reconnectPeriod: 0, ...credentials })
}

/** A broad rule for some of the subjects, so that generated denies and narrow grants have something to cut into. */
const broadRuleArb = fc.record({
  identity: fc.constantFrom('*', '$anonymous', 'a*', 's*'),
  allow: fc.constant({ publish: ['#', '$s/#'], subscribe: ['#', '$s/#'] }),
  deny: fc.record({ subscribe: fc.array(filterArb, { maxLength: 2 }) }),
})

const scenarioArb = fc.record({
  rules: fc.tuple(fc.array(ruleArb, { minLength: 1, maxLength: 3 }), fc.array(broadRuleArb, { maxLength: 2 })).map(([narrow, broad]) => [...narrow, ...broad]),
  publisher: fc.constantFrom(...SUBJECTS),
  // aedes' retained store does not match an empty level with `+` (`+/#` misses a retained `/a`, policy or not),
  // unlike its live routing: retained topics here have no empty levels
  retained: fc.uniqueArray(topicArb.filter(topic => !topic.split('/').includes('')), { maxLength: 6 }),
  live: fc.array(topicArb, { minLength: 1, maxLength: 12 }),
  subscriptions: fc.record(Object.fromEntries(SUBJECTS.map(subject => [subject, fc.uniqueArray(fc.oneof(filterArb, fc.constantFrom('#', '+/#')), { minLength: 1, maxLength: 3 })]))),
})

test('deliveries through a real gateway equal the reference model (generated policies, subscriptions, publishes)', async t => {
  let runs = 0
  let deliveredTotal = 0
  let withheldTotal = 0
  await fc.assert(fc.asyncProperty(scenarioArb, async scenario => {
    runs++
    const gw = await startGateway(t, { identities, allowAnonymous: true, policy: scenario.rules })
    const clients = []
    try {
      const publisher = await connectAs(gw, scenario.publisher, 'pub')
      clients.push(publisher)
      const mayPublish = topic => referenceDecide(scenario.rules, scenario.publisher, 'publish', topic)
      let sequence = 0
      const sent = [] // { id, topic }: what the gateway accepted for routing
      for (const topic of scenario.retained) {
        const id = `m${sequence++}`
        await publisher.publishAsync(topic, id, { qos: 1, retain: true })
        if (mayPublish(topic)) sent.push({ id, topic })
      }

      const received = new Map()
      const expected = new Map()
      for (const subject of SUBJECTS) {
        const client = await connectAs(gw, subject, 'sub')
        clients.push(client)
        const got = new Set()
        received.set(subject, got)
        client.on('message', (topic, payload) => got.add(`${payload}`))
        const granted = []
        for (const filter of scenario.subscriptions[subject]) {
          const [suback] = await client.subscribeAsync(filter, { qos: 1 }).catch(err => err.packet?.granted ?? [128])
          const mayGrant = referenceDecide(scenario.rules, subject, 'subscribe', filter)
          const wasGranted = typeof suback === 'number' ? suback !== 128 : suback.qos !== 128
          assert.equal(wasGranted, mayGrant, `${subject} subscribing ${filter}`)
          if (wasGranted) granted.push(filter)
        }
        expected.set(subject, { granted })
      }
      for (const topic of scenario.live) {
        const id = `m${sequence++}`
        await publisher.publishAsync(topic, id, { qos: 1 })
        if (mayPublish(topic)) sent.push({ id, topic })
      }

      for (const subject of SUBJECTS) {
        const { granted } = expected.get(subject)
        const should = new Set(sent
          .filter(({ topic }) => granted.some(filter => referenceMatch(filter, topic)) && referenceDecide(scenario.rules, subject, 'receive', topic))
          .map(({ id }) => id))
        expected.get(subject).ids = should
        withheldTotal += sent.filter(({ topic }) => granted.some(filter => referenceMatch(filter, topic))).length - should.size
        deliveredTotal += should.size
      }
      // what should arrive does; then a pause for anything that should not
      await waitFor(() => SUBJECTS.every(subject => [...expected.get(subject).ids].every(id => received.get(subject).has(id))), 3000, 'the allowed deliveries')
      await new Promise(resolve => setTimeout(resolve, 100))
      for (const subject of SUBJECTS) {
        assert.deepEqual([...received.get(subject)].sort(), [...expected.get(subject).ids].sort(),
          `${subject} with ${JSON.stringify(expected.get(subject).granted)} under ${JSON.stringify(scenario.rules)}`)
      }
    } finally {
      await Promise.all(clients.map(client => client.endAsync(true)))
      await gw.close()
    }
  }), {
    numRuns: 25,
    includeErrorInReport: true,
    // one scenario known to need withholding (a deny inside a granted `#`, retained and live), then generated ones;
    // its filters use the model's levels only (its containment is exact over them)
    examples: [[{
      rules: [{ identity: '*', allow: { publish: ['#'], subscribe: ['#'] }, deny: { subscribe: ['a/+', '{identity}/#'] } }],
      publisher: 'sa',
      retained: ['a/b', 'b/a'],
      live: ['a/z', 'b', 'sa/b', 'a', 'b/b'],
      subscriptions: { a: ['#'], sa: ['#', '+/b'], 'a/b': ['a/#'], $anonymous: ['#'] },
    }]],
  })
  t.diagnostic(`${runs} scenarios: ${deliveredTotal} deliveries expected and made, ${withheldTotal} matching messages withheld by the policy`)
  assert.ok(deliveredTotal > 0 && withheldTotal > 0, 'the scenarios exercised both deliveries and refusals')
})
