// The names a cluster's Async invocations live under, and JetStream's answers as fnbus' codes, alone.
import assert from 'node:assert/strict'
import test from 'node:test'
import fc from 'fast-check'
import { AsyncNames, functionOfToken, functionToken, storeError } from '../../dist/cluster/async-streams.js'
import { FnbusError } from '../../dist/errors.js'

test('a function name is one token both ways, whatever it holds', () => {
  fc.assert(fc.property(fc.string({ minLength: 1, maxLength: 100 }), name => {
    fc.pre(!/[\uD800-\uDFFF]/.test(name))
    const token = functionToken(name)
    assert.match(token, /^[A-Za-z0-9_-]+$/)
    assert.equal(functionOfToken(token), name)
  }))
  assert.equal(functionOfToken('a.b'), undefined)
})

test('streams, subjects and consumers under a prefix; subjects of other spaces are nobody\'s', () => {
  const names = new AsyncNames('site-7')
  assert.equal(names.pending, 'SITE-7_ASYNC')
  assert.equal(names.dead, 'SITE-7_DEAD')
  assert.equal(names.pendingSubject('S/f.x'), `site-7.async.${functionToken('S/f.x')}`)
  assert.equal(names.functionOfSubject(names.deadSubject('S/f.x')), 'S/f.x')
  assert.equal(names.functionOfSubject('site-7.ev.S'), undefined)
  assert.equal(names.functionOfSubject('other.async.UyJm'), undefined)
  assert.equal(names.consumer('S/f'), `site-7-${functionToken('S/f')}`)
})

test('JetStream refusals become FNBUS_QUEUE_FULL or FNBUS_STORE_FAILURE, never the library\'s error', () => {
  assert.equal(storeError(new Error('maximum messages per subject exceeded'), 'x').code, 'FNBUS_QUEUE_FULL')
  assert.equal(storeError(new Error('maximum messages exceeded'), 'x').code, 'FNBUS_QUEUE_FULL')
  assert.equal(storeError(new Error('maximum bytes exceeded'), 'x').code, 'FNBUS_QUEUE_FULL')
  assert.equal(storeError(new Error('503'), 'x').code, 'FNBUS_STORE_FAILURE')
  assert.equal(storeError(new Error('TIMEOUT'), 'x').code, 'FNBUS_STORE_FAILURE')
  assert.equal(storeError('a string', 'x').code, 'FNBUS_STORE_FAILURE')
  const own = new FnbusError('FNBUS_QUEUE_FULL', 'mine')
  assert.equal(storeError(own, 'x'), own)
})
