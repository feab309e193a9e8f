import { MessageChannel, type TransferListItem } from 'node:worker_threads'
import { isErrorCode } from '../errors.js'
import type { GatewayEvents, InvocationOutcome } from '../observations.js'
import type { LeaseEnd, LeaseGrant, LeaseGrow, LeaseRevoke, LeaseServe, LeaseTally } from '../protocol/lease.js'
import type { FunctionEntry, Slot } from './pending-call.js'
import type { LeaseLink, QueueOwner } from './types.js'

/** One caller connection's hold on some of one worker's slots for one function. */
interface Lease {
  readonly id: number
  readonly owner: QueueOwner
  readonly link: LeaseLink
  readonly slot: Slot
  /** Slots counted in the worker's in-flight for this lease. */
  slots: number
  revoked: boolean
  readonly identity: string | undefined
}

export interface LeaseTableOptions {
  /** Hands what waits for `entry` to workers with room (the dispatcher's pump). */
  readonly pump: (entry: FunctionEntry) => void
  /** The default timeout of calls to `name`, and the most one may ask for, ms. */
  readonly timeouts: (name: string) => readonly [number, number]
  readonly events: GatewayEvents | undefined
  /** False: no lease is granted (a gateway that rate-limits calls counts each one itself). */
  readonly grants: boolean
}

/**
 * The direct path's leases (docs/isolation.md). When a Sync call between two function threads of this process
 * settles and the worker has room that no waiting call wants, the caller's connection is granted a lease: some of
 * the worker's slots, counted as in flight here, so no other caller and no stored work overcommits the worker, and a
 * MessageChannel whose ends go to the caller's and the worker's threads. The caller then calls over it directly,
 * two thread hops instead of four, within the slots, each call carrying its deadline; it reports what settled
 * (`lease-tally`) for the tallies and observers. The dispatcher stays the one place that decides: it grants only
 * after the policy let the caller's identity reach the function through it (the call that settled), grows a lease
 * while the worker has room, and takes it back (revokes) as soon as another call has to wait for the worker, the
 * worker leaves, or the caller's connection goes.
 */
export class LeaseTable {
  readonly #options: LeaseTableOptions
  readonly #byOwner = new Map<QueueOwner, Map<string, Lease>>()
  readonly #bySlot = new Map<Slot, Set<Lease>>()
  readonly #byId = new Map<number, Lease>()
  #nextId = 1
  /** Calls that settled on leases since the start (status: how much took the direct path). */
  directCalls = 0

  constructor (options: LeaseTableOptions) {
    this.#options = options
  }

  get size (): number {
    return this.#byId.size
  }

