#!/usr/bin/env node
// The `fnbus` command. The CLI lives in dist/cli (built by `npm run build`).
import { main } from '../dist/cli/main.js'

// `fnbus subscribe … | head -1`: the reader is gone, which is how such a pipeline ends, not an error
process.stdout.on('error', err => {
  if (err.code === 'EPIPE') process.exit(0)
  throw err
})

const code = await main(process.argv.slice(2))
// Long-running commands leave handles behind (sockets, the function's own clients): end here, once stdout is out.
process.stdout.write('', () => process.exit(code))
