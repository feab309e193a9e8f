// Ports and requests for the dispatcher's unit tests: workers that record what they get, callers of one connection.
// (Not a test file.)
import { parseFunctionName, Payload } from '../dist/protocol/index.js'

export const fn = parseFunctionName('Svc/fn')
export const options = { maxQueuedCalls: 10, defaultTimeoutMs: 5000, maxTimeoutMs: 60_000 }

export function fakeWorker (label) {
  return { label, deliveries: [], congested: false, deliver (d) { this.deliveries.push(d) } }
}

/** A caller of one connection: its calls count against `owner`. */
export function fakeCaller (owner) {
  return { alive: true, owner, outcomes: [], settle (o) { this.outcomes.push(o) } }
}

export const owner = () => ({ queuedCalls: 0, queuedBytes: 0 })
export const wire = bytes => Payload.fromWire(0, Buffer.alloc(bytes))
export const request = (extra = {}) => ({ fn, type: 'Sync', payload: Payload.of('x'), context: undefined, timeoutMs: undefined, waitForWorkerMs: undefined, ...extra })
export const codeOf = caller => caller.outcomes[0]?.error?.code
