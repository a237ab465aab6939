/**
 * `offsetForTime`: the first offset whose record timestamp is >= a target. Segments whose
 * largest timestamp is below the target are skipped; inside a segment the time index bounds
 * the candidate range (see time-index.ts) and the records there are scanned in order.
 */
import { LOG_DEFAULTS } from './constants.js'
import type { LogCore } from './core.js'
import { CorruptLogError, StaleSegmentError } from './errors.js'
import { scanRecords } from './reader.js'
import { recordOffset, recordTimestamp } from './record.js'

/** First visible offset with timestamp >= `target`, or undefined. */
export async function offsetForTime(core: LogCore, target: number): Promise<number | undefined> {
  const segs = core.segments
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i]!
    const maxTs = seg.indexer ? seg.indexer.maxTimestamp : seg.maxTimestamp
    if (maxTs < target) continue
    const limit = segs[i + 1]?.baseOffset ?? Number.MAX_SAFE_INTEGER
    if (!seg.acquire()) throw new StaleSegmentError(seg.logPath)
    try {
      const chunk = LOG_DEFAULTS.scanChunkBytes
      const interval = core.opts.indexIntervalBytes
      const ti = await seg.timeIndex(limit, chunk, interval)
      const idx = await seg.offsetIndex(limit, chunk, interval)
      core.touchIndex(seg)
      const { after } = ti.search(target)
      const afterOffset = after < 0 ? -1 : seg.baseOffset + after
      const fh = await seg.handle()
      const entry = after < 0 ? { relOffset: -1, position: 0 } : idx.lookupEntry(after)
      // Start at the index entry (its record must be the one it names), else at the start.
      const tries =
        entry.position > 0 ? [entry, { relOffset: -1, position: 0 }] : [{ relOffset: -1, position: 0 }]
      for (const t of tries) {
        const start = t.position
        const expected = t.relOffset >= 0 ? seg.baseOffset + t.relOffset : -1
        let found: number | undefined
        let first = true
        let startBad = false
        const { bad } = await scanRecords(fh, start, seg.visibleSize, chunk, (buf, pos) => {
          const offset = recordOffset(buf, pos)
          if (first && expected >= 0 && offset !== expected) {
            startBad = true // the index entry does not match the log
            return false
          }
          first = false
          if (offset > afterOffset && recordTimestamp(buf, pos) >= target) {
            found = offset
            return false
          }
          return undefined
        })
        if (found !== undefined) return found
        if ((bad && first && start > 0) || startBad) continue
        if (bad) throw new CorruptLogError(seg.logPath, bad.position, bad.reason)
        break
      }
    } finally {
      seg.release()
    }
  }
  return undefined
}
