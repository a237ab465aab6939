/**
 * Shared state of one open log and the primitives every concern builds on: the segment list,
 * offsets, segment creation and roll, an exclusive lock for maintenance, visibility updates
 * and waiters. Only the writer (writer.ts) appends; everything that rewrites or deletes
 * segments runs under `exclusive`.
 */
import { open } from 'node:fs/promises'
import { AbortedError } from '../errors.js'
import { LOG_DEFAULTS } from './constants.js'
import { CorruptLogError, LogClosedError } from './errors.js'
import { fsyncDir } from './fsutil.js'
import { scanRecords } from './reader.js'
import { recordTerm } from './record.js'
import { Segment, SegmentIndexer } from './segment.js'
import type { FsyncPolicy, LogStats, RetentionOptions } from './types.js'

/** Resolved options (defaults applied). */
export interface ResolvedOptions {
  dir: string
  fsync: FsyncPolicy
  segmentBytes: number
  segmentMs: number
  indexIntervalBytes: number
  maxRecordBytes: number
  retention: RetentionOptions
  compact: boolean
  deleteRetentionMs: number
  compactionMaxKeys: number
  maintenanceIntervalMs: number
  maxWriteBytes: number
  now: () => number
}

interface Waiter {
  after: number
  resolve: (latest: number) => void
  reject: (err: Error) => void
}

/** Mutable state of an open log. */
export class LogCore {
  /** Segments by increasing base offset; the last one is active. Never empty while open. */
  segments: Segment[] = []
  /** Offset the next appended record gets. */
  nextOffset = 0
  /** Last offset readers may see (-1: none); under fsync 'always' it is also durable. */
  visibleOffset = -1
  /** Last offset known to be on disk (fdatasync). */
  durableOffset = -1
  /** Term of the last record (-1 when the log is empty). */
  lastTerm = -1
  /** Bumped when bytes readers may be looking at change in place (truncation, swap). */
  generation = 0
  closed = false
  /** Set when a write or fsync failed: the log refuses appends until reopened. */
  failure: Error | undefined
  readonly stats: Omit<LogStats, 'appendsPerFsync' | 'segments'> = {
    appends: 0,
    records: 0,
    bytes: 0,
    writes: 0,
    fsyncs: 0,
    rolls: 0,
    deletedSegments: 0,
    compactions: 0,
  }
  private waiters: Waiter[] = []
  private lock: Promise<void> = Promise.resolve()
  /** Sealed segments whose indexes are cached, least recently used first. */
  private indexLru: Segment[] = []

  constructor(readonly opts: ResolvedOptions) {}

  get active(): Segment {
    return this.segments[this.segments.length - 1]!
  }

  /** Earliest offset that may still be read (base of the first segment). */
  get earliestOffset(): number {
    return this.segments[0]!.baseOffset
  }

