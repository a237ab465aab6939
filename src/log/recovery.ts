/**
 * Recovery on open. Every segment but the last was fsynced when it was sealed (under fsync
 * 'never'/'interval' that fsync runs in the background, and a `<base>.sealing` marker names
 * the one segment whose fsync may not have finished), so only the last (tail) segment, and a
 * marked one, can hold a torn write: they are scanned whole, checksums verified, and cut back
 * to their last valid record (a damaged marked segment also drops every later segment, so the
 * log stays a clean prefix). Sealed segments have their index files checked and rebuilt from
 * the log when missing or implausible; bad records found while rebuilding throw
 * `CorruptLogError` (file and position) instead of dropping data. Leftovers of interrupted
 * rewrites (`*.cleaned`, `*.tmp`), orphan index files and markers are deleted. Every repair
 * is listed in the returned report.
 */
import { mkdir, readdir, readFile, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import {
  CLEANED_SUFFIX,
  INDEX_SUFFIX,
  LOG_SUFFIX,
  SEALING_SUFFIX,
  TIME_INDEX_SUFFIX,
  TMP_SUFFIX,
} from './constants.js'
import type { LogCore } from './core.js'
import { atomicWriteFile, fsyncDir, parseSegmentFileName, segmentStem, unlinkIfExists } from './fsutil.js'
import { Segment, SegmentIndexer } from './segment.js'
import type { RecoveryReport, RecoveryTruncation } from './types.js'

/** Fills `core.segments` and offsets from the directory, repairing what it may. */
export async function recover(core: LogCore): Promise<RecoveryReport> {
  const { dir, indexIntervalBytes } = core.opts
  const chunk = 1024 * 1024
  const report: RecoveryReport = { truncated: [], rebuiltIndexes: [], removedFiles: [], scannedRecords: 0 }
  if ((await mkdir(dir, { recursive: true })) !== undefined) await fsyncDir(dirname(dir))
  const names = await readdir(dir)
  const logs = new Set<number>()
  const others: Array<{ name: string; base: number }> = []
  const markers: number[] = []
  for (const name of names) {
    if (name.endsWith(TMP_SUFFIX) || name.endsWith(CLEANED_SUFFIX)) {
      await unlinkIfExists(join(dir, name))
      report.removedFiles.push(name)
      continue
    }
    const parsed = parseSegmentFileName(name)
    if (!parsed || parsed.extra) continue
    if (parsed.suffix === LOG_SUFFIX) logs.add(parsed.baseOffset)
    else if (parsed.suffix === SEALING_SUFFIX) markers.push(parsed.baseOffset)
    else if (parsed.suffix === INDEX_SUFFIX || parsed.suffix === TIME_INDEX_SUFFIX) {
      others.push({ name, base: parsed.baseOffset })
    }
  }
  for (const o of others) {
    if (!logs.has(o.base)) {
      await unlinkIfExists(join(dir, o.name))
      report.removedFiles.push(o.name)
    }
  }
  if (report.removedFiles.length > 0) await fsyncDir(dir)

  const bases = [...logs].sort((a, b) => a - b)
  if (bases.length === 0) {
    core.segments = [await core.createSegment(0)]
    core.nextOffset = 0
    return report
  }
  let segments = bases.map((b) => new Segment(dir, b))
  const dropped = await verifyInterruptedSeals(core, segments, markers, report)
  if (dropped.length > 0) segments = segments.slice(0, segments.length - dropped.length)
  for (let i = 0; i < segments.length - 1; i++) {
    const seg = segments[i]!
    seg.sealed = true
    seg.size = seg.visibleSize = (await stat(seg.logPath)).size
    const why = await seg.loadIndexes(segments[i + 1]!.baseOffset, chunk, indexIntervalBytes)
    if (why) report.rebuiltIndexes.push(why)
    seg.cached = undefined // loaded on demand later; keeps memory bounded
  }
  const tail = segments[segments.length - 1]!
  const fileSize = (await stat(tail.logPath)).size
  const ix = new SegmentIndexer(tail.baseOffset, indexIntervalBytes)
  const { bad } = await tail.scanInto(ix, fileSize, Number.MAX_SAFE_INTEGER, chunk)
  report.scannedRecords = ix.records
  const validEnd = bad ? bad.position : fileSize
  if (bad) {
    const fh = await tail.handle()
    await fh.truncate(validEnd)
    await fh.datasync()
    report.truncated.push({
      file: tail.logPath,
      position: bad.position,
      droppedBytes: fileSize - bad.position,
      reason: bad.reason,
      lastValidOffset: ix.lastOffset >= 0 ? ix.lastOffset : tail.baseOffset - 1,
    })
  }
  for (const d of dropped)
    report.truncated.push({ ...d, lastValidOffset: ix.lastOffset >= 0 ? ix.lastOffset : tail.baseOffset - 1 })
  for (const m of markers) {
    await unlinkIfExists(join(dir, segmentStem(m) + SEALING_SUFFIX))
    report.removedFiles.push(segmentStem(m) + SEALING_SUFFIX)
  }
  if (markers.length > 0) await fsyncDir(dir)
  tail.size = tail.visibleSize = validEnd
  tail.indexer = ix
  if (ix.records > 0) tail.firstAppendAt = core.opts.now()
  const before = await Promise.all([readOr(tail.indexPath), readOr(tail.timeIndexPath)])
  await tail.rewriteIndexes()
  const after = [ix.index.encode(), ix.timeIndex.encode()]
  ix.index.written = ix.index.count
  ix.timeIndex.written = ix.timeIndex.count
  if (!before[0]?.equals(after[0]!)) report.rebuiltIndexes.push(`${tail.indexPath}: tail index rebuilt`)
  if (!before[1]?.equals(after[1]!)) {
    report.rebuiltIndexes.push(`${tail.timeIndexPath}: tail time index rebuilt`)
  }
  core.segments = segments
  core.nextOffset = ix.lastOffset >= 0 ? ix.lastOffset + 1 : tail.baseOffset
  core.visibleOffset = core.durableOffset = core.nextOffset - 1
  core.lastTerm = ix.lastTerm
  return report
}

async function readOr(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path)
  } catch {
    return undefined
  }
}

