/**
 * The public face of the commit log: `openLog()` and the `Log` interface. One `Log` owns one
 * directory (one partition replica). It knows nothing of networking or replication.
 */
import { InvalidArgumentError } from '../errors.js'
import { compact } from './compactor.js'
import { LOG_DEFAULTS, MAX_SEGMENT_BYTES, REC } from './constants.js'
import { LogCore, type ResolvedOptions } from './core.js'
import { CorruptLogError, LogClosedError, StaleSegmentError } from './errors.js'
import { logObserverFor } from './observers.js'
import { readRecords } from './reader.js'
import { checkedRecordSize } from './record.js'
import { recover } from './recovery.js'
import { deleteBefore, enforceRetention } from './retention.js'
import type { Segment } from './segment.js'
import { readStartOffset, setStartOffset } from './start-offset.js'
import { offsetForTime } from './time-lookup.js'
import { truncateAfter } from './truncate.js'
import type {
  AppendRecord,
  CompactionResult,
  LogOptions,
  LogRecord,
  LogStats,
  RecoveryReport,
  ReplicaRecord,
  RetentionOptions,
  RetentionResult,
  SegmentInfo,
} from './types.js'
import { type AppendResult, Writer } from './writer.js'

/** Offsets given to one append call (see writer.ts). */
export type { AppendResult }

/** Options of `Log.read`. */
export interface ReadOptions {
  /** Byte budget (encoded record sizes); the first record is returned even when larger. */
  maxBytes?: number
  /** Most records returned. */
  maxRecords?: number
  /** Read records below the start offset still on disk too (the owner's recovery). */
  includePurged?: boolean
}

/**
 * An open commit log. Ordering: appends and `truncateAfter` take effect in call order; the
 * records of one `append` get consecutive offsets. Durability: under `fsync: 'always'` a
 * resolved append is on disk (fdatasync) and survives a crash; under `'interval'`/`'never'`
 * it is in the OS page cache and survives a process crash but maybe not a power loss.
 * Visibility: readers and `waitForNew` see a record once its append is written (under
 * `'always'`: once it is synced, so nothing read can be lost by a crash).
 */
export interface Log {
  /** Directory of the log. */
  readonly dir: string
  /** What `openLog` found and repaired (torn tail, rebuilt indexes, removed leftovers). */
  readonly recovery: RecoveryReport

