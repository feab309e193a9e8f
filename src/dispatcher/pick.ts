import type { FunctionEntry, Slot } from './pending-call.js'

/**
 * The slot a call goes to: least in flight among the workers with a free slot, ties round-robin. Workers of this
 * gateway come first: another gateway's (a cluster's `remote` port, src/cluster/) takes a call only when none of
 * them has room, and never one that came from another gateway (`localOnly`: a call crosses the cluster once).
 */
export function pickSlot (entry: FunctionEntry, localOnly: boolean): Slot | undefined {
  const slots = entry.slots
  const n = slots.length
  let best: Slot | undefined
  let bestIndex = 0
  let remote: Slot | undefined
  let remoteIndex = 0
  for (let k = 0; k < n; k++) {
    const index = (entry.cursor + k) % n
    const slot = slots[index] as Slot
    if (slot.inFlight >= slot.concurrency || slot.worker.congested === true) continue
    if (slot.worker.remote === true) {
      if (!localOnly && (remote === undefined || slot.inFlight < remote.inFlight)) {
        remote = slot
        remoteIndex = index
      }
      continue
    }
    if (best === undefined || slot.inFlight < best.inFlight) {
      best = slot
      bestIndex = index
      if (slot.inFlight === 0) break
    }
  }
  if (best === undefined) {
    best = remote
    bestIndex = remoteIndex
  }
  if (best !== undefined) entry.cursor = (bestIndex + 1) % n
  return best
}
