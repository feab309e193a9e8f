import { FnbusError } from '../errors.js'
import { commandHelp, ExitCode, parseCommandLine, UsageError, type CommandSpec, type Io } from './spec.js'

export function processIo (): Io {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, cwd: process.cwd() }
}

/** Runs one command with the rest of its command line: its options parsed, `--help`, and how its errors exit. */
export async function runCommandLine (command: CommandSpec, rest: readonly string[], io: Io): Promise<number> {
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
