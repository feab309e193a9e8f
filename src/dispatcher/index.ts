export { Dispatcher, failure, type DispatcherOptions, type FunctionStats } from './dispatcher.js'
export type { CallerPort, CallRequest, Delivery, Outcome, QueueOwner, WorkerPort, Work, WorkSource } from './types.js'
