// The routes plugin: events on matching topics become invocations, with the topic in the invoker context, as the
// rule's identity; Async routes are stored durably; $fn/ traffic is never routed; bad rules name themselves.
import assert from 'node:assert/strict'
import test from 'node:test'
import mqtt from 'mqtt'
import { createGateway, FCClient } from '../../dist/index.js'
import { parseConfig } from '../../dist/config.js'
import createRoutesPlugin from '../../dist/plugins/routes/index.js'
import { connectClient, rejection, startGateway, tempDir, waitFor, sdkOptions } from '../helpers.js'

/** A gateway with the routes plugin (kept, for its stats) and `rules`. */
async function routedGateway (t, rules, options = {}) {
  const routes = createRoutesPlugin()
  const gw = await startGateway(t, { plugins: [routes], pluginConfig: { routes: { rules } }, ...options })
  return { gw, routes }
}

/** Records what an in-process worker of `name` receives. */
/**
 * @param {import('../../dist/index.js').Gateway} gw
 * @param {string} name
 * @param {(event: unknown, context: unknown) => unknown} [answer]
 */
async function recorder (gw, name, answer = () => 'ok') {
  const calls = []
  await gw.serve(name, (event, context) => {
    calls.push({ event, context: { ...context } })
    return answer(event, context)
  })
  return calls
}

async function plainClient (t, gw) {
  const client = await mqtt.connectAsync(gw.url, { reconnectPeriod: 0 })
  t.after(() => client.endAsync())
  return client
}

test('an event on a matching topic reaches the function: the payload as a Buffer, the topic in the invoker context', async t => {
  const { gw, routes } = await routedGateway(t, [{ from: 'sensors/+/temperature', to: 'Analytics/ingest' }])
  const calls = await recorder(gw, 'Analytics/ingest')
  const plain = await plainClient(t, gw)
  await plain.publishAsync('sensors/humidity/level', '40')     // matches no rule
  await plain.publishAsync('sensors/kitchen/temperature', '21.5', { qos: 1 })
  await waitFor(() => calls.length === 1, 5000, 'the routed event')
  const [{ event, context }] = calls
  assert.ok(Buffer.isBuffer(event), 'a routed event arrives as the bytes that were published')
  assert.equal(event.toString(), '21.5')
  assert.equal(context.invocationType, 'Async')
  assert.deepEqual(context.invokerContext, { topic: 'sensors/kitchen/temperature', custom: { subject: 'sensors/kitchen/temperature' } })
  // the Async route's invocation id is what the function sees as its requestId
  assert.match(context.requestId, /\S/)
  // the non-matching event was published first, on the same connection: it has met the rules by now
  assert.equal(calls.length, 1, 'the non-matching topic was not routed')
  assert.deepEqual(routes.stats(), [{ from: 'sensors/+/temperature', to: 'Analytics/ingest', invocationType: 'Async', matched: 1, routed: 1, failed: 0 }])
})

test('payloadFormat text and json; the gateway\'s own events and FCClient events are routed too', async t => {
  const { gw } = await routedGateway(t, [
    { from: 'text/#', to: 'Fmt/text', payloadFormat: 'text', invocationType: 'Sync' },
    { from: 'json/#', to: 'Fmt/json', payloadFormat: 'json' },
  ])
  const texts = await recorder(gw, 'Fmt/text')
  const jsons = await recorder(gw, 'Fmt/json')
  const fc = await connectClient(t, gw)
  await fc.publish('text/a', 'héllo')
  await gw.publish('json/b', { celsius: 21.5, tags: ['k'] })
  await fc.publish('json/empty', '')
  await waitFor(() => texts.length === 1 && jsons.length === 2, 5000, 'the routed events')
  assert.equal(texts[0].event, 'héllo')
  assert.equal(texts[0].context.invocationType, 'Sync')
  const byTopic = Object.fromEntries(jsons.map(call => [call.context.invokerContext.topic, call.event]))
  assert.deepEqual(byTopic, { 'json/b': { celsius: 21.5, tags: ['k'] }, 'json/empty': null })
})

