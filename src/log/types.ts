/**
 * Public types of the commit log: records, options, and reports.
 */

/** Record headers: name to bytes. */
export type RecordHeaders = Record<string, Uint8Array>

/** A record as given to `append`. The log assigns the offset (and the timestamp if absent). */
export interface AppendRecord {
  /** Partitioning/compaction key; absent means "no key" (kept by compaction). */
  key?: Uint8Array
  /** Payload; an empty value with a key is a tombstone for compaction. */
  value: Uint8Array
  headers?: RecordHeaders
  /** Milliseconds since the epoch; defaults to the log's clock at append time. */
  timestamp?: number
  /** Replication term/epoch; defaults to 0. */
  term?: number
}

/** A record with its position in the log fixed by the caller (replicas copying a leader). */
export interface ReplicaRecord extends AppendRecord {
  offset: number
  timestamp: number
  term: number
}

/**
 * A record read back. `key`, `value` and header values are views into a buffer owned by the
 * caller (one buffer per `read` call); copy them to keep them beyond the records' lifetime.
 */
export interface LogRecord {
  offset: number
  timestamp: number
  term: number
  key: Uint8Array | undefined
  value: Uint8Array
  headers: RecordHeaders | undefined
}

/** Durability policy. */
export type FsyncPolicy = 'always' | 'never' | { intervalMs: number }

/** Retention limits; each deletes whole sealed segments, oldest first. */
export interface RetentionOptions {
  /** Delete a sealed segment once its newest record is older than this (ms). */
  maxAge?: number
  /** Delete oldest sealed segments while the rest still hold at least this many bytes. */
  maxBytes?: number
  /** Delete oldest sealed segments while the rest still span at least this many offsets. */
  maxMessages?: number
}

/** Options of `openLog`. Defaults are in `LOG_DEFAULTS` (constants.ts). */
export interface LogOptions {
  /** Directory of this log (one per partition replica); created if missing. */
  dir: string
  /** `'always'` (default): an append resolves after fdatasync, with group commit. */
  fsync?: FsyncPolicy
  segmentBytes?: number
  /** Roll the active segment once its first append in this process is this old (ms). */
  segmentMs?: number
  indexIntervalBytes?: number
  maxRecordBytes?: number
  retention?: RetentionOptions
  /** Enable key compaction in `maintain()`. `compact()` works regardless. */
  compact?: boolean
  deleteRetentionMs?: number
  compactionMaxKeys?: number
  /** Run `maintain()` this often (ms); 0 (default) = only when called. */
  maintenanceIntervalMs?: number
  maxWriteBytes?: number
  /**
   * Start a write round as soon as the appending code's turn ends (a microtask) instead of on
   * the next event-loop turn (default false). For a log with one appender that awaits each
   * append (the raft storage): waiting a turn for appends to join a round only delays its
   * write. With many independent appenders the default gathers more of them per fsync.
   */
  eagerWrites?: boolean
  /** Clock in ms (default `Date.now`); inject it to test age-based roll and retention. */
  now?: () => number
}

/** One damaged tail (or file) found and repaired on open. */
export interface RecoveryTruncation {
  file: string
  /** Byte position of the first dropped byte. */
  position: number
  droppedBytes: number
  /** Why the bytes at `position` were rejected. */
  reason: string
  /** Last offset kept in the log after the repair (-1 when the log is empty). */
  lastValidOffset: number
}

/** What `openLog` found and repaired. Empty arrays mean a clean open. */
export interface RecoveryReport {
  truncated: RecoveryTruncation[]
  /** Index files rebuilt from their segment (missing, implausible or for the tail). */
  rebuiltIndexes: string[]
  /** Leftovers of interrupted rewrites and orphan files deleted. */
  removedFiles: string[]
  /** Records scanned and verified in the tail segment. */
  scannedRecords: number
}

/** Counters since open. */
export interface LogStats {
  /** `append`/`appendAt` calls resolved. */
  appends: number
  records: number
  bytes: number
  /** Write syscalls to segment files. */
  writes: number
  /** fdatasync calls on segment files (rolls included). */
  fsyncs: number
  /** appends / fsyncs: how well group commit works under `fsync: 'always'`. */
  appendsPerFsync: number
  segments: number
  rolls: number
  deletedSegments: number
  compactions: number
}

/** Outcome of `enforceRetention`. */
export interface RetentionResult {
  deletedSegments: number
  deletedBytes: number
  earliestOffset: number
}

/** Outcome of `compact`. */
export interface CompactionResult {
  segmentsRewritten: number
  segmentsDeleted: number
  recordsRemoved: number
  bytesBefore: number
  bytesAfter: number
}

/** Read-only view of one segment (introspection, tests, `plexus status`). */
export interface SegmentInfo {
  baseOffset: number
  bytes: number
  sealed: boolean
  /** Largest record timestamp, -1 when empty. */
  maxTimestamp: number
  file: string
}
