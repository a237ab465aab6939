/**
 * Errors of the commit log. They extend `PlexusError`, so `err.name` is the class name.
 */
import { PlexusError } from '../errors.js'

/**
 * The log found bytes it cannot trust before the tail of the log (a sealed segment, or a
 * record a read reached), where truncating would lose acknowledged data. Names the file and
 * the byte position of the first bad record. Nothing is changed on disk when it is thrown.
 */
export class CorruptLogError extends PlexusError {
  constructor(
    readonly file: string,
    readonly position: number,
    readonly reason: string,
  ) {
    super(`corrupt commit log: ${file} at byte ${position}: ${reason}`)
  }
}

/** The log was closed; the operation did not run (or its outcome is unknown if it was queued). */
export class LogClosedError extends PlexusError {}

/** Internal: a reader met a segment retired under it; `LogCore.stable` retries the read. */
export class StaleSegmentError extends Error {
  override name = 'StaleSegmentError'
}
