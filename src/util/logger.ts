/**
 * Helpers every layer logs through (the events are listed in docs/logging.md): a child
 * logger per component, a rate limit for events a peer can repeat at will, and the fields an
 * error is logged with. Nothing here runs per message.
 */
import type { Logger } from '../types.js'

const silent = (): void => {}
/** A logger that drops everything (the default of `createNode`). */
export const SILENT_LOGGER: Logger = { error: silent, warn: silent, info: silent, debug: silent }

/**
 * `logger` with `component` on every record: pino's `child` when the logger has one, else a
 * wrapper adding the field. The silent logger stays itself.
 */
export function childLogger(logger: Logger, component: string): Logger {
  return bindLogger(logger, { component })
}

/**
 * `logger` with `bindings` on every record: pino's `child` when the logger has one, else a
 * wrapper adding the fields. The silent logger stays itself.
 */
export function bindLogger(logger: Logger, bindings: Record<string, unknown>): Logger {
  if (logger === SILENT_LOGGER) return logger
  if (typeof logger.child === 'function') return logger.child(bindings)
  const at =
    (level: 'error' | 'warn' | 'info' | 'debug') =>
    (fields: Record<string, unknown>, msg: string): void =>
      logger[level]({ ...bindings, ...fields }, msg)
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') }
}

/** The fields an error is logged with: its class name and message (no stack, one line). */
export function errFields(err: unknown): { err: string; errName: string } {
  if (err instanceof Error) return { errName: err.name, err: err.message }
  return { errName: typeof err, err: String(err) }
}

/**
 * Logs at most one line per key every `intervalMs`; the next line after a quiet spell carries
 * `suppressed`, how many were dropped meanwhile. Bounded: at most `maxKeys` keys are
 * remembered (the oldest forgotten first).
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>()

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = 60_000,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 256,
  ) {}

  /** Logs `msg` at `level` unless a line of `key` was logged within the interval. */
  log(
    level: 'error' | 'warn' | 'info' | 'debug',
    key: string,
    fields: Record<string, unknown>,
    msg: string,
  ): void {
    const now = this.now()
    const seen = this.last.get(key)
    if (seen !== undefined && now - seen.at < this.intervalMs) {
      seen.suppressed++
      return
    }
    const suppressed = seen?.suppressed ?? 0
    this.last.delete(key)
    this.last.set(key, { at: now, suppressed: 0 })
    if (this.last.size > this.maxKeys) this.last.delete(this.last.keys().next().value!)
    this.logger[level](suppressed > 0 ? { ...fields, suppressed } : fields, msg)
  }
}
