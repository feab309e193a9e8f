// A function that calls Bench/echo `event.calls` times one after another through its own FCClient and answers with
// the latency of each call (µs): the serial path from a function to another, as the isolation harness measures it.
'use strict'

// the repository's package: benchmarks/ has a package.json of its own, so require('fnbus') would not resolve here
const { FCClient } = require('../../cjs/index.cjs')

const fc = new FCClient()

module.exports.handler = async function (event) {
  const payload = 'x'.repeat(64)
  for (let i = 0; i < 200; i++) await fc.invoke('Bench/echo', payload) // warm up
  const times = []
  for (let i = 0; i < event.calls; i++) {
    const start = process.hrtime.bigint()
    await fc.invoke('Bench/echo', payload)
    times.push(Number(process.hrtime.bigint() - start) / 1000)
  }
  return times
}
