/**
 * One segment: a `.log` file of records whose offsets are >= its base offset, plus its sparse
 * offset and time indexes. The active (last) segment is appended to by the writer only;
 * sealed segments are immutable except for being replaced whole by compaction or deleted by
 * retention/truncation. File handles are reference counted so a segment deleted or replaced
 * while a read is in flight stays readable until that read ends.
 */

import { constants } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { open, readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { IDX, INDEX_SUFFIX, LOG_SUFFIX, TIDX, TIME_INDEX_SUFFIX } from './constants.js'
import { CorruptLogError } from './errors.js'
import { atomicWriteFile, segmentStem, unlinkIfExists, writeFully } from './fsutil.js'
import { OffsetIndex } from './index-file.js'
import { type BadRecord, scanRecords } from './reader.js'
import { recordOffset, recordTerm, recordTimestamp } from './record.js'
import { TimeIndex } from './time-index.js'

/**
 * True where files can be opened with O_DSYNC (not on Windows): the fsync 'always' writer then
 * makes each write durable in the same system call instead of writing and then fdatasyncing.
 */
export const SYNC_WRITES = typeof constants.O_DSYNC === 'number' && constants.O_DSYNC !== 0

/** Builds both sparse indexes as records go by (writer and scans share the rules). */
export class SegmentIndexer {
  index = new OffsetIndex()
  timeIndex = new TimeIndex()
  private sinceIndex = Number.POSITIVE_INFINITY
  private sinceTimeIndex = Number.POSITIVE_INFINITY
  maxTimestamp = -1
  offsetOfMaxTimestamp = -1
  lastOffset = -1
  lastTerm = -1
  records = 0

  constructor(
    readonly baseOffset: number,
    private readonly interval: number,
  ) {}

  /** Accounts for one record at `position` of `size` bytes. */
  track(offset: number, timestamp: number, term: number, position: number, size: number): void {
    const rel = offset - this.baseOffset
    if (this.sinceIndex >= this.interval) {
      this.index.append(rel, position)
      this.sinceIndex = 0
    }
    this.sinceIndex += size
    if (timestamp > this.maxTimestamp) {
      this.maxTimestamp = timestamp
      this.offsetOfMaxTimestamp = offset
      if (this.sinceTimeIndex >= this.interval) {
        this.timeIndex.append(timestamp, rel)
        this.sinceTimeIndex = 0
      }
    }
    this.sinceTimeIndex += size
    this.lastOffset = offset
    this.lastTerm = term
    this.records++
  }

  /**
   * Adds the final time index entry of a sealed segment: (max timestamp, last offset), so the
   * last entry carries the segment's largest timestamp and names its last record (which lets
   * `loadIndexes` notice a time index that lost its tail).
   */
  finish(): void {
    const rel = this.lastOffset - this.baseOffset
    if (this.lastOffset >= 0 && this.timeIndex.lastRelOffset !== rel)
      this.timeIndex.append(this.maxTimestamp, rel)
  }
}

/** A sealed segment's two sparse indexes. */
interface SegmentIndexes {
  index: OffsetIndex
  timeIndex: TimeIndex
}

/** A segment of the log. Fields are maintained by the log; treat them as read-only elsewhere. */
export class Segment {
  readonly logPath: string
  readonly indexPath: string
  readonly timeIndexPath: string
  /** Bytes of records in the file (written; the tail may not be visible or synced yet). */
  size = 0
  /** Bytes readers may see (== size for sealed segments). */
  visibleSize = 0
  sealed = false
  /** Largest timestamp, -1 when empty or unknown. */
  maxTimestamp = -1
  /** Clock value when the first record was appended in this process (age-based roll). */
  firstAppendAt = -1
  /** Indexer of the active segment; undefined for sealed ones. */
  indexer: SegmentIndexer | undefined
  /** Cached indexes of a sealed segment (loaded on demand, dropped by the LRU). */
  cached: SegmentIndexes | undefined
  /** Index file handles of the active segment. */
  indexFh: FileHandle | undefined
  timeIndexFh: FileHandle | undefined
  private fh: FileHandle | undefined
  private opening: Promise<FileHandle> | undefined
  /** Write-only handle opened with O_DSYNC (fsync 'always' writers): a write returns once durable. */
  private syncFh: FileHandle | undefined
  private syncOpening: Promise<FileHandle> | undefined
  private refs = 0
  private doomed: 'close' | 'delete' | undefined
  private doomDone: (() => void) | undefined

  constructor(
    readonly dir: string,
    readonly baseOffset: number,
  ) {
    const stem = segmentStem(baseOffset)
    this.logPath = join(dir, stem + LOG_SUFFIX)
    this.indexPath = join(dir, stem + INDEX_SUFFIX)
    this.timeIndexPath = join(dir, stem + TIME_INDEX_SUFFIX)
  }

  /**
   * Opens (once) the log file, read-write: a sealed segment can become active again by
   * `truncateAfter` while reads hold this handle.
   */
  async handle(): Promise<FileHandle> {
    if (this.fh) return this.fh
    if (!this.opening) {
      const opening: Promise<FileHandle> = open(this.logPath, 'r+').then((fh) => {
        if (this.opening === opening) this.fh = fh
        return fh
      })
      this.opening = opening
    }
    return this.opening
  }

  /**
   * Opens (once) a write-only handle with O_DSYNC: every write through it returns only once
   * its data (and the metadata needed to read it back, such as the file size) is on stable
   * storage, exactly what a write followed by fdatasync guarantees, in one system call (one
   * thread-pool round trip instead of two). Closed with the other handles. Only where
   * `SYNC_WRITES` is true.
   */
  async syncHandle(): Promise<FileHandle> {
    if (this.syncFh) return this.syncFh
    if (!this.syncOpening) {
      const opening: Promise<FileHandle> = open(this.logPath, constants.O_WRONLY | constants.O_DSYNC).then(
        (fh) => {
          if (this.syncOpening === opening) this.syncFh = fh
          return fh
        },
      )
      this.syncOpening = opening
    }
    return this.syncOpening
  }

  /** Adopts an already open handle (a freshly created segment). */
  adopt(fh: FileHandle): void {
    this.fh = fh
  }

  /**
   * Pins the segment's files for a read; pair with `release()`. Returns false (and pins
   * nothing) when the segment was already retired: the caller's segment list is stale.
   */
  acquire(): boolean {
    if (this.doomed) return false
    this.refs++
    return true
  }

  release(): void {
    this.refs--
    if (this.refs !== 0) return
    if (this.doomed) void this.finishDoom()
    else if (this.evicted) this.evict()
  }

  /** Set by the handle LRU: close the handle once no read pins the segment. */
  private evicted = false

  /** Drops the cached indexes and closes the file handle now, or when the last read ends. */
  evict(): void {
    this.cached = undefined
    if (this.indexer) return // active again (truncation): its handles are the writer's
    this.evicted = this.refs > 0
    if (!this.evicted) void this.closeHandles()
  }

  /** The LRU took the segment back: keep its handle. */
  unevict(): void {
    this.evicted = false
  }

  /**
   * Closes the segment's handles once no read holds it, deleting its files first when
   * `deleteFiles`. Resolves when done.
   */
  retire(deleteFiles: boolean): Promise<void> {
    this.doomed = deleteFiles ? 'delete' : 'close'
    return new Promise((resolve) => {
      this.doomDone = resolve
      if (this.refs === 0) void this.finishDoom()
    })
  }

  private async finishDoom(): Promise<void> {
    const done = this.doomDone
    this.doomDone = undefined
    if (!done) return
    try {
      if (this.doomed === 'delete') {
        // The log first: a crash in between leaves orphan indexes, which open() deletes.
        await unlinkIfExists(this.logPath)
        await unlinkIfExists(this.indexPath)
        await unlinkIfExists(this.timeIndexPath)
      }
      await this.closeHandles()
    } finally {
      done()
    }
  }

  /** Closes every open handle of the segment now (a later `handle()` reopens the log file). */
  async closeHandles(): Promise<void> {
    const { fh, opening, indexFh, timeIndexFh, syncFh, syncOpening } = this
    this.fh = undefined
    this.opening = undefined
    this.indexFh = undefined
    this.timeIndexFh = undefined
    this.syncFh = undefined
    this.syncOpening = undefined
    const log = fh ?? (opening ? await opening.catch(() => undefined) : undefined)
    const synced = syncFh ?? (syncOpening ? await syncOpening.catch(() => undefined) : undefined)
    for (const h of new Set([log, synced, indexFh, timeIndexFh])) await h?.close().catch(() => {})
  }

  /**
   * Writes the indexer's new entries to the index files (not synced: they are a cache). The
   * append path never calls it: the active segment's index files are only read by recovery,
   * which rebuilds them from the log, so they are brought up to date when the segment is
   * sealed (`freeze`) or the log closes.
   */
  async flushIndexes(): Promise<void> {
    const ix = this.indexer
    if (!ix) return
    if (!this.indexFh || !this.timeIndexFh) return this.rewriteIndexes()
    const ipos = ix.index.written * IDX.ENTRY_SIZE
    const a = ix.index.flushable()
    if (a) await writeFully(this.indexFh, a, 0, a.length, ipos)
    const tpos = ix.timeIndex.written * TIDX.ENTRY_SIZE
    const b = ix.timeIndex.flushable()
    if (b) await writeFully(this.timeIndexFh, b, 0, b.length, tpos)
  }

  /** Rewrites both index files whole from the indexer (after a scan or truncation). */
  async rewriteIndexes(): Promise<void> {
    const ix = this.indexer!
    for (const h of [this.indexFh, this.timeIndexFh]) await h?.close()
    this.indexFh = await open(this.indexPath, 'w')
    this.timeIndexFh = await open(this.timeIndexPath, 'w')
    const a = ix.index.encode()
    const b = ix.timeIndex.encode()
    await writeFully(this.indexFh, a, 0, a.length, 0)
    await writeFully(this.timeIndexFh, b, 0, b.length, 0)
  }

  /**
   * Seals the segment in memory: final time index entry, index entries written (not synced),
   * readers see it whole, the writer moves on. Returns the step that makes it durable
   * (fdatasync of the log and both indexes); the caller runs it now or in the background
   * while the segment is pinned.
   */
  async freeze(): Promise<() => Promise<void>> {
    const ix = this.indexer!
    ix.finish()
    await this.flushIndexes()
    const handles = [this.indexFh, this.timeIndexFh]
    this.indexFh = undefined
    this.timeIndexFh = undefined
    const synced =
      this.syncFh ?? (this.syncOpening ? await this.syncOpening.catch(() => undefined) : undefined)
    this.syncFh = undefined
    this.syncOpening = undefined
    await synced?.close().catch(() => {})
    this.sealed = true
    this.maxTimestamp = ix.maxTimestamp
    this.visibleSize = this.size
    this.cached = { index: ix.index, timeIndex: ix.timeIndex }
    this.indexer = undefined
    return async () => {
      await (await this.handle()).datasync()
      for (const h of handles) {
        await h?.datasync()
        await h?.close()
      }
    }
  }

  /**
   * Seals the segment and fsyncs it: after this every byte of the segment is durable, so
   * recovery only scans segments after it.
   */
  async seal(): Promise<void> {
    await (await this.freeze())()
  }

  /** The offset index (active: live; sealed: cached or loaded, rebuilt if implausible). */
  async offsetIndex(nextBase: number, chunkBytes: number, interval: number): Promise<OffsetIndex> {
    if (this.indexer) return this.indexer.index
    return (this.cached ?? (await this.sharedLoad(nextBase, chunkBytes, interval)).loaded).index
  }

  async timeIndex(nextBase: number, chunkBytes: number, interval: number): Promise<TimeIndex> {
    if (this.indexer) return this.indexer.timeIndex
    return (this.cached ?? (await this.sharedLoad(nextBase, chunkBytes, interval)).loaded).timeIndex
  }

  /**
   * Loads a sealed segment's index files; rebuilds them from the log when missing or
   * implausible. Returns the reason it rebuilt, if it did. Throws `CorruptLogError` when the
   * log itself is bad. Concurrent callers share one load, so two rebuilds never write the
   * same files at once.
   */
  async loadIndexes(nextBase: number, chunkBytes: number, interval: number): Promise<string | undefined> {
    return (await this.sharedLoad(nextBase, chunkBytes, interval)).reason
  }

  /** The load in progress, shared by every reader of this segment that needs its indexes. */
  private loading: Promise<{ loaded: SegmentIndexes; reason: string | undefined }> | undefined

  private sharedLoad(nextBase: number, chunkBytes: number, interval: number) {
    if (this.loading === undefined) {
      this.loading = this.readIndexes(nextBase, chunkBytes, interval).finally(() => {
        this.loading = undefined
      })
    }
    return this.loading
  }

  private async readIndexes(
    nextBase: number,
    chunkBytes: number,
    interval: number,
  ): Promise<{ loaded: SegmentIndexes; reason: string | undefined }> {
    const relLimit = nextBase - this.baseOffset
    const [ib, tb] = await Promise.all([readOrEmpty(this.indexPath), readOrEmpty(this.timeIndexPath)])
    let reason: string | undefined
    const index = ib ? OffsetIndex.decode(ib, this.size, relLimit) : 'missing'
    const timeIndex = tb ? TimeIndex.decode(tb, this.size, relLimit) : 'missing'
    if (typeof index === 'string') reason = `${this.indexPath}: ${index}`
    else if (typeof timeIndex === 'string') reason = `${this.timeIndexPath}: ${timeIndex}`
    if (!reason && typeof index !== 'string' && typeof timeIndex !== 'string') {
      reason = await this.checkTail(index, timeIndex, chunkBytes)
      if (!reason) {
        this.cached = { index, timeIndex }
        this.maxTimestamp = timeIndex.lastTimestamp
        return { loaded: this.cached, reason }
      }
    }
    const ix = new SegmentIndexer(this.baseOffset, interval)
    const { bad } = await this.scanInto(ix, this.size, nextBase, chunkBytes)
    if (bad) throw new CorruptLogError(this.logPath, bad.position, bad.reason)
    ix.finish()
    const loaded = { index: ix.index, timeIndex: ix.timeIndex }
    // While the scan ran a truncation may have made the segment active again (it rewrites
    // the index files itself) or retention may have doomed it: then the files are not ours.
    if (this.sealed && this.indexer === undefined && this.doomed === undefined) {
      await atomicWriteFile(this.dir, basename(this.indexPath), ix.index.encode())
      await atomicWriteFile(this.dir, basename(this.timeIndexPath), ix.timeIndex.encode())
      this.cached = loaded
      this.maxTimestamp = ix.maxTimestamp
    }
    return { loaded, reason }
  }

  /**
   * Cheap consistency check of plausible index files against the log: the record at the
   * last offset index entry has that entry's offset, the records from there to the end are
   * valid, and the last one is the one the final time index entry names. Returns what is
   * wrong, if anything.
   */
  private async checkTail(
    index: OffsetIndex,
    timeIndex: TimeIndex,
    chunkBytes: number,
  ): Promise<string | undefined> {
    if (index.count === 0)
      return timeIndex.count === 0 ? undefined : `${this.timeIndexPath}: entries for an empty segment`
    const { relOffset, position } = index.entryAt(index.count - 1)
    let last = -1
    const { bad } = await scanRecords(await this.handle(), position, this.size, chunkBytes, (buf, pos) => {
      const offset = recordOffset(buf, pos)
      if (last < 0 && offset !== this.baseOffset + relOffset) return 'last entry does not match the log'
      if (offset <= last) return 'offsets out of order'
      last = offset
      return undefined
    })
    if (bad) return `${this.indexPath}: ${bad.reason} (at byte ${bad.position} of the log)`
    if (last - this.baseOffset !== timeIndex.lastRelOffset) {
      return `${this.timeIndexPath}: last entry does not name the last record`
    }
    return undefined
  }

  /**
   * Verifies records in `[0, end)` into `ix` (offsets increasing, >= base, < `limit`),
   * stopping cleanly before the first record with offset >= `stopAt`. Returns where it
   * stopped and the first bad record, if any; `ix` then covers the good prefix.
   */
  async scanInto(
    ix: SegmentIndexer,
    end: number,
    limit: number,
    chunkBytes: number,
    stopAt = Number.MAX_SAFE_INTEGER,
  ): Promise<{ end: number; bad: BadRecord | undefined }> {
    const fh = await this.handle()
    return scanRecords(fh, 0, end, chunkBytes, (buf, pos, size, filePos) => {
      const offset = recordOffset(buf, pos)
      if (offset < this.baseOffset || offset <= ix.lastOffset || offset >= limit) {
        return `offset ${offset} out of order (segment base ${this.baseOffset}, previous ${ix.lastOffset})`
      }
      if (offset - this.baseOffset > 0xffffffff) return `offset ${offset} too far from the segment base`
      if (offset >= stopAt) return false
      ix.track(offset, recordTimestamp(buf, pos), recordTerm(buf, pos), filePos, size)
      return undefined
    })
  }
}

async function readOrEmpty(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}
