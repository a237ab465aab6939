/**
 * Shared state of one open log and the primitives every concern builds on: the segment list,
 * offsets, segment creation and roll, an exclusive lock for maintenance, visibility updates
 * and waiters. Only the writer (writer.ts) appends; everything that rewrites or deletes
 * segments runs under `exclusive`.
 */
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { AbortedError } from '../errors.js'
import { LOG_DEFAULTS, SEALING_SUFFIX } from './constants.js'
import { CorruptLogError, LogClosedError, StaleSegmentError } from './errors.js'
import { fsyncDir, segmentStem, unlinkIfExists } from './fsutil.js'
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
  eagerWrites: boolean
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
  /** Offsets below are purged (start-offset.ts); 0 when never set. */
  startOffset = 0
  /** Last offset readers may see (-1: none); under fsync 'always' it is also durable. */
  visibleOffset = -1
  /** Last offset known to be on disk (fdatasync). */
  durableOffset = -1
  /** Term of the last record (-1 when the log is empty). */
  lastTerm = -1
  /** Bumped when bytes readers may be looking at change in place (truncation, swap). */
  generation = 0
  /** Background fsyncs of sealed segments (fsync 'never'/'interval'), the last of a chain. */
  pendingSeal: Promise<void> | undefined
  /** Set while such a change is in progress; resolves when it ends. */
  mutation: Promise<void> | undefined
  private endMutationFn: (() => void) | undefined
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

  /** Earliest offset that may still be read (base of the first segment, or the start offset). */
  get earliestOffset(): number {
    return Math.max(this.segments[0]!.baseOffset, this.startOffset)
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

  /**
   * Marks sealed `seg` as recently used. The least recently used beyond
   * `LOG_DEFAULTS.indexCacheSegments` lose their cached indexes and, when no read pins
   * them, their file handle (bounded memory and file descriptors).
   */
  touchIndex(seg: Segment): void {
    if (seg.indexer) return
    const i = this.indexLru.indexOf(seg)
    if (i >= 0) this.indexLru.splice(i, 1)
    this.indexLru.push(seg)
    seg.unevict()
    while (this.indexLru.length > LOG_DEFAULTS.indexCacheSegments) this.indexLru.shift()!.evict()
  }

  /** Marks the start of an in-place change readers may trip over (they retry after it). */
  beginMutation(): void {
    this.generation++
    this.mutation = new Promise((resolve) => (this.endMutationFn = resolve))
  }

  endMutation(): void {
    this.generation++
    this.mutation = undefined
    this.endMutationFn?.()
    this.endMutationFn = undefined
  }

  /**
   * Runs a read-only `fn`; if it throws `CorruptLogError` while (or because) the log was
   * changed in place under it, or met a segment retired under it, waits for the change to
   * end and runs it again with the current segment list.
   */
  async stable<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const gen = this.generation
      try {
        return await fn()
      } catch (err) {
        if (err instanceof StaleSegmentError && attempt < 10) {
          await this.mutation
          continue
        }
        if (!(err instanceof CorruptLogError) || attempt >= 3) throw err
        if (!this.mutation && gen === this.generation) throw err
        await this.mutation
      }
    }
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
   * Seals the active segment and starts a new one at `nextOffset`. Only the writer calls it
   * (between writes). A no-op when the active segment is empty. Under fsync 'always' the old
   * segment is fsynced before the writer moves on (the appends it holds are acknowledged
   * as durable). Otherwise its fsync runs in the background (chained, in segment order),
   * marked by a `<base>.sealing` file (made durable first) that tells recovery to verify
   * that segment too.
   */
  async roll(): Promise<void> {
    const old = this.active
    if (old.size === 0) return
    const last = old.indexer!.lastOffset
    if (this.opts.fsync === 'always') {
      await old.seal()
      this.stats.fsyncs++
      this.publish(last, true)
    } else {
      const marker = join(this.opts.dir, segmentStem(old.baseOffset) + SEALING_SUFFIX)
      await (await open(marker, 'w')).close()
      await fsyncDir(this.opts.dir)
      const sync = await old.freeze()
      old.acquire()
      // Background seals run one after another, in segment order, beside the writer.
      const previous = this.pendingSeal
      const seal = this.sealInBackground(old, previous, sync, marker, last)
      this.pendingSeal = seal
      void seal.then(() => {
        if (this.pendingSeal === seal) this.pendingSeal = undefined
      })
      this.publish(last, false)
    }
    this.touchIndex(old)
    const next = await this.createSegment(this.nextOffset)
    this.segments = [...this.segments, next] // read the list after the await: compaction may have swapped it
    this.stats.rolls++
  }

  /** fsyncs a frozen segment after the previous background seal; never rejects. */
  private async sealInBackground(
    seg: Segment,
    previous: Promise<void> | undefined,
    sync: () => Promise<void>,
    marker: string,
    last: number,
  ): Promise<void> {
    try {
      await previous
      await sync()
      this.stats.fsyncs++
      await unlinkIfExists(marker)
      this.publish(last, true)
    } catch (err) {
      this.failure ??= new Error(`commit log fsync failed: ${(err as Error).message}`, { cause: err })
    } finally {
      seg.release()
    }
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
      if (!seg.acquire()) throw new StaleSegmentError(seg.logPath)
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