/**
 * Sealed segments whose background fsync may not have finished (a `.sealing` marker) are
 * verified like a tail. A whole one is fsynced and its indexes rebuilt. A damaged one ends
 * the log: every later segment is deleted (newest first) so the log stays a clean prefix,
 * and the damaged segment, now the tail, is cut by the tail scan. Returns what was deleted.
 */
async function verifyInterruptedSeals(
  core: LogCore,
  segments: Segment[],
  markers: number[],
  report: RecoveryReport,
): Promise<Array<Omit<RecoveryTruncation, 'lastValidOffset'>>> {
  const { dir, indexIntervalBytes } = core.opts
  for (const base of markers.sort((a, b) => a - b)) {
    const i = segments.findIndex((s) => s.baseOffset === base)
    if (i < 0 || i === segments.length - 1) continue // gone, or the tail (scanned anyway)
    const seg = segments[i]!
    const size = (await stat(seg.logPath)).size
    const ix = new SegmentIndexer(seg.baseOffset, indexIntervalBytes)
    const { bad } = await seg.scanInto(ix, size, segments[i + 1]!.baseOffset, 1024 * 1024)
    if (!bad) {
      await (await seg.handle()).datasync()
      ix.finish()
      await atomicWriteFile(dir, basename(seg.indexPath), ix.index.encode())
      await atomicWriteFile(dir, basename(seg.timeIndexPath), ix.timeIndex.encode())
      report.rebuiltIndexes.push(`${seg.indexPath}: verified after an interrupted background seal`)
      continue
    }
    const dropped: Array<Omit<RecoveryTruncation, 'lastValidOffset'>> = []
    for (const later of segments.slice(i + 1).reverse()) {
      const bytes = (await stat(later.logPath)).size
      await later.closeHandles()
      await unlinkIfExists(later.logPath)
      await unlinkIfExists(later.indexPath)
      await unlinkIfExists(later.timeIndexPath)
      await fsyncDir(dir)
      dropped.push({
        file: later.logPath,
        position: 0,
        droppedBytes: bytes,
        reason: `follows ${seg.logPath}, damaged at byte ${bad.position} (${bad.reason}) before its fsync completed`,
      })
    }
    return dropped.reverse()
  }
  return []
}
