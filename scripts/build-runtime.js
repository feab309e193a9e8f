#!/usr/bin/env node
// The runtime half of the build, after tsc: bundles a function's runtime, each with all it imports (msgpackr
// included), into one ES module: `fnbus run` (dist/cli/run-main.js → dist/run.js, which bin/fnbus.js loads for that
// command) and a function thread's entry (dist/runtime/thread-main.js → dist/thread.js, which thread-host.ts starts).
// Each ES module a process or a thread loads costs it memory and start time: a function's process took 51 MB
// resident with ~50 modules, 45 MB bundled (a bare node with the same pipes and IPC channel: 42 MB); 10 thread
// functions and the gateway 199–200 → 188–189 MB, serving 1.29–1.71 → 1.10–1.25 s after spawn (alternated, a busy
// machine). Nothing else uses the bundles; the package's modules stay as tsc wrote them.
import { build } from 'esbuild'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))

/**
 * What resolves at run time relative to a module's own file, which moves into dist/ in the bundle: the version read
 * from package.json through `createRequire` (inlined instead), and MQTT.js' transport, which the SDK requires only
 * for WebSocket urls or MQTT.js options (pointed at its file under dist/client/ instead).
 */
const relocated = {
  name: 'fnbus-relocated',
  setup (build) {
    build.onLoad({ filter: /[\\/]dist[\\/]version\.js$/ }, () => ({ contents: `export const VERSION = ${JSON.stringify(version)}`, loader: 'js' }))
    build.onLoad({ filter: /[\\/]dist[\\/]client[\\/]choose-transport\.js$/ }, args => {
      const source = readFileSync(args.path, 'utf8')
      const moved = source.replaceAll("'./mqtt-transport.js'", "'./client/mqtt-transport.js'")
      if (moved === source) throw new Error(`${args.path}: no './mqtt-transport.js' to relocate (did it move?)`)
      return { contents: moved, loader: 'js' }
    })
  },
}

/** What a function's process must never load: the gateway's side, and the packages only it uses. */
const GATEWAY = /(^|\/)dist\/(gateway\.js|gateway\/|broker\/|store\/|http\/|dispatcher\/|bridge\/|logging\.js|config\.js|plugins\.js)|node_modules\/(aedes|aedes-persistence-level|level|classic-level|pino|prom-client|ws|mqtt)\//

const result = await build({
  absWorkingDir: root,
  entryPoints: { run: 'dist/cli/run-main.js', thread: 'dist/runtime/thread-main.js' },
  outdir: 'dist',
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: ['node20'],
  // msgpackr's native string decoder stays a package of its own (a native addon), loaded only when enabled
  external: ['msgpackr-extract'],
  plugins: [relocated],
  metafile: true,
  logLevel: 'warning',
})
const strays = Object.keys(result.metafile.inputs).filter(input => GATEWAY.test(input))
if (strays.length > 0) throw new Error(`dist/run.js or dist/thread.js, a function's runtime, would hold the gateway's code: ${strays.join(', ')}`)
