// The logger the gateway writes to: pino's calling convention, so a pino logger can be passed as it is.

export interface Logger {
  debug (obj: object, msg?: string): void
  info (obj: object, msg?: string): void
  warn (obj: object, msg?: string): void
  error (obj: object, msg?: string): void
  /** pino's: lets the bus skip building debug entries nobody will see. Without it every level counts as enabled. */
  isLevelEnabled? (level: string): boolean
}

const noop = (): void => {}
export const silentLogger: Logger = Object.freeze({ debug: noop, info: noop, warn: noop, error: noop, isLevelEnabled: () => false })

/** Whether `logger` writes `level` entries: a logger that cannot tell is taken at its word that it does. */
export function logsAt (logger: Logger, level: 'debug' | 'info' | 'warn' | 'error'): boolean {
  return typeof logger.isLevelEnabled === 'function' ? logger.isLevelEnabled(level) : true
}
