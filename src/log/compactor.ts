/**
 * Key compaction: keeps, in sealed segments, only the latest record of each key (records
 * without a key are always kept; a tombstone, a keyed record with an empty value, is kept
 * while it is the latest for its key and younger than `deleteRetentionMs`). The active
 * segment is read (its keys count as "latest") but never rewritten.
 *
 * Pass 1 maps key -> latest offset over sealed segments in order, stopping after the segment
 * where the map reaches `compactionMaxKeys` (bounded memory; later segments are cleaned by a
 * later pass). Pass 2 rewrites each covered segment that loses records: records are copied
 * verbatim (their CRCs stay valid) into `<base>.log.cleaned` plus fresh `.cleaned` indexes,
 * all fsynced; then the old indexes are deleted, the log is renamed over the old one (the
 * commit point) and the new indexes renamed in. A crash before the rename leaves the old
 * segment (and `.cleaned` leftovers that open() deletes); after it, the new segment, with
 * indexes either in place or rebuilt on open. A segment left with no record is deleted.
 */

import type { FileHandle } from 'node:fs/promises'
import { open, rename } from 'node:fs/promises'
import { CLEANED_SUFFIX } from './constants.js'
import type { LogCore } from './core.js'
import { CorruptLogError } from './errors.js'
import { fsyncDir, unlinkIfExists, writeFully } from './fsutil.js'
import { scanRecords } from './reader.js'
import { recordKey, recordOffset, recordTerm, recordTimestamp, recordValueLength } from './record.js'
import { Segment, SegmentIndexer } from './segment.js'
import type { CompactionResult } from './types.js'

const CHUNK = 1024 * 1024

/** Runs one compaction pass. Run under `core.exclusive`. */
export async function compact(core: LogCore): Promise<CompactionResult> {
  const result: CompactionResult = {
    segmentsRewritten: 0,
    segmentsDeleted: 0,
    recordsRemoved: 0,
    bytesBefore: 0,
    bytesAfter: 0,
  }
  const segs = core.segments.slice()
  const sealed = segs.slice(0, -1)
  if (sealed.length === 0) return result
  const latest = new Map<string, number>()
  let covered = 0
  // Sealed segments first, then the active one as of now (read only): its keys are "latest" too.
  for (const seg of segs) {
    await eachRecord(seg, seg.visibleSize, (buf, pos) => {
      const key = recordKey(buf, pos)
      if (key) latest.set(key.toString('latin1'), recordOffset(buf, pos))
    })
    if (covered < sealed.length) covered++
    if (latest.size >= core.opts.compactionMaxKeys) break
  }
  const horizon = core.opts.now() - core.opts.deleteRetentionMs
  const keep = (buf: Buffer, pos: number): boolean => {
    const key = recordKey(buf, pos)
    if (!key) return true
    const offset = recordOffset(buf, pos)
    if ((latest.get(key.toString('latin1')) ?? offset) > offset) return false
    return !(recordValueLength(buf, pos) === 0 && recordTimestamp(buf, pos) < horizon)
  }
  for (let i = 0; i < covered; i++) {
    const seg = sealed[i]!
    let drops = 0
    await eachRecord(seg, seg.size, (buf, pos) => {
      if (!keep(buf, pos)) drops++
    })
    if (drops === 0) continue
    result.bytesBefore += seg.size
    const replacement = await rewrite(core, seg, keep)
    result.recordsRemoved += drops
    // Copy-on-write: readers iterating the old array keep a consistent list.
    if (replacement) {
      core.segments = core.segments.map((x) => (x === seg ? replacement : x))
      core.touchIndex(replacement)
      result.segmentsRewritten++
      result.bytesAfter += replacement.size
      await seg.retire(false)
    } else {
      core.segments = core.segments.filter((x) => x !== seg)
      await seg.retire(true)
      await fsyncDir(core.opts.dir)
      result.segmentsDeleted++
    }
  }
  core.stats.compactions++
  return result
}