test('Async routes are durable: stored while no worker is up, delivered when one comes, across a gateway restart', async t => {
  const dataDir = await tempDir(t)
  const rules = [{ from: 'meter/+', to: 'Billing/record' }]
  const first = await createGateway({ port: 0, dataDir, plugins: { routes: { rules } } })
  let firstClosed = false
  t.after(() => firstClosed ? undefined : first.close())
  const plain = await mqtt.connectAsync(first.url, { reconnectPeriod: 0 })
  for (const reading of ['1', '2', '3']) await plain.publishAsync(`meter/${reading}`, `kWh ${reading}`, { qos: 1 })
  await plain.endAsync()
  await waitFor(() => first.bus.queueStats('Billing/record')[0]?.pending === 3, 5000, 'three stored invocations')
  await first.close()
  firstClosed = true

  const second = await createGateway({ port: 0, dataDir, plugins: { routes: { rules } } })
  t.after(() => second.close())
  assert.equal(second.bus.queueStats('Billing/record')[0]?.pending, 3, 'the stored invocations survived the restart')
  // the worker is a separate client connecting after the fact, as a function process would
  const worker = new FCClient(sdkOptions({ url: second.url }))
  t.after(() => worker.close())
  const seen = []
  await worker.serve('Billing/record', (event, context) => {
    seen.push([context.invokerContext.topic, Buffer.from(event).toString()])
    return null
  })
  await waitFor(() => seen.length === 3, 5000, 'the three stored events delivered')
  assert.deepEqual(seen, [['meter/1', 'kWh 1'], ['meter/2', 'kWh 2'], ['meter/3', 'kWh 3']])
})

test('a Sync route publishes the function\'s result to replyTo; failures are observed with the route\'s identity, not published', async t => {
  const { gw, routes } = await routedGateway(t, [
    { from: 'orders/new', to: 'Shop/price', invocationType: 'Sync', payloadFormat: 'json', replyTo: 'orders/priced' },
    { from: 'orders/lost', to: 'Shop/nobody', invocationType: 'Sync', identity: 'order-router' },
  ])
  await gw.serve('Shop/price', event => {
    if (event.qty < 0) throw new Error('negative quantity')
    return { id: event.id, total: event.qty * 3 }
  })
  const observed = []
  gw.events.on('invocation', observation => observed.push(observation))
  const plain = await plainClient(t, gw)
  const priced = []
  await plain.subscribeAsync('orders/priced')
  plain.on('message', (topic, payload) => priced.push(JSON.parse(payload.toString())))
  await plain.publishAsync('orders/new', JSON.stringify({ id: 'a', qty: 2 }))
  await plain.publishAsync('orders/new', JSON.stringify({ id: 'b', qty: -1 }))
  await plain.publishAsync('orders/new', 'not json')
  await plain.publishAsync('orders/lost', 'x')
  await waitFor(() => observed.length === 4, 5000, 'four observed invocations')
  await waitFor(() => priced.length === 1, 5000, 'the priced order')
  assert.deepEqual(priced, [{ id: 'a', total: 6 }])
  const outcomes = observed.map(o => [o.function, o.outcome, o.identity]).sort()
  assert.deepEqual(outcomes, [
    ['Shop/nobody', 'FNBUS_FUNCTION_NOT_FOUND', 'order-router'],
    ['Shop/price', 'FNBUS_BAD_MESSAGE', 'routes'],
    ['Shop/price', 'ok', 'routes'],
    ['Shop/price', 'unhandled', 'routes'],
  ])
  // counted as the metrics count them: the event that was not JSON too, though no call was made
  const tally = gw.invocations().find(t => t.function === 'Shop/price' && t.type === 'Sync')
  assert.deepEqual(tally?.outcomes, { ok: 1, unhandled: 1, FNBUS_BAD_MESSAGE: 1 })
  assert.deepEqual(routes.stats().map(({ matched, routed, failed }) => ({ matched, routed, failed })), [
    { matched: 3, routed: 1, failed: 2 },
    { matched: 1, routed: 0, failed: 1 },
  ])
})