  /**
   * Appends `records` (non-empty) at the end of the log and resolves with their offsets,
   * consecutive, after they are written (and synced under `'always'`). Concurrent appends
   * share one write and one fdatasync (group commit). Rejects with `InvalidArgumentError` on
   * bad input (nothing written) and with the write error if the disk fails (the log then
   * refuses appends until reopened).
   */
  append(records: readonly AppendRecord[]): Promise<AppendResult>
  /** `append` of one record; resolves with its offset. */
  appendOne(record: AppendRecord): Promise<number>
  /**
   * Appends records whose offset, timestamp and term are fixed by the caller (a replica
   * copying its leader). Offsets must strictly increase and exceed every offset in the log
   * (gaps are allowed: a compacted leader). Same durability as `append`.
   */
  appendAt(records: readonly ReplicaRecord[]): Promise<AppendResult>
  /**
   * Visible records with offset >= `fromOffset`, in offset order, up to the byte budget
   * (default 1 MiB). Below `earliestOffset()` reading starts at the earliest record; at or
   * past the end it returns []. Offsets may have gaps after compaction. Throws
   * `CorruptLogError` (file, position) if it meets bytes that fail their checksum.
   */
  read(fromOffset: number, opts?: ReadOptions): Promise<LogRecord[]>
  /** First visible offset whose record timestamp is >= `timestamp`; undefined if none. */
  offsetForTime(timestamp: number): Promise<number | undefined>
  /** Term of the record at `offset`; undefined when there is no such record. */
  termAt(offset: number): Promise<number | undefined>
  /** Lowest offset that may still be present (retention moves it forward). */
  earliestOffset(): number
  /** Highest visible offset; -1 when nothing was ever appended. */
  latestOffset(): number
  /** Highest offset known to be fdatasync'ed (== latestOffset under `'always'`). */
  durableOffset(): number
  /** Term of the last record; -1 when the log is empty. */
  lastTerm(): number
  /**
   * Drops every record with offset > `offset` (a replica's divergent tail); the next append
   * gets `offset + 1`. Runs after appends queued before it; durable when it resolves.
   */
  truncateAfter(offset: number): Promise<void>
  /**
   * Resolves with the latest offset as soon as it exceeds `afterOffset` (immediately if it
   * already does). No polling. Rejects with `AbortedError` when `signal` aborts and with
   * `LogClosedError` when the log closes.
   */
  waitForNew(afterOffset: number, signal?: AbortSignal): Promise<number>
  /** Seals the active segment and starts a new one (no-op when it is empty). */
  roll(): Promise<void>
  /** Deletes sealed segments beyond the `retention` limits, oldest first. */
  enforceRetention(): Promise<RetentionResult>
  /**
   * Deletes whole sealed segments holding only offsets below `offset` (the active segment is
   * never deleted, so records below `offset` may remain). Crash-safe like retention.
   */
  deleteBefore(offset: number): Promise<RetentionResult>
  /**
   * Purges every offset below `offset` (capped at the next offset; never moves backward):
   * durable before it resolves, kept across restarts; reads below it start at it, and
   * segments holding only offsets below it are deleted (start-offset.ts). Resolves with the
   * start offset.
   */
  setStartOffset(offset: number): Promise<number>
  /**
   * Replaces the retention limits (each a positive integer; `{}` removes them), enforced from
   * the next `maintain()`; starts maintenance every `maintenanceIntervalMs` when the log had
   * none and limits are set.
   */
  setRetention(retention: RetentionOptions, maintenanceIntervalMs: number): void
  /** One compaction pass over sealed segments (see compactor.ts); crash-safe. */
  compact(): Promise<CompactionResult>
  /** Age-based roll, retention, and compaction when `compact: true`. */
  maintain(): Promise<void>
  /** fdatasyncs everything written so far (useful under `'never'`/`'interval'`). */
  flush(): Promise<void>
  /** The segments, oldest first. */
  segments(): SegmentInfo[]
  /** Counters since open. */
  stats(): LogStats
  /** Finishes queued appends, syncs, and closes files. Later calls reject with `LogClosedError`. */
  close(): Promise<void>
}

/**
 * Opens (creating if needed) the log in `options.dir`, recovering from any crash: a torn or
 * corrupt tail is truncated to its last valid record, missing or corrupt indexes are rebuilt,
 * leftovers of interrupted rewrites removed, all listed in `log.recovery`. Throws
 * `CorruptLogError` when a sealed segment that had to be rescanned holds bad records (nothing
 * is dropped silently), `InvalidArgumentError` on bad options. One process per directory.
 */
export async function openLog(options: LogOptions): Promise<Log> {
  const core = new LogCore(resolveOptions(options))
  const report = await recover(core)
  core.startOffset = await readStartOffset(core.opts.dir)
  const log = new LogImpl(core, report)
  if (core.lastTerm < 0) core.lastTerm = await core.lastTermBefore(core.segments.length)
  return log
}

