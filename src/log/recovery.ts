/**
 * Recovery on open. Every segment but the last was fsynced when it was sealed, so only the
 * last (tail) segment can hold a torn write: it is scanned whole, checksums verified, and cut
 * back to its last valid record. Sealed segments have their index files checked and rebuilt
 * from the log when missing or implausible; bad records found while rebuilding throw
 * `CorruptLogError` (file and position) instead of dropping data. Leftovers of interrupted
 * rewrites (`*.cleaned`, `*.tmp`) and orphan index files are deleted. Every repair is listed in
 * the returned report.
 */
import { mkdir, readdir, readFile, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, TMP_SUFFIX } from './constants.js'
import type { LogCore } from './core.js'
import { fsyncDir, parseSegmentFileName, unlinkIfExists } from './fsutil.js'
import { Segment, SegmentIndexer } from './segment.js'
import type { RecoveryReport } from './types.js'

/** Fills `core.segments` and offsets from the directory, repairing what it may. */
export async function recover(core: LogCore): Promise<RecoveryReport> {
  const { dir, indexIntervalBytes } = core.opts
  const chunk = 1024 * 1024
  const report: RecoveryReport = { truncated: [], rebuiltIndexes: [], removedFiles: [], scannedRecords: 0 }
  if ((await mkdir(dir, { recursive: true })) !== undefined) await fsyncDir(dirname(dir))
  const names = await readdir(dir)
  const logs = new Set<number>()
  const others: Array<{ name: string; base: number }> = []
  for (const name of names) {
    if (name.endsWith(TMP_SUFFIX) || name.endsWith(CLEANED_SUFFIX)) {
      await unlinkIfExists(join(dir, name))
      report.removedFiles.push(name)
      continue
    }
    const parsed = parseSegmentFileName(name)
    if (!parsed || parsed.extra) continue
    if (parsed.suffix === LOG_SUFFIX) logs.add(parsed.baseOffset)
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
  const segments = bases.map((b) => new Segment(dir, b))
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
