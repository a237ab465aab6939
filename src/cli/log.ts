/**
 * The logger `plexus node` hands to its node: one line per event on stderr,
 * `plexus: <level>: <message> {fields as JSON}`. Levels below `PLEXUS_LOG_LEVEL` (error,
 * warn, info, debug; default warn) are dropped.
 */
import type { Logger } from '../types.js'

const LEVELS = ['error', 'warn', 'info', 'debug'] as const

/** A stderr logger at `level` (an unknown level name falls back to `warn`). */
export function stderrLogger(level = process.env.PLEXUS_LOG_LEVEL ?? 'warn'): Logger {
  const max = LEVELS.indexOf(level as (typeof LEVELS)[number])
  const upTo = max < 0 ? LEVELS.indexOf('warn') : max
  const at =
    (i: number) =>
    (fields: Record<string, unknown>, msg: string): void => {
      if (i > upTo) return
      process.stderr.write(`plexus: ${LEVELS[i]}: ${msg} ${JSON.stringify(fields)}\n`)
    }
  return { error: at(0), warn: at(1), info: at(2), debug: at(3) }
}