function resolveOptions(o: LogOptions): ResolvedOptions {
  if (!o || typeof o.dir !== 'string' || o.dir === '')
    throw new InvalidArgumentError('dir must be a non-empty path')
  const int = (
    name: keyof LogOptions,
    v: unknown,
    def: number,
    min: number,
    max = Number.MAX_SAFE_INTEGER,
  ) => {
    if (v === undefined) return def
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${String(v)}`)
    }
    return v
  }
  const f = o.fsync ?? 'always'
  if (f !== 'always' && f !== 'never' && !(typeof f === 'object' && f !== null && 'intervalMs' in f)) {
    throw new InvalidArgumentError(`fsync must be 'always', 'never' or { intervalMs }, got ${String(f)}`)
  }
  if (typeof f === 'object') int('fsync', f.intervalMs, 0, 1)
  const r = o.retention ?? {}
  for (const k of ['maxAge', 'maxBytes', 'maxMessages'] as const) {
    if (r[k] !== undefined) int('retention', r[k], 0, 0)
  }
  if (o.now !== undefined && typeof o.now !== 'function')
    throw new InvalidArgumentError('now must be a function')
  return {
    dir: o.dir,
    fsync: f,
    segmentBytes: int(
      'segmentBytes',
      o.segmentBytes,
      LOG_DEFAULTS.segmentBytes,
      REC.HEADER_SIZE,
      MAX_SEGMENT_BYTES,
    ),
    segmentMs: int('segmentMs', o.segmentMs, LOG_DEFAULTS.segmentMs, 0),
    indexIntervalBytes: int('indexIntervalBytes', o.indexIntervalBytes, LOG_DEFAULTS.indexIntervalBytes, 1),
    maxRecordBytes: int('maxRecordBytes', o.maxRecordBytes, LOG_DEFAULTS.maxRecordBytes, REC.HEADER_SIZE),
    retention: r,
    compact: o.compact ?? false,
    deleteRetentionMs: int('deleteRetentionMs', o.deleteRetentionMs, LOG_DEFAULTS.deleteRetentionMs, 0),
    compactionMaxKeys: int('compactionMaxKeys', o.compactionMaxKeys, LOG_DEFAULTS.compactionMaxKeys, 1),
    maintenanceIntervalMs: int('maintenanceIntervalMs', o.maintenanceIntervalMs, 0, 0),
    maxWriteBytes: int('maxWriteBytes', o.maxWriteBytes, LOG_DEFAULTS.maxWriteBytes, 1),
    eagerWrites: o.eagerWrites === true,
    now: o.now ?? Date.now,
  }
}

function checkOffset(v: unknown, name: string, min = 0): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got ${String(v)}`)
  }
  return v
}

class LogImpl implements Log {
  private readonly writer: Writer
  private closing = false
  private readonly timers: NodeJS.Timeout[] = []
  /** A maintenance timer runs. */
  private maintaining = false

  constructor(
    private readonly core: LogCore,
    readonly recovery: RecoveryReport,
  ) {
    this.writer = new Writer(core)
    const { fsync, maintenanceIntervalMs } = core.opts
    if (typeof fsync === 'object') {
      this.timers.push(
        setInterval(
          () => this.writer.dirty && void this.flush().catch((err) => this.backgroundError('flush', err)),
          fsync.intervalMs,
        ),
      )
    }
    if (maintenanceIntervalMs > 0) {
      this.maintaining = true
      this.timers.push(
        setInterval(
          () => void this.maintain().catch((err) => this.backgroundError('maintenance', err)),
          maintenanceIntervalMs,
        ),
      )
    }
    for (const t of this.timers) t.unref()
  }

  /** Tells the node's observer (observers.ts) that a background task failed; none: dropped. */
  private backgroundError(task: string, err: unknown): void {
    if (err instanceof LogClosedError) return
    logObserverFor(this.core.opts.dir)?.backgroundError(task, this.core.opts.dir, err)
  }

  get dir(): string {
    return this.core.opts.dir
  }

  private check(): void {
    if (this.closing) throw new LogClosedError('the log is closed')
    this.core.check()
  }

  async append(records: readonly AppendRecord[]): Promise<AppendResult> {
    return this.enqueue(records, false)
  }

  async appendOne(record: AppendRecord): Promise<number> {
    return (await this.enqueue([record], false)).firstOffset
  }

