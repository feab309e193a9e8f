import type { Writable } from 'node:stream'
import { pino, type Logger as PinoLogger } from 'pino'
import { prettyDestination, type LogSettings } from './log-settings.js'

export * from './log-settings.js'

/**
 * A pino logger writing one JSON object per line to `stream` (the process' stderr: stdout carries results), or,
 * with the `pretty` format, one human-readable line per entry. `bindings` are added to every line
 * (`{ component: 'gateway' }`, `{ fn: 'EdgeFC/helloworld' }`).
 */
export function createLogger (stream: Writable, settings: LogSettings, bindings: Record<string, unknown> = {}): PinoLogger {
  const destination = settings.format === 'pretty' ? prettyDestination(stream) : stream
  return pino({
    level: settings.level,
    // the host name is the same on every line of a gateway; the pid tells a gateway from its functions
    base: { pid: process.pid, ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: {
      // `"level":"info"` rather than 30: readable by eye and by grep, as the level option spells it
      level: label => ({ level: label }),
    },
  }, destination)
}
