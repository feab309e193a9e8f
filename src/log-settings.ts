import type { Writable } from 'node:stream'

// Log settings and the line format shared by the gateway's pino logger (logging.ts) and `fnbus run`'s own
// (line-logger.ts): nothing here loads pino.

/** pino's levels, most to least severe, and `silent`. */
export const LOG_LEVELS = Object.freeze(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const)
export type LogLevel = typeof LOG_LEVELS[number]
export const LOG_FORMATS = Object.freeze(['json', 'pretty'] as const)
export type LogFormat = typeof LOG_FORMATS[number]

/** `component` of the entries `fnbus run` writes: the supervisor passes these lines on as they are. */
export const RUNTIME_COMPONENT = 'runtime'

export const DEFAULT_LOG_LEVEL: LogLevel = 'info'
export const DEFAULT_LOG_FORMAT: LogFormat = 'json'

export function isLogLevel (value: unknown): value is LogLevel {
  return typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value)
}

export function isLogFormat (value: unknown): value is LogFormat {
  return typeof value === 'string' && (LOG_FORMATS as readonly string[]).includes(value)
}

export interface LogSettings {
  readonly level: LogLevel
  readonly format: LogFormat
}

/** Where a command's logging settings may come from, most important first. */
export interface LogSources {
  /** `--log-level` / `--log-format`. */
  readonly flags?: { readonly level?: LogLevel, readonly format?: LogFormat }
  /** The configuration's `log` block. */
  readonly config?: { readonly level?: LogLevel, readonly format?: LogFormat }
  /** FNBUS_LOG_LEVEL, FNBUS_LOG_FORMAT, FNBUS_DEBUG: how the supervisor passes its settings on to its functions. */
  readonly env: Readonly<Record<string, string | undefined>>
}

/**
 * Flags win over the environment, which wins over the configuration file: the supervisor hands its own level to
 * the functions it runs through the environment, and a shell user can raise one gateway's level without editing
 * its file. `FNBUS_DEBUG` (any value) stays a short way to ask for `debug`.
 */
export function resolveLogSettings ({ flags = {}, config = {}, env }: LogSources): LogSettings {
  const envLevel = env.FNBUS_LOG_LEVEL
  const envFormat = env.FNBUS_LOG_FORMAT
  const level = flags.level ??
    (isLogLevel(envLevel) ? envLevel : undefined) ??
    (env.FNBUS_DEBUG !== undefined && env.FNBUS_DEBUG !== '' ? 'debug' : undefined) ??
    config.level ?? DEFAULT_LOG_LEVEL
  const format = flags.format ?? (isLogFormat(envFormat) ? envFormat : undefined) ?? config.format ?? DEFAULT_LOG_FORMAT
  return { level, format }
}

/** Whether `line` is a JSON entry of an `fnbus run` runtime (which names its function and instance itself). */
export function isRuntimeLogLine (line: string): boolean {
  return line.startsWith('{"level":"') && line.includes(`"component":"${RUNTIME_COMPONENT}"`)
}

/** The environment a process started by this one needs to log the same way. */
export function logEnvironment (settings: LogSettings): Record<string, string> {
  return { FNBUS_LOG_LEVEL: settings.level, FNBUS_LOG_FORMAT: settings.format }
}

/** Fields the pretty format shows in its own way rather than as `key=value`. */
const PRETTY_OWN_FIELDS = new Set(['level', 'time', 'msg', 'pid'])

/** Turns pino's JSON lines into `HH:MM:SS.mmm LEVEL message key=value …` for a person at a terminal. */
export function prettyDestination (stream: Writable): { write (line: string): void } {
  return {
    write (line: string): void {
      let entry: Record<string, unknown>
      try {
        entry = JSON.parse(line) as Record<string, unknown>
      } catch {
        stream.write(line)
        return
      }
      stream.write(formatPretty(entry) + '\n')
    },
  }
}

export function formatPretty (entry: Readonly<Record<string, unknown>>): string {
  const time = typeof entry.time === 'string' ? entry.time.slice(11, 23) : new Date().toISOString().slice(11, 23)
  const level = String(entry.level ?? '').toUpperCase().padEnd(5)
  const fields: string[] = []
  let stack: string | undefined
  for (const [key, value] of Object.entries(entry)) {
    if (PRETTY_OWN_FIELDS.has(key) || value === undefined || value === null) continue
    if (key === 'err' && value !== null && typeof value === 'object') {
      const err = value as { message?: unknown, code?: unknown, stack?: unknown }
      fields.push(`err=${JSON.stringify(typeof err.code === 'string' ? `${err.code}: ${String(err.message)}` : String(err.message))}`)
      if (typeof err.stack === 'string' && err.code === undefined) stack = err.stack
      continue
    }
    fields.push(`${key}=${typeof value === 'string' && /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value)}`)
  }
  const text = `${time} ${level} ${String(entry.msg ?? '')}${fields.length > 0 ? '  ' + fields.join(' ') : ''}`
  return stack === undefined ? text : `${text}\n${stack.replace(/^/gm, '    ')}`
}
