import { FnbusError, invalidArgument } from '../errors.js'
import type { QueueStats } from '../dispatcher/async-engine.js'
import type { DeadInvocation } from '../store/types.js'
import { parseFunctionName, type FunctionAddress, type QueueRequest } from '../protocol/index.js'
import type { Policy } from '../security/policy.js'
import type { BusContext } from './context.js'

/** An operator's request on stored invocations: a `queue` envelope's fields (`fnbus queue`), or a dashboard action. */
export type OperatorRequest = Pick<QueueRequest, 'op' | 'fn' | 'iid' | 'limit'>

/** Cancels a stored invocation that has not started. */
export async function cancelStored (ctx: BusContext, invocationId: string): Promise<void> {
  if (typeof invocationId !== 'string' || invocationId.length === 0) throw invalidArgument('invocationId must be a non-empty string')
  await ctx.storeReady
  await ctx.async.cancel(invocationId)
}

/** Counts of stored invocations per function: pending, in flight, dead. */
export function queueStats (ctx: BusContext, fn?: string): QueueStats[] {
  return ctx.async.queueStats(fn)
}

export async function listDead (ctx: BusContext, fn: string | undefined, limit = 100): Promise<DeadInvocation[]> {
  await ctx.storeReady
  return await ctx.async.listDead(fn, limit)
}

/** Sends dead-lettered invocations back to their queue: one by id, or all of a function (or of every function). */
export async function retryDead (ctx: BusContext, selector: { readonly id: string } | { readonly fn: string | undefined }): Promise<number> {
  await ctx.storeReady
  return await ctx.async.revive(selector, name => parseFunctionName(name))
}

export async function purgeDead (ctx: BusContext, fn: string | undefined): Promise<number> {
  await ctx.storeReady
  return await ctx.async.purgeDead(fn)
}

/**
 * A caller may cancel the waiting invocations it made itself; an operator (a `manage` grant), any of the functions
 * it manages. Without a policy every identity manages everything, as it may do everything else.
 */
export async function authorizeCancel (ctx: BusContext, subject: string, invocationId: string): Promise<void> {
  const policy = ctx.options.policy
  if (policy === undefined) return
  await ctx.storeReady
  const found = await ctx.async.ownerOf(invocationId)
  if (found === undefined) return // cancel answers FNBUS_INVOCATION_NOT_FOUND
  const fn = parseFunctionName(found.fn)
  if (policy.mayManage(subject, fn)) return
  if (found.caller === subject && policy.mayInvoke(subject, fn)) return
  throw new FnbusError('FNBUS_NOT_AUTHORIZED', `${subject} may not cancel ${invocationId}: only the identity that made it, or one that manages ${fn.name}, may`)
}

/**
 * Which functions an operator sees in the status: under a policy, those `identity` may manage; undefined (all)
 * without a policy or without an identity (the HTTP port's loopback reads).
 */
export function manageableBy (ctx: BusContext, identity: string | undefined): ((fn: string) => boolean) | undefined {
  const policy = ctx.options.policy
  if (policy === undefined || identity === undefined) return undefined
  return name => policy.mayManage(identity, parseFunctionName(name))
}

/** FNBUS_NOT_AUTHORIZED unless `identity` may manage the function, or the function of the stored invocation. */
export async function authorizeManage (ctx: BusContext, identity: string, target: { readonly fn: string } | { readonly invocationId: string }): Promise<void> {
  const policy = ctx.options.policy
  if (policy === undefined) return
  let name: string | undefined
  if ('fn' in target) {
    name = parseFunctionName(target.fn, 'fn').name
  } else {
    await ctx.storeReady
    name = await ctx.async.functionOf(target.invocationId)
    if (name === undefined) return // the operation itself answers FNBUS_INVOCATION_NOT_FOUND
  }
  if (!policy.mayManage(identity, parseFunctionName(name))) throw new FnbusError('FNBUS_NOT_AUTHORIZED', `${identity} may not manage ${name}`)
}

/**
 * An operator's request on stored invocations, as `subject`: a `queue` envelope, or a dashboard action. Under a
 * policy it sees and acts on the functions the identity may manage and no others.
 */
export async function queueAs (ctx: BusContext, subject: string, request: OperatorRequest): Promise<unknown> {
  const fn = request.fn === undefined ? undefined : parseFunctionName(request.fn, 'fn')
  const policy = ctx.options.policy
  if (policy === undefined) return await queueOperation(ctx, request, fn?.name)
  if (fn !== undefined && !policy.mayManage(subject, fn)) {
    throw new FnbusError('FNBUS_NOT_AUTHORIZED', `${subject} may not manage the queue of ${fn.name}`)
  }
  return await managedQueueOperation(ctx, request, fn, subject, policy)
}

function queueOperation (ctx: BusContext, request: OperatorRequest, fn: string | undefined): Promise<unknown> {
  switch (request.op) {
    case 'ls': return Promise.resolve(queueStats(ctx, fn).map(describeQueue))
    case 'dead': return listDead(ctx, fn, request.limit ?? 100).then(dead => dead.map(describeDead))
    case 'retry': return retryDead(ctx, request.iid !== undefined ? { id: request.iid } : { fn }).then(revived => ({ revived }))
    case 'purge': return purgeDead(ctx, fn).then(purged => ({ purged }))
  }
}

/** A queue request under a policy: it sees and acts on the functions the identity may manage, and no others. */
async function managedQueueOperation (ctx: BusContext, request: OperatorRequest, fn: FunctionAddress | undefined, subject: string, policy: Policy): Promise<unknown> {
  await ctx.storeReady
  if (request.op === 'retry' && request.iid !== undefined) {
    const name = await ctx.async.functionOf(request.iid)
    if (name !== undefined && !policy.mayManage(subject, parseFunctionName(name))) {
      throw new FnbusError('FNBUS_NOT_AUTHORIZED', `${subject} may not manage the queue of ${name}`)
    }
    return await queueOperation(ctx, request, undefined)
  }
  if (fn !== undefined) return await queueOperation(ctx, request, fn.name)
  const managed = queueStats(ctx).map(stats => stats.fn).filter(name => policy.mayManage(subject, parseFunctionName(name)))
  switch (request.op) {
    case 'ls': return queueStats(ctx).filter(stats => managed.includes(stats.fn)).map(describeQueue)
    case 'dead': {
      const limit = request.limit ?? 100
      const lists = await Promise.all(managed.map(name => listDead(ctx, name, limit)))
      return lists.flat().sort((a, b) => a.diedAt - b.diedAt).slice(0, limit).map(describeDead)
    }
    case 'retry': {
      let revived = 0
      for (const name of managed) revived += await retryDead(ctx, { fn: name })
      return { revived }
    }
    case 'purge': {
      let purged = 0
      for (const name of managed) purged += await purgeDead(ctx, name)
      return { purged }
    }
  }
}

/** A function's stored invocations as operators see them: `function`, as every answer and JSON output names it. */
function describeQueue (stats: QueueStats): Record<string, unknown> {
  return { function: stats.fn, pending: stats.pending, inFlight: stats.inFlight, dead: stats.dead }
}

/** A dead invocation as operators see it: ids, counts and the last error, not the payload bytes. */
function describeDead (dead: DeadInvocation): Record<string, unknown> {
  return {
    invocationId: dead.id,
    function: dead.fn,
    attempts: dead.attempts,
    createdAt: dead.createdAt,
    diedAt: dead.diedAt,
    error: dead.lastError,
    payloadBytes: dead.payload.length,
  }
}
