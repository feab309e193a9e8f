// The byte stream over a MessagePort that carries a thread function's MQTT connection: order, batching, the window
// that bounds it like a socket's buffers, and a peer that breaks the protocol.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import test from 'node:test'
import { PassThrough } from 'node:stream'
import { MessageChannel, MessagePort, Worker } from 'node:worker_threads'
import fc from 'fast-check'
import { createPortDuplex, LINK_PIECE_BYTES, LINK_WINDOW_BYTES, sideChannelOf } from '../../dist/util/port-duplex.js'

/** Two connected ends, both destroyed after the test. */
function pair (t, options) {
  const { port1, port2 } = new MessageChannel()
  const a = createPortDuplex(port1, options)
  const b = createPortDuplex(port2, options)
  t.after(() => { a.destroy(); b.destroy() })
  return { a, b }
}

/** One duplex and the raw port at its other end: a peer that may do anything. */
function raw (t, options) {
  const { port1, port2 } = new MessageChannel()
  const duplex = createPortDuplex(port1, options)
  t.after(() => { duplex.destroy(); port2.close() })
  return { duplex, port: port2 }
}

const tick = () => new Promise(resolve => setImmediate(resolve))

function collect (stream) {
  const chunks = []
  stream.on('data', chunk => chunks.push(chunk))
  return () => Buffer.concat(chunks)
}

test('every byte written on one end arrives, in order, on the other (any chunking, past the window and piece sizes)', async t => {
  await fc.assert(fc.asyncProperty(
    fc.array(fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.integer({ min: 1, max: 3 * LINK_PIECE_BYTES })), { minLength: 1, maxLength: 12 }),
    fc.boolean(),
    async (writes, spreadOverTicks) => {
      const { port1, port2 } = new MessageChannel()
      const a = createPortDuplex(port1, { windowBytes: 512 * 1024 })
      const b = createPortDuplex(port2, { windowBytes: 512 * 1024 })
      const received = collect(b)
      const sent = []
      for (const w of writes) {
        const chunk = typeof w === 'number' ? Buffer.alloc(w, w % 251) : Buffer.from(w)
        sent.push(chunk)
        if (!a.write(chunk)) await once(a, 'drain')
        if (spreadOverTicks) await tick()
      }
      const expected = Buffer.concat(sent)
      const until = Date.now() + 10_000
      while (received().length < expected.length && Date.now() < until) await tick()
      a.destroy()
      b.destroy()
      assert.ok(received().equals(expected), `${received().length} of ${expected.length} bytes, in order`)
    }), { numRuns: 40 })
})

test('each write crosses the port as one message, as on a socket, its buffer transferred; corked pieces as one', async t => {
  const { duplex, port } = raw(t)
  const messages = []
  port.on('message', m => messages.push(m))
  for (let i = 0; i < 3; i++) duplex.write(Buffer.from(`frame ${i};`))
  // a packet written in pieces, corked as aedes' packet writer does
  duplex.cork()
  for (let i = 0; i < 4; i++) duplex.write(Buffer.from(`piece ${i};`))
  duplex.uncork()
  await new Promise(resolve => setTimeout(resolve, 50))
  assert.ok(messages.every(m => m instanceof ArrayBuffer))
  assert.deepEqual(messages.map(m => Buffer.from(m).toString()), ['frame 0;', 'frame 1;', 'frame 2;', 'piece 0;piece 1;piece 2;piece 3;'])
})

test('a write reaches the other thread while the writer is still busy in the same turn of its event loop', async t => {
  // were the writes of a turn held for one message, a caller's window of calls would cross as one convoy and the
  // threads would take turns: the writer here writes, then waits (without yielding) until the reader has the bytes
  const seen = new Int32Array(new SharedArrayBuffer(4))
  const { port1, port2 } = new MessageChannel()
  const reader = createPortDuplex(port1)
  t.after(() => reader.destroy())
  const received = collect(reader)
  reader.on('data', () => { if (received().toString().startsWith('first;')) Atomics.store(seen, 0, 1) })
  const moduleUrl = new URL('../../dist/util/port-duplex.js', import.meta.url).href
  const worker = new Worker(`
    const { workerData } = require('node:worker_threads')
    import(workerData.moduleUrl).then(({ createPortDuplex }) => {
      const writer = createPortDuplex(workerData.port)
      writer.write(Buffer.from('first;'))
      const until = Date.now() + 5000
      while (Atomics.load(workerData.seen, 0) === 0 && Date.now() < until) {}
      writer.end(Atomics.load(workerData.seen, 0) === 1 ? 'read while busy' : 'not read in 5 s')
    })
  `, { eval: true, workerData: { moduleUrl, port: port2, seen }, transferList: [port2] })
  t.after(() => worker.terminate())
  await once(reader, 'end')
  assert.equal(received().toString(), 'first;read while busy')
})

