// The benchmark suite's alternation (benchmarks/lib/alternate.js): every round measures each system once, and no
// system runs twice in a row, so a noisy spell of the shared machine cannot land on two runs of one system.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { alternate, roundOrder } from '../../benchmarks/lib/alternate.js'

test('bench alternation: each round is every system once; with three or more, no system runs twice in a row', () => {
  for (let n = 2; n <= 8; n++) {
    const systems = Array.from({ length: n }, (_, i) => `s${i}`)
    const sequence = []
    for (let round = 0; round < 2 * n; round++) {
      const order = roundOrder(systems, round)
      assert.deepEqual([...order].sort(), [...systems].sort(), `round ${round} of ${n} systems is a permutation`)
      sequence.push(...order)
    }
    if (n >= 3) {
      for (let i = 1; i < sequence.length; i++) assert.notEqual(sequence[i], sequence[i - 1], `${n} systems: ${sequence[i]} ran twice in a row at ${i}`)
      // over n rounds every system takes every place once
      for (const system of systems) {
        const places = Array.from({ length: n }, (_, round) => roundOrder(systems, round).indexOf(system))
        assert.deepEqual([...places].sort((a, b) => a - b), systems.map((_, i) => i))
      }
    }
  }
  assert.deepEqual([0, 1, 2].map(round => roundOrder(['A', 'B'], round).join('')), ['AB', 'BA', 'AB'])
})

test('bench alternation: runs are kept in round order, so the same index of two systems is the same round', async () => {
  const calls = []
  const runs = await alternate({
    systems: ['A', 'B', 'C'],
    pairs: 4,
    log: () => {},
    label: 'test',
    measure: async (system, round) => { calls.push(system); return { round } },
  })
  for (const system of ['A', 'B', 'C']) assert.deepEqual(runs[system].map(run => run.round), [0, 1, 2, 3])
  assert.equal(calls.join(''), 'ABCBCACABABC')
})
