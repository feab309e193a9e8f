// A bridge's topic rules (src/bridge/topic-rules.ts): which topics a rule matches and what it renames them to.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { firstMatch, parseTopicRule, rewriteTopic } from '../../dist/bridge/topic-rules.js'
import { filterMatches, levelsOf } from '../../dist/security/topic-filter.js'

const rule = (from, to, qos) => parseTopicRule({ from, to, qos }, 'out[0]')

test('the fixed prefix is renamed and the wildcard part kept', () => {
  const r = rule('telemetry/#', 'sites/7/telemetry/#')
  assert.equal(r.qos, 1)
  assert.equal(rewriteTopic(r, 'telemetry/line-1/temp'), 'sites/7/telemetry/line-1/temp')
  // `#` matches the parent level too, and stands for no level on the other side
  assert.equal(rewriteTopic(r, 'telemetry'), 'sites/7/telemetry')
  assert.equal(rewriteTopic(r, 'telemetryx/a'), undefined)
  assert.equal(rewriteTopic(r, 'other/telemetry/a'), undefined)
  const plus = rule('status/+/now', 'sites/7/status/+', 0)
  assert.equal(plus.qos, 0)
  assert.equal(rewriteTopic(plus, 'status/press-4/now'), 'sites/7/status/press-4')
  assert.equal(rewriteTopic(plus, 'status/press-4/later'), undefined)
  assert.equal(rewriteTopic(plus, 'status/press-4'), undefined)
  assert.equal(rewriteTopic(plus, 'status/a/now/more'), undefined)
  // wildcards fill their counterparts in order, wherever they sit
  assert.equal(rewriteTopic(rule('+/a/+/#', 'x/+/+/y/#'), 'p/a/q/r/s'), 'x/p/q/y/r/s')
  // exact topics
  assert.equal(rewriteTopic(rule('a/b', 'c'), 'a/b'), 'c')
  assert.equal(rewriteTopic(rule('a/b', 'c'), 'a/b/c'), undefined)
})

test('a leading wildcard does not match $ topics; a rename to no topic at all does not match', () => {
  assert.equal(rewriteTopic(rule('#', 'up/#'), '$SYS/broker/uptime'), undefined)
  assert.equal(rewriteTopic(rule('+/x', 'up/+/x'), '$SYS/x'), undefined)
  assert.equal(rewriteTopic(rule('#', 'up/#'), 'a/b'), 'up/a/b')
  assert.equal(rewriteTopic(rule('a/#', '#'), 'a'), undefined)
  assert.equal(rewriteTopic(rule('a/#', '#'), 'a/b'), 'b')
})

test('firstMatch: the first rule that matches wins', () => {
  const rules = [rule('a/special', 'one'), rule('a/#', 'two/#')]
  assert.deepEqual(firstMatch(rules, 'a/special')?.topic, 'one')
  assert.deepEqual(firstMatch(rules, 'a/other')?.topic, 'two/other')
  assert.equal(firstMatch(rules, 'b'), undefined)
})

test('malformed rules are refused, naming the rule', () => {
  assert.throws(() => rule('a/#', 'b/+'), /out\[0\]: "from" and "to" must have the same wildcards in the same order \(a\/# → b\/\+\)/)
  assert.throws(() => rule('a/+/#', 'b/#/+'), /out\[0\]\.to must be a topic filter/)
  assert.throws(() => rule('a/+/b', 'b/#'), /same wildcards/)
  assert.throws(() => rule('a#', 'b'), /out\[0\]\.from must be a topic filter, got "a#"/)
  assert.throws(() => rule('', 'b'), /out\[0\]\.from must be a topic filter/)
  assert.throws(() => rule('$SYS/#', 'up/#'), /out\[0\]\.from: topics starting with \$ are the brokers' own/)
  assert.throws(() => rule('a/#', '$aws/things/#'), /out\[0\]\.to: topics starting with \$/)
})

// a level of a topic; `$` only where the test puts it
const levelArb = fc.stringMatching(/^[a-z0-9_-]{0,4}$/)
/** A filter's shape: its levels, each a literal or a wildcard, `#` only last. */
const shapeArb = fc.tuple(fc.array(fc.oneof(levelArb, fc.constant('+')), { minLength: 0, maxLength: 5 }), fc.boolean())
  .filter(([levels, hash]) => levels.join('/') !== '' || hash)
  .map(([levels, hash]) => hash ? [...levels, '#'] : levels)
/** Another filter with the wildcards of `shape`, in order, and literals of its own around them. */
const counterpart = shape => fc.array(fc.array(levelArb.filter(level => level !== ''), { maxLength: 2 }), { minLength: shape.filter(l => l === '+' || l === '#').length + 1, maxLength: shape.filter(l => l === '+' || l === '#').length + 1 })
  .map(literals => {
    const wildcards = shape.filter(l => l === '+' || l === '#')
    const out = [...literals[0] ?? []]
    wildcards.forEach((w, i) => out.push(w, ...(w === '#' ? [] : literals[i + 1] ?? [])))
    // nothing may follow a `#`
    if (out.length === 0) out.push('x')
    return out
  })

test('property: a rule matches exactly the topics its "from" filter matches, into topics its "to" filter matches, and back', () => {
  fc.assert(fc.property(
    shapeArb.chain(from => fc.tuple(fc.constant(from), counterpart(from), fc.array(levelArb, { minLength: 1, maxLength: 8 }))),
    ([fromLevels, toLevels, topicLevels]) => {
      const from = fromLevels.join('/')
      const to = toLevels.join('/')
      const r = rule(from, to)
      // a topic that matches `from` by construction, and a random one
      const matching = fromLevels.flatMap((level, i) => level === '+' ? [topicLevels[i] ?? 'p'] : level === '#' ? topicLevels.slice(i) : [level])
      for (const levels of [matching, topicLevels]) {
        const topic = levels.join('/')
        if (topic === '') continue
        const renamed = rewriteTopic(r, topic)
        const matches = filterMatches(levelsOf(from), levelsOf(topic))
        if (!matches) {
          assert.equal(renamed, undefined, `${from} does not match ${topic}`)
          continue
        }
        if (renamed === undefined) {
          // only a rename to no topic at all (wildcards that matched nothing, nothing around them) is no match
          assert.ok(toLevels.every(level => level === '#' || level === '+'))
          continue
        }
        assert.ok(filterMatches(levelsOf(to), levelsOf(renamed)), `${to} matches ${renamed}`)
        // the inverse rule gives the topic back, unless `#` matched nothing where `to` has its `#` alone at the end
        const back = rewriteTopic(rule(to, from), renamed)
        if (back !== undefined) assert.equal(back, topic)
      }
    }), { numRuns: 2000 })
})