/** Calls `visit` for each record of `seg` in `[0, end)`; throws CorruptLogError on bad bytes. */
async function eachRecord(
  seg: Segment,
  end: number,
  visit: (buf: Buffer, pos: number) => void,
): Promise<void> {
  seg.acquire()
  try {
    const fh = await seg.handle()
    const { bad } = await scanRecords(fh, 0, end, CHUNK, (buf, pos) => {
      visit(buf, pos)
      return undefined
    })
    if (bad) throw new CorruptLogError(seg.logPath, bad.position, bad.reason)
  } finally {
    seg.release()
  }
}

/** Writes the kept records of `seg` and swaps them in; undefined when none are kept. */
async function rewrite(
  core: LogCore,
  seg: Segment,
  keep: (buf: Buffer, pos: number) => boolean,
): Promise<Segment | undefined> {
  const ix = new SegmentIndexer(seg.baseOffset, core.opts.indexIntervalBytes)
  const paths = [seg.logPath, seg.indexPath, seg.timeIndexPath].map((p) => p + CLEANED_SUFFIX) as [
    string,
    string,
    string,
  ]
  const out = await open(paths[0], 'w')
  let size = 0
  try {
    const pending = Buffer.allocUnsafe(CHUNK)
    let fill = 0
    const flush = async (fh: FileHandle): Promise<void> => {
      await writeFully(fh, pending, 0, fill, size - fill)
      fill = 0
    }
    // Copy in rounds: the visitor stops when the output chunk is full, we flush and resume.
    let pos = 0
    seg.acquire()
    try {
      const src = await seg.handle()
      while (pos < seg.size) {
        const { end, bad } = await scanRecords(src, pos, seg.size, CHUNK, (buf, p, len) => {
          if (!keep(buf, p)) return undefined
          if (fill + len > pending.length) return false
          buf.copy(pending, fill, p, p + len)
          ix.track(recordOffset(buf, p), recordTimestamp(buf, p), recordTerm(buf, p), size, len)
          fill += len
          size += len
          return undefined
        })
        if (bad) throw new CorruptLogError(seg.logPath, bad.position, bad.reason)
        // A record that did not fit stopped the scan before it; `end` is where to resume.
        if (fill > 0) await flush(out)
        if (end === pos) {
          // One record larger than the chunk: copy it alone.
          const big = await copyOne(src, pos, out, size, ix, keep)
          pos += big.read
          size += big.written
        } else pos = end
      }
    } finally {
      seg.release()
    }
    await out.datasync()
  } finally {
    await out.close()
  }
  if (ix.records === 0) {
    await unlinkIfExists(paths[0])
    return undefined
  }
  ix.finish()
  for (const [path, data] of [
    [paths[1], ix.index.encode()],
    [paths[2], ix.timeIndex.encode()],
  ] as const) {
    const fh = await open(path, 'w')
    await writeFully(fh, data, 0, data.length, 0)
    await fh.datasync()
    await fh.close()
  }
  await unlinkIfExists(seg.indexPath)
  await unlinkIfExists(seg.timeIndexPath)
  await fsyncDir(core.opts.dir) // the old indexes are gone before the new log appears
  await rename(paths[0], seg.logPath) // commit point
  await rename(paths[1], seg.indexPath)
  await rename(paths[2], seg.timeIndexPath)
  await fsyncDir(core.opts.dir)
  const next = new Segment(seg.dir, seg.baseOffset)
  next.sealed = true
  next.size = next.visibleSize = size
  next.maxTimestamp = ix.maxTimestamp
  next.cached = { index: ix.index, timeIndex: ix.timeIndex }
  return next
}

/** Copies the single record at `pos` (larger than a chunk) if kept. */
async function copyOne(
  src: FileHandle,
  pos: number,
  out: FileHandle,
  at: number,
  ix: SegmentIndexer,
  keep: (buf: Buffer, pos: number) => boolean,
): Promise<{ read: number; written: number }> {
  const head = Buffer.allocUnsafe(4)
  await src.read(head, 0, 4, pos)
  const len = head.readUInt32BE(0)
  const buf = Buffer.allocUnsafe(len)
  await src.read(buf, 0, len, pos)
  if (!keep(buf, 0)) return { read: len, written: 0 }
  await writeFully(out, buf, 0, len, at)
  ix.track(recordOffset(buf, 0), recordTimestamp(buf, 0), recordTerm(buf, 0), at, len)
  return { read: len, written: len }
}
