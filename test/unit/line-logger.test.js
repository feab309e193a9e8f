// fnbus run's logger writes the lines the gateway's pino logger writes (the supervisor passes them on as they are).
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import test from 'node:test'
import { createLineLogger } from '../../dist/line-logger.js'
import { createLogger, isRuntimeLogLine } from '../../dist/logging.js'

function sink () {
  const lines = []
  return { lines, stream: new Writable({ write (chunk, _encoding, done) { lines.push(...String(chunk).split('\n').filter(Boolean)); done() } }) }
}

/** Each line without its time, which differs between two loggers. */
const timeless = lines => lines.map(line => line.replace(/"time":"[^"]+"|^\d\d:\d\d:\d\d\.\d{3}/, 'TIME'))

for (const format of /** @type {const} */ (['json', 'pretty'])) {
  test(`the line logger writes what pino writes (${format}), levels filtered alike`, async () => {
    const bindings = { component: 'runtime', fn: 'S/f', instance: 'S/f#1' }
    const pino = sink()
    const line = sink()
    const loggers = [createLogger(pino.stream, { level: 'info', format }, bindings), createLineLogger(line.stream, { level: 'info', format }, bindings)]
    const err = Object.assign(new Error('it broke'), { code: 'E_X' })
    for (const logger of loggers) {
      logger.info('plain message')
      logger.debug('not written')
      logger.warn({ requestId: 'r1', attempt: 2, nested: { a: [1, 'b'] } }, 'with fields')
      logger.error({ err }, 'with an error')
      assert.equal(logger.isLevelEnabled?.('debug'), false)
      assert.equal(logger.isLevelEnabled?.('warn'), true)
    }
    await new Promise(resolve => setImmediate(resolve))
    assert.equal(line.lines.length, 3)
    assert.deepEqual(timeless(line.lines), timeless(pino.lines))
    if (format === 'json') assert.ok(line.lines.every(isRuntimeLogLine))
  })
}
