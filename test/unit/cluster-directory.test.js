// What gateways tell each other on PREFIX.dir, alone: an announcement survives the round trip, and whatever else
// arrives (any bytes, any MessagePack) is refused with a reason, never thrown and never half-taken.
import assert from 'node:assert/strict'
import test from 'node:test'
import fc from 'fast-check'
import { encodeAnnouncement, MAX_ANNOUNCED_FUNCTIONS, parseAnnouncement } from '../../dist/cluster/directory.js'
import { pack } from '../../dist/protocol/codec.js'

const name = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/)
const fnName = fc.tuple(fc.stringMatching(/^[a-zA-Z][\w-]{0,20}$/), fc.stringMatching(/^[a-zA-Z][\w-]{0,20}$/)).map(([s, f]) => `${s}/${f}`)

test('an announcement round-trips', () => {
  fc.assert(fc.property(name, name, fc.integer({ min: 10, max: 600_000 }), fc.dictionary(fnName, fc.integer({ min: 1, max: 1_000_000 }), { maxKeys: 20 }), fc.boolean(), fc.boolean(),
    (gateway, incarnation, heartbeatMs, functions, solicit, leaving) => {
      const sent = { gateway, incarnation, heartbeatMs, functions: new Map(Object.entries(functions)), solicit, leaving }
      const got = parseAnnouncement(encodeAnnouncement(sent))
      assert.notEqual(typeof got, 'string', String(got))
      assert.deepEqual(got, sent)
    }))
})

test('any bytes are refused with a reason or taken whole, never thrown', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), bytes => {
    const got = parseAnnouncement(bytes)
    if (typeof got !== 'string') {
      assert.ok(/^[A-Za-z0-9_-]{1,64}$/.test(got.gateway))
      for (const [, concurrency] of got.functions) assert.ok(Number.isInteger(concurrency) && concurrency >= 1)
    }
  }), { numRuns: 2000 })
})

test('well-formed MessagePack that breaks a rule names the rule', () => {
  const ok = { v: 1, g: 'gw-a', i: 'x1', hb: 1000, f: [['S/f', 2]] }
  const cases = [
    [[1, 2], 'not a map'],
    [{ ...ok, v: 2 }, 'version 2'],
    [{ ...ok, g: 'a.b' }, 'bad gateway name'],
    [{ ...ok, g: '' }, 'bad gateway name'],
    [{ ...ok, i: 'x y' }, 'bad incarnation'],
    [{ ...ok, hb: 1 }, 'bad heartbeat'],
    [{ ...ok, hb: 1.5 }, 'bad heartbeat'],
    [{ ...ok, f: 'S/f' }, 'bad function list'],
    [{ ...ok, f: Array.from({ length: MAX_ANNOUNCED_FUNCTIONS + 1 }, (_, i) => [`S/f${i}`, 1]) }, 'bad function list'],
    [{ ...ok, f: [['S/f']] }, 'bad function entry'],
    [{ ...ok, f: [['S/f', 0]] }, 'bad concurrency'],
    [{ ...ok, f: [['S/f', 2 ** 40]] }, 'bad concurrency'],
    [{ ...ok, f: [['no-slash', 1]] }, 'bad function name'],
    [{ ...ok, f: [[42, 1]] }, 'bad function name'],
  ]
  for (const [value, reason] of cases) assert.equal(parseAnnouncement(pack(value)), reason, JSON.stringify(value).slice(0, 80))
  assert.equal(parseAnnouncement(Buffer.from([0x81])), 'not MessagePack')
  assert.notEqual(typeof parseAnnouncement(pack(ok)), 'string')
})
