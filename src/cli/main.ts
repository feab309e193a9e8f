import { VERSION } from '../version.js'
import { processIo, runCommandLine } from './command-line.js'
import { ExitCode, mainHelp, type CommandSpec, type Io } from './spec.js'

export { processIo } from './command-line.js'

/**
 * Every command, in the order `fnbus --help` lists them, by name: a command's module (and what it imports) loads only
 * when that command runs. `fnbus run`, the process of every supervised function, then loads the SDK and not the
 * gateway, its store or its logger; `fnbus invoke` starts in half the time.
 */
export const COMMAND_LOADERS: readonly (readonly [name: string, load: () => Promise<CommandSpec>])[] = Object.freeze([
  ['start', async () => (await import('./commands/start.js')).startCommand],
  ['run', async () => (await import('./commands/run.js')).runCommand],
  ['invoke', async () => (await import('./commands/invoke.js')).invokeCommand],
  ['publish', async () => (await import('./commands/publish.js')).publishCommand],
  ['subscribe', async () => (await import('./commands/subscribe.js')).subscribeCommand],
  ['queue', async () => (await import('./commands/queue.js')).queueCommand],
  ['status', async () => (await import('./commands/status.js')).statusCommand],
  ['identity', async () => (await import('./commands/identity.js')).identityCommand],
  ['init', async () => (await import('./commands/init.js')).initCommand],
  ['restart', async () => (await import('./commands/restart.js')).restartCommand],
])

/** Every command's spec (all their modules loaded: for `fnbus --help`). */
export async function loadCommands (): Promise<CommandSpec[]> {
  return await Promise.all(COMMAND_LOADERS.map(async ([, load]) => await load()))
}

/** Runs the command line `argv` (without `node` and the script) and resolves with the exit status. */
export async function main (argv: readonly string[], io: Io = processIo()): Promise<number> {
  const [first, ...rest] = argv
  if (first === undefined) {
    io.stderr.write(mainHelp(await loadCommands(), VERSION))
    return ExitCode.Usage
  }
  if (first === '--help' || first === '-h') {
    io.stdout.write(mainHelp(await loadCommands(), VERSION))
    return ExitCode.Ok
  }
  if (first === '--version') {
    io.stdout.write(VERSION + '\n')
    return ExitCode.Ok
  }
  const load = COMMAND_LOADERS.find(([name]) => name === first)?.[1]
  if (load === undefined) {
    const what = first.startsWith('-') ? `unknown option ${JSON.stringify(first)}` : `unknown command ${JSON.stringify(first)}`
    io.stderr.write(`fnbus: ${what}\nCommands: ${COMMAND_LOADERS.map(([name]) => name).join(', ')}. Run "fnbus --help" for usage.\n`)
    return ExitCode.Usage
  }
  return await runCommandLine(await load(), rest, io)
}
