/**
 * The commit log storage engine for durable streams: segmented, checksummed, crash-safe,
 * with group commit, retention and key compaction. See docs/commitlog.md.
 */
export { LOG_DEFAULTS } from './constants.js'
export { CorruptLogError, LogClosedError } from './errors.js'
export { type AppendResult, type Log, openLog, type ReadOptions } from './log.js'
/** Records, options and reports (types.ts). */
export type * from './types.js'
