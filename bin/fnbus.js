#!/usr/bin/env node
// The `fnbus` command. The CLI lives in dist/cli (built by `npm run build`).
import { main } from '../dist/cli/main.js'

const code = await main(process.argv.slice(2))
// Long-running commands leave handles behind (sockets, the function's own clients): end here, once stdout is out.
process.stdout.write('', () => process.exit(code))
