/**
 * Resolves when `done` does, or at the first SIGINT or SIGTERM, whichever comes first. Long-running commands end
 * this way; a second signal while they shut down ends the process at once.
 */
export async function untilSignal (done?: Promise<unknown>): Promise<NodeJS.Signals | undefined> {
  let onSignal: ((signal: NodeJS.Signals) => void) | undefined
  const signalled = new Promise<NodeJS.Signals>(resolve => {
    onSignal = signal => resolve(signal)
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
  })
  try {
    return await Promise.race([signalled, done === undefined ? new Promise<never>(() => {}) : done.then(() => undefined)])
  } finally {
    if (onSignal !== undefined) {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  }
}

/** After the first signal: a second SIGINT or SIGTERM runs `force` (which should end the process). */
export function onSecondSignal (force: (signal: NodeJS.Signals) => void): () => void {
  const handler = (signal: NodeJS.Signals): void => force(signal)
  process.once('SIGINT', handler)
  process.once('SIGTERM', handler)
  return () => {
    process.off('SIGINT', handler)
    process.off('SIGTERM', handler)
  }
}
