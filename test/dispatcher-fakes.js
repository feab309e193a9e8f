// Ports and requests for the dispatcher's unit tests: workers that record what they get, callers of one connection.
// (Not a test file.)
import assert from 'node:assert/strict'
import { parseFunctionName, Payload } from '../dist/protocol/index.js'
/** @import { CallRequest, Delivery, Outcome, QueueOwner } from '../dist/dispatcher/index.js' */

export const fn = parseFunctionName('Svc/fn')
export const options = { maxQueuedCalls: 10, defaultTimeoutMs: 5000, maxTimeoutMs: 60_000 }

/** @param {string} label */
export function fakeWorker (label) {
  return {
    label,
    /** @type {Delivery[]} */
    deliveries: [],
    congested: false,
    /** @param {Delivery} d */
    deliver (d) { this.deliveries.push(d) },
  }
}

/**
 * A caller of one connection: its calls count against `owner`.
 * @param {QueueOwner} [owner]
 */
export function fakeCaller (owner) {
  return {
    alive: true,
    owner,
    /** @type {Outcome[]} */
    outcomes: [],
    /** @param {Outcome} o */
    settle (o) { this.outcomes.push(o) },
  }
}

/** @returns {QueueOwner} */
export const owner = () => ({ queuedCalls: 0, queuedBytes: 0 })
/** @param {number} bytes */
export const wire = bytes => Payload.fromWire(0, Buffer.alloc(bytes))
/**
 * @param {Partial<CallRequest>} [extra]
 * @returns {CallRequest}
 */
export const request = (extra = {}) => ({ fn, type: 'Sync', payload: Payload.of('x'), context: undefined, timeoutMs: undefined, waitForWorkerMs: undefined, ...extra })
/** The error code of the first outcome `caller` got, if it was an error. */
export const codeOf = (/** @type {{ outcomes: Outcome[] } | undefined} */ caller) => errorOf(caller?.outcomes[0])?.code

/**
 * The bus error of `outcome`, if it is one.
 * @param {Outcome | undefined} outcome
 */
export function errorOf (outcome) {
  return outcome?.ok === false ? outcome.error : undefined
}

/**
 * The answer's payload of `outcome`, which must be a function's answer (not a bus error).
 * @param {Outcome | undefined} outcome
 */
export function payloadOf (outcome) {
  assert.ok(outcome?.ok === true, `expected an answer, got ${JSON.stringify(outcome)}`)
  return outcome.payload
}
