// Greengrass v1's SDK names on fnbus: IotData.publish and Lambda.invoke with Greengrass' parameters and answers, a
// Lambda ARN mapped to a function by its lambdaName.
import assert from 'node:assert/strict'
import test from 'node:test'
import { IotData, Lambda, lambdaFunction } from '../../dist/index.js'
import { connectClient, rejection, startGateway, waitFor } from '../helpers.js'

const ARN = 'arn:aws:lambda:eu-west-1:123456789012:function:reader:3'

async function gateway (t) {
  const gw = await startGateway(t)
  gw.bus.setFunctionOptions('Plant/reader', { lambdaName: 'reader' })
  return gw
}

function lambda (t, gw) {
  const client = new Lambda({ url: gw.url })
  t.after(() => client.close())
  return client
}

test('Lambda.invoke RequestResponse by ARN: JSON payload in, the answer as JSON text out, the client context as context.clientContext', async t => {
  const gw = await gateway(t)
  const seen = []
  await gw.serve('Plant/reader', (event, context, callback) => {
    seen.push({ event, clientContext: context.clientContext })
    callback(undefined, { result: 'message', n: event.n + 1 })
  })
  const ClientContext = Buffer.from(JSON.stringify({ custom: { site: 7 } })).toString('base64')
  const data = await new Promise((resolve, reject) => lambda(t, gw).invoke(
    { FunctionName: ARN, InvocationType: 'RequestResponse', ClientContext, Payload: JSON.stringify({ n: 41 }) },
    (err, result) => err ? reject(err) : resolve(result)))
  assert.deepEqual(data, { StatusCode: 200, Payload: '{"result":"message","n":42}' })
  assert.deepEqual(seen, [{ event: { n: 41 }, clientContext: { custom: { site: 7 } } }])
})

test('Lambda.invoke: bytes stay bytes, text that is not JSON stays text, function errors as Greengrass reports them', async t => {
  const gw = await gateway(t)
  await gw.serve('Plant/reader', async event => {
    if (event === 'fail') throw new Error('sensor offline')
    return event
  })
  const client = lambda(t, gw)
  const bytes = await client.invoke({ FunctionName: 'reader', Payload: Buffer.from([1, 2, 3]) })
  assert.deepEqual(bytes, { StatusCode: 200, Payload: Buffer.from([1, 2, 3]) })
  const text = await client.invoke({ FunctionName: ARN, Payload: 'plain text' })
  assert.equal(text.Payload, '"plain text"')
  const failed = await client.invoke({ FunctionName: ARN, Payload: 'fail' })
  assert.deepEqual(failed, { StatusCode: 200, FunctionError: 'Unhandled', Payload: '{"errorMessage":"sensor offline"}' })
})

test('Lambda.invoke Event: stored and answered 202; its id is the invocation the function sees', async t => {
  const gw = await gateway(t)
  const seen = []
  await gw.serve('Plant/reader', async (event, context) => { seen.push(context.requestId) })
  const data = await lambda(t, gw).invoke({ FunctionName: ARN, InvocationType: 'Event', Payload: '{}' })
  assert.equal(data.StatusCode, 202)
  await waitFor(() => seen.length === 1, 3000, 'the delivery')
  assert.equal(seen[0], data.InvocationId)
})

test('Lambda.invoke refuses what Greengrass refuses: no or a malformed FunctionName, a Qualifier that contradicts the ARN, a bad InvocationType or ClientContext', async t => {
  const gw = await gateway(t)
  const client = lambda(t, gw)
  assert.match((await rejection(client.invoke(/** @type {any} */ ({})))).message, /"FunctionName" is a required parameter/)
  assert.match((await rejection(client.invoke({ FunctionName: 'arn:aws:lambda:x:1:function:has space' }))).message, /FunctionName is malformed/)
  assert.match((await rejection(client.invoke({ FunctionName: ARN, Qualifier: '4' }))).message, /does not match the version in FunctionName/)
  assert.match((await rejection(client.invoke({ FunctionName: ARN, InvocationType: /** @type {any} */ ('DryRun') }))).message, /InvocationType 'DryRun' is incorrect/)
  assert.match((await rejection(client.invoke({ FunctionName: ARN, ClientContext: 'bm90IGpzb24=' }))).message, /Client Context is invalid/)
  // a name no function takes: the bus' own answer
  assert.equal((await rejection(client.invoke({ FunctionName: 'nobody' }))).code, 'FNBUS_FUNCTION_NOT_FOUND')
  assert.deepEqual(lambdaFunction(ARN), { name: 'Lambda/reader', qualifier: '3' })
})

test('IotData.publish({ topic, payload, queueFullPolicy }, callback) publishes an event; a bad policy is refused', async t => {
  const gw = await startGateway(t)
  const subscriber = await connectClient(t, gw)
  const got = []
  await subscriber.subscribe('hello/#', (topic, payload) => got.push([topic, payload.toString()]))
  const iot = new IotData({ url: gw.url })
  t.after(() => iot.close())
  const data = await new Promise((resolve, reject) => iot.publish({ topic: 'hello/world', payload: '{"message":"hi"}', queueFullPolicy: 'AllOrError' }, (err, result) => err ? reject(err) : resolve(result)))
  assert.deepEqual(data, {})
  await waitFor(() => got.length === 1, 3000, 'the event')
  assert.deepEqual(got, [['hello/world', '{"message":"hi"}']])
  assert.match((await rejection(iot.publish({ topic: 'hello/world', payload: 'x', queueFullPolicy: /** @type {any} */ ('Sometimes') }))).message, /queueFullPolicy must be/)
})

test('two functions may not share a Lambda name', async t => {
  const gw = await gateway(t)
  assert.throws(() => gw.bus.setFunctionOptions('Plant/other', { lambdaName: 'reader' }), /Lambda\/reader names Plant\/reader already/)
})
