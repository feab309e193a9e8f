// GatewayEvents: the observed() check that lets the hot path skip observations nobody listens to.
import assert from 'node:assert/strict'
import test from 'node:test'
import { GatewayEvents } from '../../dist/index.js'

test('observed() follows listeners as they come and go, removeAllListeners included', () => {
  const events = new GatewayEvents()
  assert.equal(events.observed('invocation'), false)
  const a = () => {}
  const b = () => {}
  events.on('invocation', a)
  events.once('invocation', b)
  assert.equal(events.observed('invocation'), true)
  assert.equal(events.observed('retry'), false)
  events.off('invocation', a)
  assert.equal(events.observed('invocation'), true)
  events.emit('invocation', /** @type {any} */ ({})) // the once listener goes (no listener reads the event)
  assert.equal(events.observed('invocation'), false)
  events.on('retry', a)
  events.on('deadLetter', b)
  events.removeAllListeners('retry')
  assert.equal(events.observed('retry'), false)
  assert.equal(events.observed('deadLetter'), true)
  events.removeAllListeners()
  assert.equal(events.observed('deadLetter'), false)
  events.on('deadLetter', b)
  assert.equal(events.observed('deadLetter'), true, 'still tracked after removeAllListeners()')
})

test('a listener that throws reaches onListenerError, and emit returns normally', () => {
  const errors = []
  const events = new GatewayEvents((err, name) => errors.push([String(/** @type {Error} */ (err)?.message), name]))
  events.on('retry', () => { throw new Error('bug') })
  assert.equal(events.emit('retry', /** @type {any} */ ({})), true) // read by no listener
  assert.deepEqual(errors, [['bug', 'retry']])
})
