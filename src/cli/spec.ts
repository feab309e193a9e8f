import type { Readable, Writable } from 'node:stream'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { parseFunctionName, type FunctionAddress } from '../protocol/names.js'

/**
 * Commands are data: their arguments and options generate both the `parseArgs` configuration and the help text,
 * so the two cannot drift apart (a unit test holds them together).
 */
export interface OptionSpec {
  readonly type: 'string' | 'boolean'
  readonly short?: string
  /** The value's placeholder in the help text (`--timeout MS`); string options only. */
  readonly value?: string
  readonly description: string
}

export interface ArgumentSpec {
  readonly name: string
  readonly description: string
  readonly required: boolean
}

export interface CommandSpec {
  readonly name: string
  /** One line, for `fnbus --help`. */
  readonly summary: string
  /** More, for `fnbus COMMAND --help`. */
  readonly description?: string
  readonly arguments: readonly ArgumentSpec[]
  readonly options: Readonly<Record<string, OptionSpec>>
  readonly run: (args: ParsedArgs, io: Io) => Promise<number>
}

export interface ParsedArgs {
  readonly values: Readonly<Record<string, string | boolean | undefined>>
  readonly positionals: readonly string[]
}

/** The process' streams and environment, passed in so that commands can be run by tests. */
export interface Io {
  readonly stdout: Writable
  readonly stderr: Writable
  readonly stdin: Readable
  readonly env: Readonly<Record<string, string | undefined>>
  readonly cwd: string
}

/** Exit statuses, as the contract fixes them (docs/design.md). */
export const ExitCode = {
  Ok: 0,
  /** A transport or gateway error. */
  Failure: 1,
  Usage: 2,
  /** The function ran and failed. */
  FunctionFailed: 3,
} as const

/** The command line asks for something impossible: exit 2, with the message and a pointer to `--help`. */
export class UsageError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

export const HELP_OPTION: Readonly<Record<string, OptionSpec>> = {
  help: { type: 'boolean', short: 'h', description: 'Show this help and exit.' },
}

export const URL_OPTION: Readonly<Record<string, OptionSpec>> = {
  url: {
    type: 'string',
    value: 'URL',
    description: 'Gateway address. Default: $FNBUS_URL, else mqtt://127.0.0.1:1883.',
  },
}

/** Options of every command that connects to a gateway. */
export const CONNECTION_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  ...URL_OPTION,
  ca: {
    type: 'string',
    value: 'FILE',
    description: 'CA certificate (PEM) to trust for an mqtts:// gateway. Default: $FNBUS_CA.',
  },
  username: {
    type: 'string',
    value: 'NAME',
    description: 'The identity to connect as; its secret comes from $FNBUS_PASSWORD. Default: $FNBUS_USERNAME.',
  },
}

/** The `parseArgs` configuration of a command, generated from its spec. */
export function parseArgsConfig (command: CommandSpec): ParseArgsConfig {
  const options: NonNullable<ParseArgsConfig['options']> = {}
  for (const [name, option] of Object.entries(command.options)) {
    options[name] = option.short === undefined ? { type: option.type } : { type: option.type, short: option.short }
  }
  return { options, allowPositionals: true, strict: true }
}

/** Parses a command's arguments; any problem is a UsageError. `--help` skips the checks of arguments. */
export function parseCommandLine (command: CommandSpec, argv: readonly string[]): ParsedArgs {
  let parsed: { values: Record<string, unknown>, positionals: string[] }
  try {
    parsed = parseArgs({ ...parseArgsConfig(command), args: [...argv] }) as typeof parsed
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const values = { ...parsed.values } as Record<string, string | boolean | undefined>
  if (values.help === true) return { values, positionals: parsed.positionals }
  const max = command.arguments.length
  const min = command.arguments.filter(a => a.required).length
  if (parsed.positionals.length < min) {
    const missing = command.arguments.slice(parsed.positionals.length).filter(a => a.required).map(a => a.name)
    throw new UsageError(`missing ${missing.join(' and ')}`)
  }
  if (parsed.positionals.length > max) {
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[max])}`)
  }
  return { values, positionals: parsed.positionals }
}

/** `fnbus COMMAND --help`. */
export function commandHelp (command: CommandSpec): string {
  const args = command.arguments.map(a => a.required ? a.name : `[${a.name}]`).join(' ')
  const lines = [`Usage: fnbus ${command.name}${args === '' ? '' : ' ' + args} [options]`, '', command.summary]
  if (command.description !== undefined) lines.push('', ...command.description.split('\n'))
  if (command.arguments.length > 0) {
    lines.push('', 'Arguments:', ...table(command.arguments.map(a => [a.name, a.description])))
  }
  lines.push('', 'Options:', ...table(Object.entries(command.options).map(([name, option]) => [optionLabel(name, option), option.description])))
  return lines.join('\n') + '\n'
}

/** `fnbus --help`. */
export function mainHelp (commands: readonly CommandSpec[], version: string): string {
  return [
    `fnbus ${version}: a function bus for edge gateways`,
    '',
    'Usage: fnbus COMMAND [options]',
    '',
    'Commands:',
    ...table(commands.map(c => [c.name, c.summary])),
    '',
    'Options:',
    ...table([['-h, --help', 'Show this help and exit.'], ['    --version', 'Print the version and exit.']]),
    '',
    'Run "fnbus COMMAND --help" for the options of a command.',
    'Environment: FNBUS_URL is the default gateway address of every command that takes --url;',
    'they connect as FNBUS_USERNAME with FNBUS_PASSWORD when set, and trust the CA file FNBUS_CA (mqtts://).',
    'Exit status: 0 success, 1 transport or gateway error, 2 usage error, 3 the function failed.',
  ].join('\n') + '\n'
}

export function optionLabel (name: string, option: OptionSpec): string {
  const long = `--${name}${option.type === 'string' ? ` ${option.value ?? 'VALUE'}` : ''}`
  return option.short === undefined ? `    ${long}` : `-${option.short}, ${long}`
}

function table (rows: readonly (readonly [string, string])[]): string[] {
  const width = Math.max(...rows.map(([left]) => left.length))
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`)
}

/** A positive integer option (ms, counts…), or undefined when not given. */
export function integerOption (values: ParsedArgs['values'], name: string, min = 1, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const value = values[name]
  if (value === undefined || typeof value === 'boolean') return undefined
  const number = /^\d+$/.test(value) ? Number(value) : NaN
  if (!Number.isSafeInteger(number) || number < min || number > max) {
    throw new UsageError(`--${name} must be an integer between ${min} and ${max}, got ${JSON.stringify(value)}`)
  }
  return number
}

export function stringOption (values: ParsedArgs['values'], name: string): string | undefined {
  const value = values[name]
  return typeof value === 'string' ? value : undefined
}

/** Reads all of stdin, for `--payload -`. */
export async function readAll (stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk as Buffer)
  return Buffer.concat(chunks)
}

/** The SERVICE/FUNCTION argument of a command: a malformed name is a usage error (exit 2), not a transport one. */
export function functionArgument (value: string): FunctionAddress {
  try {
    return parseFunctionName(value, 'SERVICE/FUNCTION')
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}