  async appendAt(records: readonly ReplicaRecord[]): Promise<AppendResult> {
    if (!Array.isArray(records)) throw new InvalidArgumentError('records must be a non-empty array')
    records.forEach((r, i) => {
      checkOffset(r?.offset, `records[${i}].offset`)
      checkOffset(r.timestamp, `records[${i}].timestamp`)
      checkOffset(r.term, `records[${i}].term`)
    })
    return this.enqueue(records, true)
  }

  private enqueue(records: readonly AppendRecord[], explicit: boolean): Promise<AppendResult> {
    this.check()
    if (!Array.isArray(records) || records.length === 0) {
      throw new InvalidArgumentError('records must be a non-empty array')
    }
    const sizes = new Array<number>(records.length)
    let bytes = 0
    for (let i = 0; i < records.length; i++)
      bytes += sizes[i] = checkedRecordSize(records[i]!, i, this.core.opts.maxRecordBytes)
    return this.writer.append(records, sizes, bytes, explicit)
  }

  async read(fromOffset: number, opts: ReadOptions = {}): Promise<LogRecord[]> {
    this.check()
    checkOffset(fromOffset, 'fromOffset')
    const maxBytes = checkOffset(opts.maxBytes ?? LOG_DEFAULTS.readMaxBytes, 'maxBytes', 1)
    const maxRecords = checkOffset(opts.maxRecords ?? Number.MAX_SAFE_INTEGER, 'maxRecords', 1)
    const from = opts.includePurged ? fromOffset : Math.max(fromOffset, this.core.startOffset)
    return this.core.stable(() => this.readOnce(from, maxBytes, maxRecords))
  }

  private async readOnce(from: number, maxBytes: number, maxRecords: number): Promise<LogRecord[]> {
    const core = this.core
    const out: LogRecord[] = []
    if (from > core.visibleOffset) return out
    let bytes = 0
    const segs = core.segments
    for (let i = core.segmentIndexFor(from); i < segs.length; i++) {
      const seg = segs[i]!
      const limit = segs[i + 1]?.baseOffset ?? Number.MAX_SAFE_INTEGER
      if (!seg.acquire()) throw new StaleSegmentError(seg.logPath)
      try {
        let start = 0
        let startOffset = -1
        if (from > seg.baseOffset) {
          const idx = await seg.offsetIndex(limit, LOG_DEFAULTS.scanChunkBytes, core.opts.indexIntervalBytes)
          const entry = idx.lookupEntry(from - seg.baseOffset)
          start = entry.position
          if (entry.relOffset >= 0) startOffset = seg.baseOffset + entry.relOffset
        }
        core.touchIndex(seg)
        const end = seg.visibleSize
        if (start >= end) continue
        const fh = await seg.handle()
        const slack = core.opts.indexIntervalBytes + REC.HEADER_SIZE
        let res = await readRecords(
          fh,
          start,
          end,
          from,
          limit,
          maxBytes - bytes,
          maxRecords,
          slack,
          out,
          startOffset,
        )
        if (res.bad && res.badAtStart && start > 0) {
          // The index pointed at the wrong place (damaged index file): scan from the start.
          res = await readRecords(fh, 0, end, from, limit, maxBytes - bytes, maxRecords, slack, out)
        }
        if (res.bad) throw new CorruptLogError(seg.logPath, res.bad.position, res.bad.reason)
        bytes += res.bytes
        if (res.full || out.length >= maxRecords) break
      } finally {
        seg.release()
      }
    }
    return out
  }

  async offsetForTime(timestamp: number): Promise<number | undefined> {
    this.check()
    checkOffset(timestamp, 'timestamp')
    const found = await this.core.stable(() => offsetForTime(this.core, timestamp))
    const start = this.core.startOffset
    if (found === undefined || found >= start) return found
    return start <= this.core.visibleOffset ? start : undefined
  }

  async termAt(offset: number): Promise<number | undefined> {
    checkOffset(offset, 'offset')
    const [r] = await this.read(offset, { maxRecords: 1, maxBytes: 1 })
    return r && r.offset === offset ? r.term : undefined
  }

  earliestOffset(): number {
    return this.core.earliestOffset
  }

