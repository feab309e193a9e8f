import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

/** The package version, as the gateway reports it in `welcome` and `--version`. */
export const VERSION: string = (require('../package.json') as { version: string }).version
