// MQTT topics as NATS subjects (src/cluster/subjects.ts): the escaping, and the properties the cluster's events rely
// on: an exact round trip, tokens NATS accepts for publish, no two topics on one subject, and subjects from the
// network that no topic encodes to are refused.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import {
  decodeLevel, encodeLevel, eventSubjects, MAX_SUBJECT_BYTES, subjectToTopic, topicToSubject,
} from '../../dist/cluster/subjects.js'

const EV = 'fnbus.ev'

/**
 * What nats-server takes as a subject to publish on: non-empty tokens, no ASCII whitespace or control character (its
 * protocol lines split on those; Unicode spaces such as U+00A0 are bytes like any other to it), no wildcard.
 */
function validForPublish (subject) {
  if (Buffer.byteLength(subject) > MAX_SUBJECT_BYTES) return false
  for (let i = 0; i < subject.length; i++) if (subject.charCodeAt(i) <= 0x20 || subject.charCodeAt(i) === 0x7f) return false
  return subject.split('.').every(token => token.length > 0 && token !== '*' && token !== '>' && !token.includes('*') && !token.includes('>'))
}

// the characters that matter, often, and any other character (astral planes included) the rest of the time
const special = fc.constantFrom('.', '*', '>', '%', ' ', '\t', '\n', '\r', '\u0000', '\u007f', '$', '#', '+', 'A', 'é', '°', '€', '😀', '%2E', '%')
const char = fc.oneof(special, fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }))
const level = fc.array(char, { maxLength: 6 }).map(parts => parts.join('').replaceAll('/', ''))
/** Any topic a client could publish on, and more (wildcard characters, `$`, empty levels). */
const topic = fc.array(level, { minLength: 1, maxLength: 8 }).map(levels => levels.join('/')).filter(t => t.length > 0)

test('examples: what the documentation shows', () => {
  assert.equal(topicToSubject(EV, 'sensors/line 1/temp.avg'), 'fnbus.ev.sensors.line%201.temp%2Eavg')
  assert.equal(topicToSubject(EV, '/a/'), 'fnbus.ev.%.a.%')
  assert.equal(topicToSubject(EV, 'a//b'), 'fnbus.ev.a.%.b')
  assert.equal(topicToSubject(EV, '/'), 'fnbus.ev.%.%')
  assert.equal(topicToSubject(EV, 'x/*/>/%'), 'fnbus.ev.x.%2A.%3E.%25')
  assert.equal(topicToSubject(EV, 'température/°C/😀'), 'fnbus.ev.température.°C.😀')
  assert.equal(topicToSubject(EV, '$SYS/x'), 'fnbus.ev.$SYS.x')
  assert.equal(topicToSubject(EV, ''), undefined)
  assert.equal(topicToSubject(EV, 'a/\ud800'), undefined, 'a lone surrogate has no UTF-8 form')
  assert.equal(subjectToTopic(EV, 'fnbus.ev.sensors.line%201.temp%2Eavg'), 'sensors/line 1/temp.avg')
  assert.equal(subjectToTopic(EV, 'fnbus.ev.%.a.%'), '/a/')
})

test('subjects that no topic encodes to are refused', () => {
  for (const subject of [
    'fnbus.ev', 'fnbus.ev.', 'fnbus.evx.a', 'fnbus.ret.a', 'other.ev.a', 'fnbus.ev..a', 'fnbus.ev.a.',
    'fnbus.ev.%2e', 'fnbus.ev.%41', 'fnbus.ev.%2', 'fnbus.ev.%', 'fnbus.ev.a%', 'fnbus.ev.%%', 'fnbus.ev.%ZZ', 'fnbus.ev.%2F',
    'fnbus.ev.a/b', 'fnbus.ev.a*', 'fnbus.ev.>', 'fnbus.ev.a b', 'fnbus.ev.\u0000',
  ]) {
    assert.equal(subjectToTopic(EV, subject), undefined, subject)
  }
  // wildcard characters decode (the importer refuses such topics, as the broker refuses them from a client)
  assert.equal(subjectToTopic(EV, 'fnbus.ev.+.#'), '+/#')
  assert.equal(subjectToTopic(EV, 'fnbus.ev.a.b.c', 2), undefined, 'more levels than asked for')
  assert.equal(subjectToTopic(EV, 'fnbus.ev.a.b', 2), 'a/b')
})

test('a topic whose subject would pass nats-server\'s control line is refused', () => {
  assert.equal(topicToSubject(EV, '.'.repeat(1300)) !== undefined, true, '1,300 escaped bytes fit')
  assert.equal(topicToSubject(EV, '.'.repeat(1400)), undefined)
  assert.equal(topicToSubject(EV, '€'.repeat(1400)), undefined, 'bytes are counted, not characters')
  assert.equal(topicToSubject(EV, 'a'.repeat(MAX_SUBJECT_BYTES)), undefined)
})

test('property: the round trip is exact, and every token is valid for publish', () => {
  fc.assert(fc.property(topic, t => {
    const subject = topicToSubject(EV, t)
    if (subject === undefined) {
      // only a lone surrogate has no subject at these lengths
      assert.ok(/[\ud800-\udfff]/.test(t))
      return
    }
    assert.ok(validForPublish(subject), subject)
    assert.equal(subjectToTopic(EV, subject), t)
    assert.equal(subject.split('.').length - 2, t.split('/').length, 'one token per level')
  }), { numRuns: 5000 })
})

test('property: no two topics share a subject', () => {
  fc.assert(fc.property(topic, topic, (a, b) => {
    const sa = topicToSubject(EV, a)
    const sb = topicToSubject(EV, b)
    if (sa !== undefined && a !== b) assert.notEqual(sa, sb)
  }), { numRuns: 5000 })
  // near misses built by hand: escapes against their raw characters, empty levels against `%`
  const near = ['%', '%25', '.', '%2E', '', '/', '//', 'a.b', 'a/b', 'a%2Eb', '*', '%2A', '%/', '/%']
  const seen = new Map()
  for (const t of near) {
    const subject = topicToSubject(EV, t)
    if (subject === undefined) continue
    assert.equal(seen.get(subject), undefined, `${t} and ${seen.get(subject)} share ${subject}`)
    seen.set(subject, t)
  }
})

test('property: a subject from the network decodes only to the topic that encodes back to it', () => {
  const token = fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('%', '%25', '%2E', '%2e', '%41', '%20', '*', '>', 'a.b', ''))
  fc.assert(fc.property(fc.array(token, { minLength: 0, maxLength: 6 }), tokens => {
    const subject = [EV, ...tokens].join('.')
    const t = subjectToTopic(EV, subject)
    if (t !== undefined) assert.equal(topicToSubject(EV, t), subject)
  }), { numRuns: 5000 })
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 12 }), raw => {
    const level = decodeLevel(raw)
    if (level !== undefined) assert.equal(encodeLevel(level), raw)
  }), { numRuns: 5000 })
})

test('prefixes: the subject spaces and the stream name; a prefix NATS would not take is refused', () => {
  assert.deepEqual(eventSubjects('fnbus'), { events: 'fnbus.ev', retained: 'fnbus.ret', retainedStream: 'FNBUS_RETAINED' })
  assert.deepEqual(eventSubjects('site-7.fnbus'), { events: 'site-7.fnbus.ev', retained: 'site-7.fnbus.ret', retainedStream: 'SITE-7_FNBUS_RETAINED' })
  for (const bad of ['', '.', 'a.', '.a', 'a..b', 'a b', 'a*', 'a.>', 'x'.repeat(129), 'é']) {
    assert.throws(() => eventSubjects(bad), /cluster subject prefix/, bad)
  }
})
