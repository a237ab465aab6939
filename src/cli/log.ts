/**
 * The logger `plexus node` hands to its node: pino on stderr (stdout stays the node's own
 * lines: ready, joined, stopped). `--log-level` picks the lowest level written (default
 * `info`), `--log-format` the shape: `pretty` (one readable line per event, pino-pretty run
 * synchronously in this process, no worker thread) or `json` (one JSON object per line, pino's
 * own format). Without `--log-format` it is `pretty` when stderr is a terminal, else `json`.
 *
 * Precedence (SPEC "flags override the file, `PLEXUS_*` variables override both", config.ts):
 * `PLEXUS_LOG_LEVEL` / `PLEXUS_LOG_FORMAT` win over the flags, which win over `logLevel` /
 * `logFormat` in a `--config` file. A bad value is a usage error naming where it came from.
 */
import type { Logger } from '../types.js'
import { describe } from '../util/validate.js'
import { UsageError } from './output.js'

/** Levels `--log-level` accepts, most verbose first (`silent` writes nothing). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const
/** Shapes `--log-format` accepts. */
export const LOG_FORMATS = ['pretty', 'json'] as const
/** Level of `plexus node` without a flag or variable. */
export const DEFAULT_LOG_LEVEL = 'info'

/** A level name `--log-level` accepts. */
export type LogLevel = (typeof LOG_LEVELS)[number]
/** A format name `--log-format` accepts. */
export type LogFormat = (typeof LOG_FORMATS)[number]

/** The level and format in effect, after flags and `PLEXUS_*` variables. */
export interface LogSettings {
  level: LogLevel
  format: LogFormat
}

/**
 * The settings from the parsed options (flags, `--config` file and `PLEXUS_*` variables are
 * already merged by config.ts, each value checked by `parseChoice`): defaults where unset,
 * the format `pretty` on a terminal and `json` otherwise.
 */
export function logSettings(
  flags: { logLevel?: string; logFormat?: string },
  isTTY = process.stderr.isTTY === true,
): LogSettings {
  return {
    level: (flags.logLevel as LogLevel | undefined) ?? DEFAULT_LOG_LEVEL,
    format: (flags.logFormat as LogFormat | undefined) ?? (isTTY ? 'pretty' : 'json'),
  }
}

/** A commander parser for a flag that takes one of `allowed` (`UsageError` naming `flag`). */
export function parseChoice(allowed: readonly string[], flag: string): (value: string) => string {
  return (value) => {
    if (!allowed.includes(value))
      throw new UsageError(`${flag} must be one of ${allowed.join(', ')}, got ${describe(value)}`)
    return value
  }
}

/**
 * A pino logger writing to file descriptor `fd` (stderr by default) synchronously, so every
 * line is out before the process exits, even on `process.exit`. pino is loaded here, not at
 * start-up, so the other commands do not pay for it.
 */
export async function cliLogger(settings: LogSettings, fd = 2): Promise<Logger> {
  const { destination, pino } = await import('pino')
  const opts = { level: settings.level, base: { pid: process.pid } }
  if (settings.format === 'json') return asLogger(pino(opts, destination({ fd, sync: true })))
  const { default: pretty } = await import('pino-pretty')
  const stream = pretty({
    destination: fd,
    sync: true,
    colorize: fd === 2 && process.stderr.isTTY === true,
    singleLine: true,
    translateTime: 'SYS:HH:MM:ss.l',
    messageFormat: '{if component}{component}: {end}{msg}',
    ignore: 'pid,hostname,component',
  })
  return asLogger(pino(opts, stream))
}

/** pino's logger as the node's `Logger` (a plain call keeps pino's types out of the promise). */
function asLogger(l: Logger): Logger {
  return l
}
