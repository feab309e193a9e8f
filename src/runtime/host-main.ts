// A host process of thread functions (host-process.ts starts it: `node host-main.js NAME`, with an IPC channel):
// runs the threads the supervisor asks for with its own ThreadHost, each thread's connections piped to the
// gateway's socket, and tells the supervisor what each thread says and how it ends. Ends when the channel does.
import type { Duplex } from 'node:stream'
import { openStream, streamTarget } from '../client/streams.js'
import type { FromHost, ToHost } from './host-process.js'
import type { Run } from './runner.js'
import { ThreadHost } from './thread-host.js'

const send = (message: FromHost): void => { if (process.connected) process.send?.(message) }
const runs = new Map<number, Run>()

/** A thread's connection, carried to the gateway over a socket of its own, as a process function's would be. */
function connect (url: string) {
  return (stream: Duplex): void => {
    let socket: Duplex
    try {
      socket = openStream({ url, target: streamTarget(url, undefined) })
    } catch {
      stream.destroy()
      return
    }
    stream.pipe(socket).pipe(stream)
    socket.on('error', () => stream.destroy())
    stream.on('error', () => socket.destroy())
    socket.once('close', () => stream.destroy())
    stream.once('close', () => socket.destroy())
  }
}

let host: ThreadHost | undefined

process.on('message', (message: ToHost) => {
  if (message?.t === 'start') {
    host ??= new ThreadHost({ connect: connect(message.spec.url) })
    const id = message.id
    const run = host.start({ ...message.spec, output: process.stdout }, {
      message: runtime => send({ t: 'message', id, message: runtime }),
      misbehaved: reason => send({ t: 'misbehaved', id, reason }),
      error: () => {},
      exited: exit => {
        runs.delete(id)
        send({ t: 'exited', id, exit })
      },
    })
    runs.set(id, run)
    if (run.threadId !== undefined) send({ t: 'started', id, threadId: run.threadId })
    return
  }
  const run = runs.get(message?.id)
  if (run === undefined) return
  if (message.t === 'send') run.send(message.message)
  else if (message.t === 'stop') run.stop()
  else if (message.t === 'kill') run.kill()
})
// the supervisor is gone (or done with this host): its threads go with it
process.once('disconnect', () => {
  for (const run of runs.values()) run.kill()
  setTimeout(() => process.exit(0), 1000).unref()
})
