/**
 * `truncateAfter`: drops every record with an offset above a given one, for a replica whose
 * tail diverged from the leader's. Segments above the cut are deleted newest first, then the
 * segment holding the cut is cut with ftruncate, fsynced, and becomes the active segment. A
 * crash part way leaves a prefix of the old log that still contains the kept records (the
 * caller did not get its promise resolved and repeats the truncation).
 */
import type { LogCore } from './core.js'
import { CorruptLogError } from './errors.js'
import { fsyncDir } from './fsutil.js'
import { SegmentIndexer } from './segment.js'

/** Truncates so that `offset` is the last offset. Runs as a writer task under `exclusive`. */
export async function truncateAfter(core: LogCore, offset: number): Promise<void> {
  if (offset >= core.nextOffset - 1) return
  await core.pendingSeal // no background fsync on a segment we are about to cut or delete
  core.beginMutation()
  try {
    await cut(core, offset)
  } finally {
    core.endMutation()
  }
}

async function cut(core: LogCore, offset: number): Promise<void> {
  const segs = core.segments
  if (offset < segs[0]!.baseOffset) {
    const doomed = segs.slice().reverse()
    for (const seg of doomed) {
      await seg.retire(true)
      await fsyncDir(core.opts.dir) // one at a time, newest first: a crash never leaves a hole
    }
    core.segments = [await core.createSegment(offset + 1)]
    core.lastTerm = -1
  } else {
    const i = core.segmentIndexFor(offset)
    const seg = segs[i]!
    const ix = new SegmentIndexer(seg.baseOffset, core.opts.indexIntervalBytes)
    seg.acquire() // pinned until it is the active segment: the handle LRU must not close it
    try {
      const next = segs[i + 1]?.baseOffset ?? Number.MAX_SAFE_INTEGER
      const res = await seg.scanInto(ix, seg.size, next, 1024 * 1024, offset + 1)
      if (res.bad) throw new CorruptLogError(seg.logPath, res.bad.position, res.bad.reason)
      const cut = res.end
      const doomed = segs.slice(i + 1).reverse()
      core.segments = segs.slice(0, i + 1)
      for (const later of doomed) {
        await later.retire(true)
        await fsyncDir(core.opts.dir) // one at a time, newest first: a crash never leaves a hole
      }
      seg.sealed = false
      seg.cached = undefined
      const fh = await seg.handle()
      await fh.truncate(cut)
      await fh.datasync()
      seg.size = seg.visibleSize = cut
      seg.indexer = ix
    } finally {
      seg.release()
    }
    seg.maxTimestamp = -1
    seg.firstAppendAt = ix.records > 0 ? core.opts.now() : -1
    await seg.rewriteIndexes()
    core.lastTerm = ix.records > 0 ? ix.lastTerm : await core.lastTermBefore(i)
  }
  await fsyncDir(core.opts.dir)
  core.nextOffset = offset + 1
  core.visibleOffset = Math.min(core.visibleOffset, offset)
  core.durableOffset = Math.min(core.durableOffset, offset)
}
