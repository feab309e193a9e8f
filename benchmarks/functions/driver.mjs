// A function that calls another from inside the gateway's world, as a caller function does: invoked with
// `{ target, size, concurrency, warmupMs, durationMs }`, it runs the benchmark's closed loop of `target` calls
// through its own FCClient (made with no address: in a thread it reaches the gateway through the thread, in a
// process through FNBUS_URL) and answers with the loop's figures.
import { FCClient } from '../../dist/index.js'
import { closedLoop } from '../lib/measure.js'

const fc = new FCClient()

export async function handler ({ target, size, concurrency, warmupMs, durationMs }) {
  const payload = Buffer.alloc(size, 'x')
  return await closedLoop({ call: () => fc.invoke(target, payload), concurrency, warmupMs, durationMs })
}
