import assert from 'node:assert/strict'
import test from 'node:test'
import { makeContext, runHandler } from '../../dist/runtime/handler.js'

const context = makeContext({ requestId: 'r1', invokerContext: {}, serviceName: 'S', functionName: 'f', invocationType: 'Sync', deadline: Date.now() + 1000 })

test('callback style: a value, or a Handled error carrying the message', async t => {
  assert.deepEqual(await runHandler((e, c, cb) => cb(null, e + 1), 1, context), { value: 2 })
  assert.deepEqual(await runHandler((e, c, cb) => cb(new Error('bad input')), 1, context), { functionError: 'Handled', value: 'bad input' })
  // called back from a timer, after the handler returned
  t.mock.timers.enable({ apis: ['setTimeout'] })
  const later = runHandler((e, c, cb) => setTimeout(() => cb(null, 'later'), 5), 1, context)
  t.mock.timers.tick(5)
  assert.deepEqual(await later, { value: 'later' })
})

test('async style: the resolved value, or Unhandled on rejection', async () => {
  assert.deepEqual(await runHandler(async e => e * 2, 2, context), { value: 4 })
  assert.deepEqual(await runHandler(async () => { throw new Error('boom') }, 0, context), { functionError: 'Unhandled', value: 'boom' })
})

test('a throwing handler is Unhandled; only the first answer counts', async () => {
  assert.deepEqual(await runHandler(() => { throw new TypeError('oops') }, 0, context), { functionError: 'Unhandled', value: 'oops' })
  assert.deepEqual(await runHandler((e, c, cb) => { cb(null, 1); cb(null, 2) }, 0, context), { value: 1 })
  assert.deepEqual(await runHandler((e, c, cb) => { cb(null, 'cb'); throw new Error('after') }, 0, context), { value: 'cb' })
})

test('a plain function without a callback parameter answers with its return value', async () => {
  assert.deepEqual(await runHandler(e => e.toUpperCase(), 'x', context), { value: 'X' })
})

test('context exposes the remaining time without showing it as data', () => {
  assert.ok(context.getRemainingTimeInMillis() > 0)
  assert.deepEqual(Object.keys(context).sort(), ['deadline', 'functionName', 'invocationType', 'invokerContext', 'requestId', 'serviceName'])
})