  latestOffset(): number {
    return this.core.visibleOffset
  }

  durableOffset(): number {
    return this.core.durableOffset
  }

  lastTerm(): number {
    return this.core.lastTerm
  }

  async truncateAfter(offset: number): Promise<void> {
    this.check()
    checkOffset(offset, 'offset', -1)
    // Queued on the writer now (call order with appends), then waits for any running
    // retention/compaction pass: appends queued behind it wait too.
    await this.writer.task(() => this.core.exclusive(() => truncateAfter(this.core, offset)))
  }

  waitForNew(afterOffset: number, signal?: AbortSignal): Promise<number> {
    checkOffset(afterOffset, 'afterOffset', -1)
    return this.core.waitFor(afterOffset, signal)
  }

  async roll(): Promise<void> {
    this.check()
    await this.writer.task(() => this.core.roll())
  }

  async enforceRetention(): Promise<RetentionResult> {
    this.check()
    return this.core.exclusive(() => enforceRetention(this.core))
  }

  async deleteBefore(offset: number): Promise<RetentionResult> {
    this.check()
    checkOffset(offset, 'offset')
    return this.core.exclusive(() => deleteBefore(this.core, offset))
  }

  setRetention(retention: RetentionOptions, maintenanceIntervalMs: number): void {
    this.check()
    const r: RetentionOptions = {}
    for (const k of ['maxAge', 'maxBytes', 'maxMessages'] as const) {
      if (retention[k] !== undefined) r[k] = checkOffset(retention[k], `retention.${k}`, 1)
    }
    this.core.opts.retention = r
    if (this.maintaining || Object.keys(r).length === 0) return
    this.maintaining = true
    const t = setInterval(
      () => void this.maintain().catch((err) => this.backgroundError('maintenance', err)),
      checkOffset(maintenanceIntervalMs, 'maintenanceIntervalMs', 1),
    )
    t.unref()
    this.timers.push(t)
  }

  async setStartOffset(offset: number): Promise<number> {
    this.check()
    checkOffset(offset, 'offset')
    return this.core.exclusive(() => setStartOffset(this.core, offset))
  }

  async compact(): Promise<CompactionResult> {
    this.check()
    return this.core.exclusive(() => compact(this.core))
  }

  async maintain(): Promise<void> {
    this.check()
    const { segmentMs, now, retention } = this.core.opts
    const active = this.core.active
    if (
      segmentMs > 0 &&
      active.size > 0 &&
      active.firstAppendAt >= 0 &&
      now() - active.firstAppendAt >= segmentMs
    ) {
      await this.roll()
    }
    if (
      retention.maxAge !== undefined ||
      retention.maxBytes !== undefined ||
      retention.maxMessages !== undefined
    ) {
      await this.enforceRetention()
    }
    if (this.core.opts.compact) await this.compact()
  }

  async flush(): Promise<void> {
    this.check()
    await this.writer.task(() => this.writer.sync())
  }

  segments(): SegmentInfo[] {
    return this.core.segments.map((s: Segment) => ({
      baseOffset: s.baseOffset,
      bytes: s.size,
      sealed: s.sealed,
      maxTimestamp: s.indexer ? s.indexer.maxTimestamp : s.maxTimestamp,
      file: s.logPath,
    }))
  }

  stats(): LogStats {
    const s = this.core.stats
    return {
      ...s,
      appendsPerFsync: s.fsyncs === 0 ? 0 : s.appends / s.fsyncs,
      segments: this.core.segments.length,
    }
  }

  async close(): Promise<void> {
    if (this.closing) return
    this.closing = true
    for (const t of this.timers) clearInterval(t)
    const core = this.core
    try {
      if (!core.failure) await this.writer.task(() => this.writer.sync())
      await core.exclusive(async () => {})
    } finally {
      core.closed = true
      core.rejectWaiters(new LogClosedError('the log is closed'))
      for (const seg of core.segments) await seg.closeHandles()
    }
  }
}
