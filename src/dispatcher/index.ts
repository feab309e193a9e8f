export { Dispatcher, type DispatcherOptions } from './dispatcher.js'
export { failure, resultOutcome } from './outcome.js'
export type { FunctionStats } from './function-table.js'
export type { CallerPort, CallRequest, Delivery, LeaseLink, Outcome, QueueOwner, WorkerPort, Work, WorkSource } from './types.js'
