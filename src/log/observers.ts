/**
 * Observers of the commit logs under a directory: a node registers its `dataDir` here, and
 * every commit log opened below it reports
 * - the duration of each synced write (fsync 'always': one O_DSYNC write, or a write then
 *   fdatasync; group commit batches appends, so this is per batch, never per message), for
 *   the fsync metric and stall logs;
 * - errors of its background work (interval flushes, retention and compaction), which no
 *   caller sees, for the node's logs.
 * Logs look their observer up once when opened; a log opened before the registration
 * reports nothing.
 */
import { resolve, sep } from 'node:path'

/** What a node wants to hear from the logs under its data directory. */
export interface LogObserver {
  /** The duration of one synced write (seconds). */
  synced(seconds: number): void
  /** A background task (`flush`, `maintenance`) of the log in `dir` failed with `err`. */
  backgroundError(task: string, dir: string, err: unknown): void
}

const observers = new Map<string, LogObserver>()

/** Registers `observer` for logs under `dir`; returns the function that unregisters it. */
export function observeLogs(dir: string, observer: LogObserver): () => void {
  const abs = resolve(dir)
  const key = abs.endsWith(sep) ? abs : abs + sep
  observers.set(key, observer)
  return () => {
    if (observers.get(key) === observer) observers.delete(key)
  }
}

/** The observer of a log in `dir` (the one registered for a directory above it), if any. */
export function logObserverFor(dir: string): LogObserver | undefined {
  if (observers.size === 0) return undefined
  const abs = resolve(dir)
  for (const [prefix, o] of observers) if (abs.startsWith(prefix)) return o
  return undefined
}