test('an Async route that cannot store the event is observed and logged with an id, at warn once per burst', async t => {
  const lines = []
  const logger = {
    debug: (obj, msg) => lines.push({ level: 'debug', ...obj, msg }),
    info: (obj, msg) => lines.push({ level: 'info', ...obj, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', ...obj, msg }),
    error: (obj, msg) => lines.push({ level: 'error', ...obj, msg }),
    isLevelEnabled: () => true,
  }
  const { gw } = await routedGateway(t, [{ from: 'burst/+', to: 'Full/fn' }], { logger })
  gw.bus.setFunctionOptions('Full/fn', { async: { maxStored: 1 } })
  const observed = []
  gw.events.on('invocation', observation => observed.push(observation))
  for (const n of [1, 2, 3]) await gw.publish(`burst/${n}`, String(n))
  await waitFor(() => observed.length === 2, 5000, 'two refused invocations')
  assert.deepEqual(observed.map(o => [o.outcome, o.type, o.identity]), [['FNBUS_QUEUE_FULL', 'Async', 'routes'], ['FNBUS_QUEUE_FULL', 'Async', 'routes']])
  const warnings = lines.filter(line => line.level === 'warn' && line.to === 'Full/fn')
  assert.equal(warnings.length, 1, 'one warning for the burst')
  assert.equal(warnings[0].code, 'FNBUS_QUEUE_FULL')
  const failures = lines.filter(line => line.msg === 'routed event failed')
  assert.deepEqual(failures.map(line => line.requestId).sort(), observed.map(o => o.requestId).sort())
})

test('the policy decides a route\'s calls as its identity: a denied identity invokes nothing, and the refusal is observed and logged', async t => {
  const lines = []
  const logger = {
    debug: (obj, msg) => lines.push({ level: 'debug', ...obj, msg }),
    info: (obj, msg) => lines.push({ level: 'info', ...obj, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', ...obj, msg }),
    error: (obj, msg) => lines.push({ level: 'error', ...obj, msg }),
    isLevelEnabled: () => true,
  }
  const policy = [
    { identity: 'pricing', allow: { invoke: ['Shop/*'] } },
    { identity: 'order-router', allow: { invoke: ['*'] }, deny: { invoke: ['Shop/*'] } },
  ]
  const { gw, routes } = await routedGateway(t, [
    { from: 'orders/sync', to: 'Shop/price', invocationType: 'Sync', identity: 'order-router' },
    { from: 'orders/async', to: 'Shop/price', invocationType: 'Async', identity: 'order-router' },
    { from: 'orders/allowed', to: 'Shop/price', invocationType: 'Sync', identity: 'pricing' },
  ], { policy, logger })
  const calls = await recorder(gw, 'Shop/price')
  const observed = []
  gw.events.on('invocation', observation => observed.push(observation))
  await gw.publish('orders/sync', 'a')
  await gw.publish('orders/async', 'b')
  await gw.publish('orders/allowed', 'c')
  await waitFor(() => observed.length === 3, 5000, 'three observed invocations')
  assert.deepEqual(calls.map(call => call.event.toString()), ['c'], 'only the allowed identity\'s event reached the function')
  assert.deepEqual(observed.map(o => [o.type, o.outcome, o.identity]).sort(), [
    ['Async', 'FNBUS_NOT_AUTHORIZED', 'order-router'],
    ['Sync', 'FNBUS_NOT_AUTHORIZED', 'order-router'],
    ['Sync', 'ok', 'pricing'],
  ])
  const refusals = lines.filter(line => line.msg === 'routed event failed')
  assert.deepEqual(refusals.map(line => [line.topic, line.code]).sort(), [['orders/async', 'FNBUS_NOT_AUTHORIZED'], ['orders/sync', 'FNBUS_NOT_AUTHORIZED']])
  assert.ok(lines.some(line => line.level === 'warn' && line.code === 'FNBUS_NOT_AUTHORIZED' && /order-router may not invoke Shop\/price/.test(line.error)))
  assert.deepEqual(routes.stats().map(({ matched, routed, failed }) => ({ matched, routed, failed })), [
    { matched: 1, routed: 0, failed: 1 },
    { matched: 1, routed: 0, failed: 1 },
    { matched: 1, routed: 1, failed: 0 },
  ])
})

test('$fn/ bus traffic is never routed, even by a # rule; a $fn/ filter is refused', async t => {
  const { gw, routes } = await routedGateway(t, [{ from: '#', to: 'Spy/all', invocationType: 'Sync' }])
  const spied = await recorder(gw, 'Spy/all')
  await gw.serve('Svc/echo', event => event)
  const fc = await connectClient(t, gw)
  assert.equal(await fc.invoke('Svc/echo', 'bus call'), 'bus call')
  await fc.publish('plain/event', 'seen')
  await waitFor(() => spied.length === 1, 5000, 'the plain event')
  // the bus call went first, on the same connection: it has met the rule by now (the count says whether it matched)
  assert.deepEqual(spied.map(call => call.context.invokerContext.topic), ['plain/event'])
  assert.equal(routes.stats()[0].matched, 1)

  const err = await rejection(createGateway({ port: 0, memory: true, plugins: { routes: { rules: [{ from: '$fn/#', to: 'Spy/all' }] } } }))
  assert.equal(err.code, 'FNBUS_CONFIG_INVALID')
  assert.match(err.message, /plugins\.routes\.rules\[0\] \(\$fn\/# → Spy\/all\): from: .*reserved \$fn\/ namespace/)
})

test('rules are validated when the configuration is read: each error names the file, the rule and the key', () => {
  const file = '/srv/fnbus/fnbus.config.json'
  /** @type {[unknown, RegExp][]} */
  const bad = [
    [[{ from: 'a/#/b', to: 'A/b' }], /routes\[0\] \(a\/#\/b → A\/b\): from: .*# must be the whole last level/],
    [[{ from: 'a/+', to: 'A/b' }, { fromm: 'a', to: 'A/b' }], /routes\[1\]: unknown key "fromm"/],
    [[{ from: 'a', to: 'not-a-function' }], /routes\[0\] \(a → not-a-function\): to must be "Service\/function"/],
    [[{ from: 'a', to: 'A/1bad' }], /routes\[0\] \(a → A\/1bad\): to: function name must match/],
    [[{ to: 'A/b' }], /routes\[0\]: "from" \(a topic filter\) is required/],
    [[{ from: 'a', to: 'A/b', invocationType: 'sync' }], /invocationType must be "Sync" or "Async"/],
    [[{ from: 'a', to: 'A/b', replyTo: 'b' }], /replyTo is for Sync routes/],
    [[{ from: 'a/+', to: 'A/b', invocationType: 'Sync', replyTo: 'a/out' }], /replyTo "a\/out" matches the rule's own "from"/],
    [[{ from: 'a', to: 'A/b', identity: 'two words' }], /identity must be an identity, a name .* or a function's name \(Service\/function\), got "two words"/],
    // the security configuration's own rule: printable is not enough, and $gateway (unrestricted) is no identity a rule may take
    [[{ from: 'a', to: 'A/b', identity: '$gateway' }], /identity must be an identity, .*got "\$gateway"/],
    [[{ from: 'a', to: 'A/b', identity: 'ops.team' }], /identity must be an identity, .*got "ops\.team"/],
    [[{ from: 'a', to: 'A/b', identity: 'A/b/c' }], /identity must be an identity, .*got "A\/b\/c"/],
    [[{ from: 'a', to: 'A/b', payloadFormat: 'xml' }], /payloadFormat must be one of bytes, text, json/],
    [{ from: 'a', to: 'A/b' }, /routes must be an array/],
  ]
  for (const [routes, message] of bad) {
    assert.throws(() => parseConfig({ routes }, file), (/** @type {import('../helpers.js').Thrown} */ err) => {
      assert.equal(err.code, 'FNBUS_CONFIG_INVALID')
      assert.ok(err.message.startsWith(`${file}: `), err.message)
      assert.match(err.message, message)
      return true
    })
  }
  assert.throws(() => parseConfig({ routes: [], plugins: { routes: { rules: [] } } }, file), /not both/)
  assert.throws(() => parseConfig({ plugins: { routes: { rulez: [] } } }, file), /plugins\.routes: unknown key "rulez"/)
  assert.throws(() => parseConfig({ plugins: { routes: { identity: '$anonymous', rules: [] } } }, file), /plugins\.routes\.identity must be an identity, .*got "\$anonymous"/)
  // names and function names, as identities are written in the identities file
  assert.doesNotThrow(() => parseConfig({ routes: [{ from: 'a', to: 'A/b', identity: 'Plant/reader' }, { from: 'b', to: 'A/b', identity: 'order-router' }] }, file))
  const good = parseConfig({ routes: [{ from: 'sensors/+/temperature', to: 'Analytics/ingest', invocationType: 'Async' }] }, file)
  assert.deepEqual(good.plugins, { routes: { rules: [{ from: 'sensors/+/temperature', to: 'Analytics/ingest', invocationType: 'Async' }] } })
})

test('after gateway.close() starts, routes stop and invocations under way finish', async t => {
  const { gw, routes } = await routedGateway(t, [{ from: 'late/+', to: 'Late/fn' }])
  await gw.publish('late/1', 'x')
  await gw.close()
  assert.equal(routes.stats()[0].matched, 1)
  assert.equal(routes.stats()[0].routed, 1, 'the store write finished before the store closed')
})

test('a Sync route whose function never answers does not hold gateway.close() beyond the shutdown grace', async t => {
  const { gw, routes } = await routedGateway(t, [{ from: 'stuck/+', to: 'Stuck/fn', invocationType: 'Sync' }], { shutdownGraceMs: 100 })
  let started
  const running = new Promise(resolve => { started = resolve })
  await gw.serve('Stuck/fn', () => { started(); return new Promise(() => {}) })
  await gw.publish('stuck/1', 'x')
  await running
  const closingAt = Date.now()
  await gw.close()
  assert.ok(Date.now() - closingAt < 5000, `closed in ${Date.now() - closingAt} ms, not at the call's 30 s timeout`)
  await waitFor(() => routes.stats()[0].failed === 1, 2000, 'the call failed by the shutdown')
})
