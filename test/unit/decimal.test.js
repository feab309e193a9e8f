import { test } from 'node:test'
import assert from 'node:assert/strict'
import { paddedDecimal } from '../../dist/util/decimal.js'
import { seededRandom } from '../../scripts/seeded-random.js'

test('paddedDecimal writes what String(n).padStart(width, "0") writes', () => {
  const random = seededRandom(11)
  const cases = [[0, 1], [0, 16], [7, 2], [999, 3], [1000, 4], [999_999, 6], [Number.MAX_SAFE_INTEGER, 16]]
  for (let i = 0; i < 10_000; i++) {
    const width = 1 + Math.floor(random() * 16)
    cases.push([Math.floor(random() * Math.min(10 ** width, Number.MAX_SAFE_INTEGER)), width])
  }
  for (const [n, width] of cases) assert.equal(paddedDecimal(n, width), String(n).padStart(width, '0'), `${n} in ${width}`)
})
