/**
 * Observers of synced writes, by directory: a node's metrics (observe/metrics.ts) register
 * its `dataDir` here, and every commit log opened below it reports the duration of each
 * synced write (fsync 'always': one O_DSYNC write, or a write then fdatasync; group commit
 * batches appends, so this is per batch, never per message). Logs look their observer up
 * once when opened; a log opened before the registration reports nothing.
 */
import { resolve, sep } from 'node:path'

/** Called with the duration of one synced write (seconds). */
export type SyncObserver = (seconds: number) => void

const observers = new Map<string, SyncObserver>()

/** Registers `fn` for logs under `dir`; returns the function that unregisters it. */
export function observeSyncs(dir: string, fn: SyncObserver): () => void {
  const abs = resolve(dir)
  const key = abs.endsWith(sep) ? abs : abs + sep
  observers.set(key, fn)
  return () => {
    if (observers.get(key) === fn) observers.delete(key)
  }
}

/** The observer of a log in `dir` (the one registered for a directory above it), if any. */
export function syncObserverFor(dir: string): SyncObserver | undefined {
  if (observers.size === 0) return undefined
  const abs = resolve(dir)
  for (const [prefix, fn] of observers) if (abs.startsWith(prefix)) return fn
  return undefined
}
