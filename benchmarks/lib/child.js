// The entry of every benchmark process: it loads one role from roles/ and serves the orchestrator's requests
// (the protocol is described in lib/processes.js).

// The orchestrator is gone (it crashed or was killed without cleaning up): never outlive it.
process.on('disconnect', () => process.exit(0))

let instance

async function handle (op, args) {
  switch (op) {
    case 'start': {
      const mod = await import(new URL(`../roles/${args.module}.js`, import.meta.url))
      if (typeof mod[args.role] !== 'function') throw new Error(`roles/${args.module}.js has no role "${args.role}"`)
      instance = await mod[args.role](args.opts)
      return { pid: process.pid, ...instance.info }
    }
    case 'call': {
      const method = instance?.[args.method]
      if (typeof method !== 'function') throw new Error(`the role has no method "${args.method}"`)
      return await method.call(instance, args.args)
    }
    case 'memory':
      // two passes: the first can leave weak references and finalizers for the second
      globalThis.gc?.()
      globalThis.gc?.()
      return process.memoryUsage()
    case 'stop':
      await instance?.close?.()
      return null
    default:
      throw new Error(`unknown op ${op}`)
  }
}

process.on('message', async ({ id, op, args }) => {
  let reply
  try {
    reply = { id, ok: true, value: await handle(op, args) }
  } catch (err) {
    reply = { id, ok: false, error: { message: err?.message ?? String(err), stack: err?.stack, code: err?.code } }
  }
  // exit only once the answer is on its way, so the orchestrator is not left waiting for it
  process.send(reply, () => { if (op === 'stop') process.exit(0) })
})
