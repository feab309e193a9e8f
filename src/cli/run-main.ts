// `fnbus run`, the process of every supervised function, on its own: bin/fnbus.js loads this module for that
// command instead of main.ts. The build bundles it with everything it imports into one file, dist/run.js
// (scripts/build-runtime.js): each ES module a process loads costs it resident memory, and a function's process
// loaded ~50 of them (51 MB resident with the SDK imported, 45 MB bundled; a bare node with the same pipes: 42 MB).
import { processIo, runCommandLine } from './command-line.js'
import { runCommand } from './commands/run.js'

/** Runs `fnbus run …`: `argv` is the command line after `run`. */
export async function main (argv: readonly string[]): Promise<number> {
  return await runCommandLine(runCommand, argv, processIo())
}