  /** Index of the segment that holds `offset` (the last with base <= offset; 0 if below). */
  segmentIndexFor(offset: number): number {
    let lo = 0
    let hi = this.segments.length - 1
    let best = 0
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      if (this.segments[mid]!.baseOffset <= offset) {
        best = mid
        lo = mid + 1
      } else hi = mid - 1
    }
    return best
  }

  /** Base offset of the segment after `seg` (or +inf for the active one). */
  nextBaseOf(seg: Segment): number {
    const i = this.segments.indexOf(seg)
    const next = i >= 0 ? this.segments[i + 1] : undefined
    return next ? next.baseOffset : Number.MAX_SAFE_INTEGER
  }

  /** Marks `seg` (sealed) as recently used; evicts the least recently used cached indexes. */
  touchIndex(seg: Segment): void {
    if (seg.indexer) return
    const i = this.indexLru.indexOf(seg)
    if (i >= 0) this.indexLru.splice(i, 1)
    this.indexLru.push(seg)
    while (this.indexLru.length > LOG_DEFAULTS.indexCacheSegments) this.indexLru.shift()!.cached = undefined
  }

  /** Runs `fn` alone among exclusive operations (retention, compaction, truncation). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn)
    this.lock = run.then(
      () => {},
      () => {},
    )
    return run
  }

  /** Throws when the log is closed or failed. */
  check(): void {
    if (this.closed) throw new LogClosedError('the log is closed')
    if (this.failure) throw this.failure
  }

  /** Creates an empty active segment at `baseOffset` (files created, directory synced). */
  async createSegment(baseOffset: number): Promise<Segment> {
    const seg = new Segment(this.opts.dir, baseOffset)
    const fh = await open(seg.logPath, 'w+')
    seg.adopt(fh)
    seg.indexFh = await open(seg.indexPath, 'w')
    seg.timeIndexFh = await open(seg.timeIndexPath, 'w')
    seg.indexer = new SegmentIndexer(baseOffset, this.opts.indexIntervalBytes)
    await fsyncDir(this.opts.dir)
    return seg
  }

  /**
   * Seals the active segment (fsync) and starts a new one at `nextOffset`. Only the writer
   * calls it (between writes). A no-op when the active segment is empty.
   */
  async roll(): Promise<void> {
    const old = this.active
    if (old.size === 0) return
    const last = old.indexer!.lastOffset
    await old.seal()
    this.stats.fsyncs++
    this.touchIndex(old)
    this.segments.push(await this.createSegment(this.nextOffset))
    this.stats.rolls++
    this.publish(last, true)
  }

  /** Makes records up to `offset` visible (and durable when `durable`); wakes waiters. */
  publish(offset: number, durable: boolean): void {
    if (durable && offset > this.durableOffset) this.durableOffset = offset
    if (offset <= this.visibleOffset) return
    this.visibleOffset = offset
    if (this.waiters.length === 0) return
    const still: Waiter[] = []
    for (const w of this.waiters) {
      if (offset > w.after) w.resolve(offset)
      else still.push(w)
    }
    this.waiters = still
  }

  /** Promise of the latest visible offset once it exceeds `after`. */
  waitFor(after: number, signal?: AbortSignal): Promise<number> {
    if (this.closed) return Promise.reject(new LogClosedError('the log is closed'))
    if (this.visibleOffset > after) return Promise.resolve(this.visibleOffset)
    if (signal?.aborted)
      return Promise.reject(new AbortedError('waitForNew aborted', { cause: signal.reason }))
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        after,
        resolve: (v) => {
          signal?.removeEventListener('abort', onAbort)
          resolve(v)
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort)
          reject(e)
        },
      }
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((x) => x !== w)
        w.reject(new AbortedError('waitForNew aborted', { cause: signal?.reason }))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiters.push(w)
    })
  }

  /**
   * Term of the last record in the segments before index `end` (-1 when they are empty):
   * scans from the last index entry of the last non-empty one. Sets `lastTerm` when asked.
   */
  async lastTermBefore(end: number): Promise<number> {
    for (let i = end - 1; i >= 0; i--) {
      const seg = this.segments[i]!
      if (seg.visibleSize === 0) continue
      const limit = this.segments[i + 1]?.baseOffset ?? Number.MAX_SAFE_INTEGER
      seg.acquire()
      try {
        const idx = await seg.offsetIndex(limit, LOG_DEFAULTS.scanChunkBytes, this.opts.indexIntervalBytes)
        const start = idx.count > 0 ? idx.entryAt(idx.count - 1).position : 0
        let term = -1
        const { bad } = await scanRecords(
          await seg.handle(),
          start,
          seg.visibleSize,
          LOG_DEFAULTS.scanChunkBytes,
          (buf, pos) => {
            term = recordTerm(buf, pos)
            return undefined
          },
        )
        if (bad) throw new CorruptLogError(seg.logPath, bad.position, bad.reason)
        if (term >= 0) return term
      } finally {
        seg.release()
      }
    }
    return -1
  }

  /** Rejects every waiter (on close). */
  rejectWaiters(err: Error): void {
    const ws = this.waiters
    this.waiters = []
    for (const w of ws) w.reject(err)
  }
}
