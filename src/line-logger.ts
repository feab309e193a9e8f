import type { Writable } from 'node:stream'
import { formatPretty, type LogLevel, type LogSettings } from './log-settings.js'
import type { Logger } from './logger.js'

/** pino's level numbers: an entry is written when its level's is at least the logger's. */
const LEVEL_VALUES: Readonly<Record<LogLevel, number>> = Object.freeze({ trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity })

type Write = (objOrMessage: object | string, message?: string) => void

/** What `fnbus run` logs with: the gateway's Logger, and a message alone as pino takes it. */
export interface LineLogger extends Logger {
  readonly debug: Write
  readonly info: Write
  readonly warn: Write
  readonly error: Write
}

/**
 * The lines createLogger's pino logger writes (logging.ts) — `{"level":"info","time":…,"pid":…,…bindings,…fields,
 * "msg":…}`, or the pretty format — without pino: what `fnbus run` logs with, so that a function's process does not
 * load pino (its worker threads, its streams) for the few lines it writes. The supervisor passes these lines on as
 * they are (isRuntimeLogLine). Errors in a field are written as pino's serializer writes them.
 */
export function createLineLogger (stream: Writable, settings: LogSettings, bindings: Record<string, unknown> = {}): LineLogger {
  const threshold = LEVEL_VALUES[settings.level]
  const at = (level: LogLevel): Write => (objOrMessage, message) => {
    if (LEVEL_VALUES[level] < threshold) return
    const fields = typeof objOrMessage === 'string' ? {} : serialized(objOrMessage)
    const text = typeof objOrMessage === 'string' ? objOrMessage : message
    const entry = { level, time: new Date().toISOString(), pid: process.pid, ...bindings, ...fields, ...(text === undefined ? {} : { msg: text }) }
    stream.write((settings.format === 'pretty' ? formatPretty(entry) : JSON.stringify(entry)) + '\n')
  }
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    isLevelEnabled: level => LEVEL_VALUES[level as LogLevel] >= threshold,
  }
}

/** An entry's fields, an Error among them as `{ type, message, stack, …its own fields }` (pino's `err` serializer). */
function serialized (obj: object): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(obj)) {
    out[key] = value instanceof Error ? { type: value.name, message: value.message, stack: value.stack, ...ownFields(value) } : value
  }
  return out
}

/** An error's own fields besides its message and stack (`code`, say). */
function ownFields (err: Error): Record<string, unknown> {
  const { message: _message, stack: _stack, ...rest } = err as Error & Record<string, unknown>
  return rest
}
