#!/usr/bin/env node
// The `fnbus` command. The CLI lives in dist/cli (built by `npm run build`).
// `fnbus run` is the process of one function: there msgpackr decodes in plain JavaScript, without its native string
// decoder (msgpackr-extract: ~6 MB of each such process's memory, for speed that shows on large messages full of
// strings, not on the bus' small envelopes). The gateway keeps it. Setting the variable (to false) keeps it too.
const run = process.argv[2] === 'run'
if (run) process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED ??= 'true'
// `fnbus run` loads its command alone, bundled into one module (scripts/build-runtime.js): a resident-memory saving
// in every supervised function's process
const { main } = run ? await import('../dist/run.js') : await import('../dist/cli/main.js')

// `fnbus subscribe … | head -1`: the reader is gone, which is how such a pipeline ends, not an error
process.stdout.on('error', err => {
  if (err.code === 'EPIPE') process.exit(0)
  throw err
})

const code = await main(process.argv.slice(run ? 3 : 2))
// Long-running commands leave handles behind (sockets, the function's own clients): end here, once stdout is out.
process.stdout.write('', () => process.exit(code))
