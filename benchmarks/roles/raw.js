// The floor, not a peer: what four socket hops cost on this machine with no messaging stack at all. A forwarder
// copies bytes between raw TCP sockets without looking at them; caller and worker frame each message with a 4-byte
// length. No MQTT parsing, no broker logic, no envelope: every system of the Sync workload makes these same four
// hops, so the distance from this row is what its stack adds.
import { connect, createServer } from 'node:net'
import { closedLoop } from '../lib/measure.js'

/** Forwards the worker's bytes to the caller and back; each side connects to a port of its own. */
export async function forwarder () {
  let worker
  let caller
  const workerPort = await listen(socket => {
    worker = socket
    socket.on('data', chunk => caller?.write(chunk))
  })
  const callerPort = await listen(socket => {
    caller = socket
    socket.on('data', chunk => worker?.write(chunk))
  })
  return {
    info: { workerPort: workerPort.port, callerPort: callerPort.port },
    close: () => {
      worker?.destroy()
      caller?.destroy()
      return Promise.all([workerPort.close(), callerPort.close()])
    },
  }
}

async function listen (onSocket) {
  const server = createServer(socket => {
    socket.setNoDelay(true)
    socket.on('error', () => {})
    onSocket(socket)
  })
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
  return { port: server.address().port, close: () => new Promise(resolve => server.close(resolve)) }
}

/** Echoes every length-framed message. */
export async function worker ({ port }) {
  const socket = await open(port)
  readFrames(socket, frame => socket.write(frame))
  return { close: () => socket.destroy() }
}

/** Sends length-framed messages; the replies come back in order (one worker, one TCP path). */
export async function caller ({ port }) {
  const socket = await open(port)
  const waiting = []
  let head = 0
  readFrames(socket, () => {
    const resolve = waiting[head]
    waiting[head++] = undefined
    if (head > 1024 && head * 2 > waiting.length) { waiting.splice(0, head); head = 0 }
    resolve()
  })
  return {
    run ({ size, concurrency, warmupMs, durationMs }) {
      const frame = Buffer.alloc(4 + size, 'x')
      frame.writeUInt32BE(size, 0)
      return closedLoop({
        call: () => new Promise(resolve => { waiting.push(resolve); socket.write(frame) }),
        concurrency,
        warmupMs,
        durationMs,
      })
    },
    close: () => socket.destroy(),
  }
}

async function open (port) {
  const socket = connect(port, '127.0.0.1')
  socket.setNoDelay(true)
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  return socket
}

/** Calls `onFrame` with each whole frame (length prefix included) as it completes. */
function readFrames (socket, onFrame) {
  let pending = Buffer.alloc(0)
  socket.on('data', chunk => {
    let buffer = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    while (buffer.length >= 4) {
      const end = 4 + buffer.readUInt32BE(0)
      if (buffer.length < end) break
      onFrame(buffer.subarray(0, end))
      buffer = buffer.subarray(end)
    }
    pending = buffer
  })
}
