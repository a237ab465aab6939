/**
 * Retention: deletes whole sealed segments from the front of the log, never the active one,
 * while any configured limit says the oldest is no longer needed. Segments leave the
 * in-memory list first (so readers stop finding them) and their files are unlinked oldest
 * first once in-flight reads release them; a crash in between leaves a valid suffix.
 */
import type { LogCore } from './core.js'
import { fsyncDir } from './fsutil.js'
import type { RetentionOptions, RetentionResult } from './types.js'

/**
 * How many leading segments `limits` allow deleting. `maxAge`: the segment's newest record is
 * older than `now - maxAge`. `maxBytes`: the remaining segments still hold >= maxBytes.
 * `maxMessages`: the remaining segments still span >= maxMessages offsets.
 */
export function segmentsToDelete(
  segs: ReadonlyArray<{ baseOffset: number; size: number; maxTimestamp: number }>,
  nextOffset: number,
  limits: RetentionOptions,
  now: number,
): number {
  const { maxAge, maxBytes, maxMessages } = limits
  let total = 0
  for (const s of segs) total += s.size
  let k = 0
  for (; k < segs.length - 1; k++) {
    const s = segs[k]!
    const next = segs[k + 1]!
    const byAge = maxAge !== undefined && s.maxTimestamp < now - maxAge
    const byBytes = maxBytes !== undefined && total - s.size >= maxBytes
    const byCount = maxMessages !== undefined && nextOffset - next.baseOffset >= maxMessages
    if (!byAge && !byBytes && !byCount) break
    total -= s.size
  }
  return k
}

/** Applies `core.opts.retention` now. Run under `core.exclusive`. */
export function enforceRetention(core: LogCore): Promise<RetentionResult> {
  return deleteLeading(
    core,
    segmentsToDelete(core.segments, core.nextOffset, core.opts.retention, core.opts.now()),
  )
}

/**
 * Deletes the leading sealed segments that hold only offsets below `offset` (a prefix the
 * owner no longer needs, e.g. a Raft log compacted into a snapshot). Run under `core.exclusive`.
 */
export function deleteBefore(core: LogCore, offset: number): Promise<RetentionResult> {
  const segs = core.segments
  let k = 0
  while (k < segs.length - 1 && segs[k + 1]!.baseOffset <= offset) k++
  return deleteLeading(core, k)
}

/** Deletes the first `k` segments (never the active one), oldest first. */
async function deleteLeading(core: LogCore, k: number): Promise<RetentionResult> {
  k = Math.min(k, core.segments.length - 1)
  if (k <= 0) return { deletedSegments: 0, deletedBytes: 0, earliestOffset: core.earliestOffset }
  const doomed = core.segments.slice(0, k)
  core.segments = core.segments.slice(k)
  let deletedBytes = 0
  for (const seg of doomed) {
    deletedBytes += seg.size
    await seg.retire(true)
    await fsyncDir(core.opts.dir) // one at a time, oldest first: a crash never leaves a hole
    core.stats.deletedSegments++
  }
  return { deletedSegments: k, deletedBytes, earliestOffset: core.earliestOffset }
}
