// Logging settings: where the level and format come from, the pretty format, the config's log block.
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import test from 'node:test'
import { createLogger, formatPretty, isRuntimeLogLine, resolveLogSettings } from '../../dist/logging.js'
import { parseConfig } from '../../dist/config.js'

function sink () {
  const lines = []
  const stream = new Writable({
    write (chunk, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean))
      done()
    },
  })
  return { stream, lines }
}

test('flags win over FNBUS_LOG_LEVEL, which wins over FNBUS_DEBUG and the config; info and json by default', () => {
  assert.deepEqual(resolveLogSettings({ env: {} }), { level: 'info', format: 'json' })
  assert.deepEqual(resolveLogSettings({ env: {}, config: { level: 'warn', format: 'pretty' } }), { level: 'warn', format: 'pretty' })
  assert.deepEqual(resolveLogSettings({ env: { FNBUS_DEBUG: '1' }, config: { level: 'warn' } }).level, 'debug')
  assert.deepEqual(resolveLogSettings({ env: { FNBUS_LOG_LEVEL: 'error', FNBUS_DEBUG: '1' }, config: { level: 'warn' } }).level, 'error')
  assert.deepEqual(resolveLogSettings({ env: { FNBUS_LOG_LEVEL: 'error', FNBUS_LOG_FORMAT: 'pretty' }, flags: { level: 'trace', format: 'json' } }), { level: 'trace', format: 'json' })
  // a stray value in the environment is ignored rather than fatal: the flag and the file are checked elsewhere
  assert.equal(resolveLogSettings({ env: { FNBUS_LOG_LEVEL: 'loud' } }).level, 'info')
})

test('the JSON format: one object per line, level as its name, bindings and fields on every line', () => {
  const { stream, lines } = sink()
  const logger = createLogger(stream, { level: 'info', format: 'json' }, { component: 'runtime', fn: 'A/b' })
  logger.debug({ hidden: true }, 'not at info')
  logger.warn({ requestId: 'r1' }, 'late')
  assert.equal(lines.length, 1)
  const entry = JSON.parse(lines[0])
  assert.equal(entry.level, 'warn')
  assert.equal(entry.msg, 'late')
  assert.equal(entry.requestId, 'r1')
  assert.equal(entry.component, 'runtime')
  assert.equal(entry.pid, process.pid)
  assert.match(entry.time, /^\d{4}-\d\d-\d\dT/)
  assert.ok(isRuntimeLogLine(lines[0]), 'the supervisor recognizes a runtime line and passes it on unprefixed')
  assert.ok(!isRuntimeLogLine('{"level":"info","msg":"a function that logs JSON itself"}'))
})

test('the pretty format: time, level, message, then key=value', () => {
  const { stream, lines } = sink()
  const logger = createLogger(stream, { level: 'debug', format: 'pretty' })
  logger.debug({ requestId: 'abc', fn: 'A/b', durationMs: 1.5, note: 'two words' }, 'invocation finished')
  assert.match(lines[0], /^\d\d:\d\d:\d\d\.\d{3} DEBUG invocation finished {2}requestId=abc fn=A\/b durationMs=1\.5 note="two words"$/)
  assert.equal(formatPretty({ level: 'warn', time: '2026-01-02T03:04:05.678Z', msg: 'x', err: { code: 'FNBUS_TIMEOUT', message: 'late' } }),
    '03:04:05.678 WARN  x  err="FNBUS_TIMEOUT: late"')
})

test('the config\'s log block: level, format, payloads; anything else names itself', () => {
  const file = '/etc/fnbus.config.json'
  assert.deepEqual(parseConfig({ log: { level: 'debug', format: 'pretty', payloads: true } }, file).log, { level: 'debug', format: 'pretty', payloads: true })
  assert.throws(() => parseConfig({ log: { level: 'verbose' } }, file), { code: 'FNBUS_CONFIG_INVALID', message: `${file}: log.level must be one of fatal, error, warn, info, debug, trace, silent, got "verbose"` })
  assert.throws(() => parseConfig({ log: { format: 'xml' } }, file), /log\.format must be one of json, pretty/)
  assert.throws(() => parseConfig({ log: { payloads: 'yes' } }, file), /log\.payloads must be true or false/)
  assert.throws(() => parseConfig({ log: { lvl: 'info' } }, file), /log: unknown key "lvl"/)
})