test('a peer that reads nothing holds the writer at its window: writableLength grows as on a socket, and drains once acknowledged', async t => {
  const { duplex, port } = raw(t)
  let posted = 0
  const held = []
  port.on('message', m => { posted += m.byteLength; held.push(m) })
  // one write larger than the window, then small ones
  duplex.write(Buffer.alloc(2 * 1024 * 1024))
  const chunk = Buffer.alloc(64 * 1024)
  for (let i = 0; i < 32; i++) duplex.write(chunk) // 4 MiB in all
  await new Promise(resolve => setTimeout(resolve, 100))
  assert.ok(posted <= LINK_WINDOW_BYTES + LINK_PIECE_BYTES, `posted ${posted} bytes unacknowledged`)
  assert.ok(posted >= LINK_WINDOW_BYTES / 2, `posted ${posted}`)
  assert.ok(duplex.writableLength >= 4 * 1024 * 1024 - posted - LINK_WINDOW_BYTES, `writableLength ${duplex.writableLength}`)
  // the peer starts reading: it acknowledges what it holds and all that follows, and the rest arrives
  const drained = once(duplex, 'drain')
  port.postMessage([posted, held.length])
  port.on('message', m => port.postMessage([m.byteLength, 1]))
  await drained
  await new Promise(resolve => setTimeout(resolve, 50))
  assert.equal(posted, 4 * 1024 * 1024)
})

test('a peer that posts past its window, oversized pieces, or anything but data, acknowledgements and side messages is cut (FNBUS_BAD_MESSAGE)', async t => {
  const cases = {
    'past the window': port => { for (let i = 0; i < 8; i++) port.postMessage(new ArrayBuffer(LINK_PIECE_BYTES)) },
    'an oversized piece': port => port.postMessage(new ArrayBuffer(LINK_PIECE_BYTES + 1)),
    // taken while the reader's buffer has room (16 KiB), then unacknowledged: more than a window of messages
    'too many small messages': port => { for (let i = 0; i < 20_000; i++) port.postMessage(new ArrayBuffer(1)) },
    'a number': port => port.postMessage(42),
    'an array that is not an acknowledgement': port => port.postMessage(['x', 1]),
    'an empty piece': port => port.postMessage(new ArrayBuffer(0)),
    'an acknowledgement of what was never sent': port => port.postMessage([100, 1]),
  }
  for (const [what, hostile] of Object.entries(cases)) {
    const { duplex, port } = raw(t)
    // a consumer that never reads: nothing is acknowledged
    duplex.pause()
    const error = once(duplex, 'error')
    hostile(port)
    const [err] = await error
    assert.equal(err.code, 'FNBUS_BAD_MESSAGE', what)
    assert.ok(duplex.destroyed, what)
  }
})

test('whatever a peer posts, the stream either takes it or is cut with a coded error: nothing throws', async t => {
  await fc.assert(fc.asyncProperty(fc.array(fc.oneof(fc.anything(), fc.uint8Array({ maxLength: 300 }).map(u => u.buffer)), { maxLength: 20 }), async messages => {
    const { port1, port2 } = new MessageChannel()
    const duplex = createPortDuplex(port1)
    const errors = []
    duplex.on('error', err => errors.push(err))
    duplex.resume()
    for (const m of messages) {
      try { port2.postMessage(m) } catch { /* not cloneable: never sent */ }
    }
    await new Promise(resolve => setTimeout(resolve, 5))
    for (const err of errors) assert.equal(err.code, 'FNBUS_BAD_MESSAGE')
    duplex.destroy()
    port2.close()
  }), { numRuns: 100 })
})

test('side messages cross beside the bytes, with the ports they transfer; one its listener throws on cuts the stream', async t => {
  const { port1, port2 } = new MessageChannel()
  const a = createPortDuplex(port1)
  const b = createPortDuplex(port2)
  t.after(() => { a.destroy(); b.destroy() })
  const side = sideChannelOf(a)
  assert.ok(side !== undefined && sideChannelOf(new PassThrough()) === undefined)
  const extra = new MessageChannel()
  const received = once(b, 'side')
  side.postSide({ t: 'hello', port: extra.port1 }, [extra.port1])
  const [message] = await received
  assert.equal(message.t, 'hello')
  assert.ok(message.port instanceof MessagePort)
  message.port.close()
  // the bytes still flow around them
  const data = once(b, 'data')
  a.write(Buffer.from('after'))
  assert.equal(String((await data)[0]), 'after')
  b.on('side', () => { throw new Error('not for me') })
  const error = once(b, 'error')
  side.postSide({ t: 'boom' })
  const [err] = await error
  assert.equal(err.code, 'FNBUS_BAD_MESSAGE')
  extra.port2.close()
})

test('closing one end ends the other; what was written before a destroy still arrives', async t => {
  const { a, b } = pair(t)
  const received = collect(b)
  const ended = once(b, 'end')
  const closed = once(b, 'close')
  a.write('CONNACK refused')
  a.destroy()
  await ended
  assert.equal(received().toString(), 'CONNACK refused')
  await closed
})