  /**
   * A Sync call from `owner` to `slot`'s worker settled (the slot is free again): grant or grow a lease when both
   * ends are function threads and nothing waits. `requestId`: the settled call's, the new lease's request ids prefix.
   */
  settled (owner: QueueOwner, slot: Slot, identity: string | undefined, requestId: string): void {
    const entry = slot.entry
    const free = slot.concurrency - slot.inFlight
    if (!this.#options.grants || free <= 0 || entry.waiting > 0 || entry.source?.waiting === true || slot.worker.congested === true || !entry.slots.includes(slot)) return
    const leases = this.#byOwner.get(owner)
    const held = leases?.get(entry.address.name)
    // half of the room left each time: a lone caller grows to the worker's whole concurrency, two share it
    const more = Math.ceil(free / 2)
    if (held !== undefined) {
      if (held.revoked || held.slot !== slot) return
      held.slots += more
      slot.inFlight += more
      this.#post(held.link, { t: 'lease-grow', id: held.id, slots: more } satisfies LeaseGrow)
      return
    }
    const callerLink = owner.leaseLink
    const workerLink = slot.worker.leaseLink
    if (callerLink === undefined || workerLink === undefined) return
    const { port1, port2 } = new MessageChannel()
    const lease: Lease = { id: this.#nextId++, owner, link: callerLink, slot, slots: more, revoked: false, identity }
    const name = entry.address.name
    const [timeout, maxTimeout] = this.#options.timeouts(name)
    if (!this.#post(workerLink, { t: 'lease-serve', id: lease.id, fn: name, slots: slot.concurrency, port: port2 } satisfies LeaseServe, [port2]) ||
      !this.#post(callerLink, { t: 'lease', id: lease.id, fn: name, slots: more, timeout, maxTimeout, rid: `${requestId}.`, port: port1 } satisfies LeaseGrant, [port1])) {
      port1.close()
      return
    }
    slot.inFlight += more
    this.#byId.set(lease.id, lease)
    if (leases === undefined) this.#byOwner.set(owner, new Map([[name, lease]]))
    else leases.set(name, lease)
    let onSlot = this.#bySlot.get(slot)
    if (onSlot === undefined) this.#bySlot.set(slot, onSlot = new Set())
    onSlot.add(lease)
  }

  /** A call waits for `entry`'s workers, or stored work does: every lease on them is taken back. */
  pressure (entry: FunctionEntry): void {
    if (this.#byId.size === 0) return
    for (const slot of entry.slots) {
      for (const lease of this.#bySlot.get(slot) ?? []) this.#revoke(lease)
    }
  }

  /** The gateway is shutting down: every lease is taken back, so new calls meet the refusal at the gateway. */
  revokeAll (): void {
    for (const lease of this.#byId.values()) this.#revoke(lease)
  }

  /** `slot`'s worker no longer serves its function (it left, or unregistered): its leases end. */
  detached (slot: Slot): void {
    const leases = this.#bySlot.get(slot)
    if (leases === undefined) return
    for (const lease of [...leases]) {
      this.#revoke(lease)
      this.#end(lease, false)
    }
  }

  /** `owner`'s connection is gone: its leases end (its thread's ports closed with it). */
  ownerGone (owner: QueueOwner): void {
    const leases = this.#byOwner.get(owner)
    if (leases === undefined) return
    for (const lease of [...leases.values()]) this.#end(lease, true)
  }

  /** What `owner`'s thread says of its leases; false when it is not what a thread may say (the link is then cut). */
  fromThread (owner: QueueOwner, message: LeaseEnd | LeaseTally): boolean {
    const lease = this.#byId.get(message.id)
    // a lease that ended here already (the worker left) may still be reported on: harmless
    if (lease === undefined) return true
    if (lease.owner !== owner) return false
    if (message.t === 'lease-end') {
      this.#end(lease, true)
      return true
    }
    const calls = message.calls
    for (let i = 0; i < calls.length; i += 3) {
      const outcome = calls[i + 1] as string
      if (outcome !== 'ok' && outcome !== 'handled' && outcome !== 'unhandled' && !isErrorCode(outcome)) return false
    }
    this.#record(lease, calls)
    return true
  }

  #record (lease: Lease, calls: readonly (string | number)[]): void {
    const entry = lease.slot.entry
    const tally = entry.syncTally
    const events = this.#options.events
    const observed = events?.observed('invocation') === true
    for (let i = 0; i < calls.length; i += 3) {
      const outcome = calls[i + 1] as InvocationOutcome
      const durationMs = calls[i + 2] as number
      tally.recordOutcome(outcome, durationMs / 1000)
      this.directCalls++
      if (observed) {
        events?.emit('invocation', {
          requestId: calls[i] as string,
          function: entry.address.name,
          service: entry.address.serviceName,
          type: 'Sync',
          outcome,
          durationMs,
          identity: lease.identity,
        })
      }
    }
  }

  #revoke (lease: Lease): void {
    if (lease.revoked) return
    lease.revoked = true
    this.#post(lease.link, { t: 'lease-revoke', id: lease.id } satisfies LeaseRevoke)
  }

  /** The lease is over: its slots return to the worker (`give`: unless the worker is gone), and what waits goes. */
  #end (lease: Lease, give: boolean): void {
    if (!this.#byId.delete(lease.id)) return
    const leases = this.#byOwner.get(lease.owner)
    leases?.delete(lease.slot.entry.address.name)
    if (leases?.size === 0) this.#byOwner.delete(lease.owner)
    const onSlot = this.#bySlot.get(lease.slot)
    onSlot?.delete(lease)
    if (onSlot?.size === 0) this.#bySlot.delete(lease.slot)
    lease.slot.inFlight -= lease.slots
    if (give) this.#options.pump(lease.slot.entry)
  }

  #post (link: LeaseLink, message: object, transfer?: readonly TransferListItem[]): boolean {
    try {
      link.postSide(message, transfer)
      return true
    } catch {
      // a link closing as the grant goes: no lease
      return false
    }
  }
}
