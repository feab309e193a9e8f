import { FnbusError } from '../errors.js'
import { VERSION } from '../version.js'
import { identityCommand } from './commands/identity.js'
import { initCommand } from './commands/init.js'
import { restartCommand } from './commands/restart.js'
import { invokeCommand } from './commands/invoke.js'
import { publishCommand } from './commands/publish.js'
import { queueCommand } from './commands/queue.js'
import { runCommand } from './commands/run.js'
import { startCommand } from './commands/start.js'
import { statusCommand } from './commands/status.js'
import { subscribeCommand } from './commands/subscribe.js'
import { commandHelp, ExitCode, mainHelp, parseCommandLine, UsageError, type CommandSpec, type Io } from './spec.js'

/** Every command, in the order `fnbus --help` lists them. */
export const COMMANDS: readonly CommandSpec[] = Object.freeze([
  startCommand,
  runCommand,
  invokeCommand,
  publishCommand,
  subscribeCommand,
  queueCommand,
  statusCommand,
  identityCommand,
  initCommand,
  restartCommand,
])

export function processIo (): Io {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, cwd: process.cwd() }
}

/** Runs the command line `argv` (without `node` and the script) and resolves with the exit status. */
export async function main (argv: readonly string[], io: Io = processIo()): Promise<number> {
  const [first, ...rest] = argv
  if (first === undefined) {
    io.stderr.write(mainHelp(COMMANDS, VERSION))
    return ExitCode.Usage
  }
  if (first === '--help' || first === '-h') {
    io.stdout.write(mainHelp(COMMANDS, VERSION))
    return ExitCode.Ok
  }
  if (first === '--version') {
    io.stdout.write(VERSION + '\n')
    return ExitCode.Ok
  }
  const command = COMMANDS.find(c => c.name === first)
  if (command === undefined) {
    const what = first.startsWith('-') ? `unknown option ${JSON.stringify(first)}` : `unknown command ${JSON.stringify(first)}`
    io.stderr.write(`fnbus: ${what}\nCommands: ${COMMANDS.map(c => c.name).join(', ')}. Run "fnbus --help" for usage.\n`)
    return ExitCode.Usage
  }
  try {
    const args = parseCommandLine(command, rest)
    if (args.values.help === true) {
      io.stdout.write(commandHelp(command))
      return ExitCode.Ok
    }
    return await command.run(args, io)
  } catch (err) {
    return reportError(err, command, io)
  }
}

/** Usage and configuration mistakes exit 2; gateway and transport errors exit 1 with their code. */
function reportError (err: unknown, command: CommandSpec, io: Io): number {
  if (err instanceof UsageError) {
    io.stderr.write(`fnbus ${command.name}: ${err.message}\nRun "fnbus ${command.name} --help" for usage.\n`)
    return ExitCode.Usage
  }
  if (err instanceof FnbusError) {
    io.stderr.write(`${err.code}: ${err.message}\n`)
    return err.code === 'FNBUS_CONFIG_INVALID' ? ExitCode.Usage : ExitCode.Failure
  }
  io.stderr.write(`fnbus ${command.name}: unexpected error: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  return ExitCode.Failure
}
