import { isLogFormat, isLogLevel, LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from '../log-settings.js'
import { stringOption, UsageError, type CommandSpec, type ParsedArgs } from './spec.js'

/** The options of the commands that log (`start`, `run`). */
export const LOG_OPTIONS = {
  'log-level': {
    type: 'string',
    value: 'LEVEL',
    description: `Log level: ${LOG_LEVELS.join(', ')}. Default info (or FNBUS_LOG_LEVEL, or the config's log.level).`,
  },
  'log-format': {
    type: 'string',
    value: 'FORMAT',
    description: 'json (one object per line on stderr, the default) or pretty (one readable line per entry).',
  },
} as const satisfies CommandSpec['options']

/** `--log-level` and `--log-format`, checked. */
export function logFlags (values: ParsedArgs['values']): { level?: LogLevel, format?: LogFormat } {
  const level = stringOption(values, 'log-level')
  const format = stringOption(values, 'log-format')
  if (level !== undefined && !isLogLevel(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(level)}`)
  if (format !== undefined && !isLogFormat(format)) throw new UsageError(`--log-format must be one of ${LOG_FORMATS.join(', ')}, got ${JSON.stringify(format)}`)
  return { level, format }
}
