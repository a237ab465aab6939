/**
 * Sequential record access over one segment file: `scanRecords` (verify everything, used by
 * recovery, index rebuild and compaction, bounded by its chunk size) and `readRecords` (the
 * read path: one fresh buffer per chunk so the returned records can be views into it).
 */
import type { FileHandle } from 'node:fs/promises'
import { DecodeError } from '../util/binary.js'
import { MAX_SEGMENT_BYTES, REC } from './constants.js'
import { readFully } from './fsutil.js'
import { decodeRecord, INCOMPLETE, recordOffset, verifyRecord } from './record.js'
import type { LogRecord } from './types.js'

/** Where and why a scan or read stopped at a bad record. */
export interface BadRecord {
  position: number
  reason: string
}

/**
 * Visitor of `scanRecords`: `buf[pos, pos+size)` is one verified record at file position
 * `filePos`. Return a string to reject it (the scan stops there as at a bad record), `false`
 * to stop cleanly before it (the returned `end` is its position), anything else to continue. The buffer is reused after the call returns.
 */
export type ScanVisitor = (
  buf: Buffer,
  pos: number,
  size: number,
  filePos: number,
) => string | boolean | undefined

/**
 * Verifies and visits the records of `fh` in `[start, end)`. Returns the position after the
 * last good record, and `bad` when it met a record it could not accept (an incomplete record
 * before `end` counts as bad: "truncated record").
 */
export async function scanRecords(
  fh: FileHandle,
  start: number,
  end: number,
  chunkBytes: number,
  visit: ScanVisitor,
): Promise<{ end: number; bad: BadRecord | undefined }> {
  let buf = Buffer.allocUnsafe(Math.min(chunkBytes, Math.max(end - start, REC.HEADER_SIZE)))
  let filePos = start // file position of buf[0]
  let have = 0
  let p = 0 // parse position in buf
  for (;;) {
    const remainingFile = end - (filePos + have)
    if (p >= have && remainingFile <= 0) return { end: filePos + p, bad: undefined }
    const r = verifyRecord(buf, p, have, MAX_SEGMENT_BYTES)
    if (typeof r === 'string') return { end: filePos + p, bad: { position: filePos + p, reason: r } }
    if (r === INCOMPLETE) {
      if (remainingFile <= 0) {
        return { end: filePos + p, bad: { position: filePos + p, reason: 'truncated record' } }
      }
      // Shift the partial record to the front, grow if one record exceeds the buffer.
      const partial = have - p
      let need: number = REC.HEADER_SIZE
      if (partial >= 4) need = buf.readUInt32BE(p + REC.SIZE)
      if (need > buf.length) {
        const bigger = Buffer.allocUnsafe(need)
        buf.copy(bigger, 0, p, have)
        buf = bigger
      } else if (p > 0) buf.copy(buf, 0, p, have)
      filePos += p
      have = partial
      p = 0
      const n = await readFully(
        fh,
        buf,
        have,
        Math.min(buf.length - have, end - (filePos + have)),
        filePos + have,
      )
      if (n === 0) return { end: filePos, bad: { position: filePos, reason: 'truncated record' } }
      have += n
      continue
    }
    const verdict = visit(buf, p, r, filePos + p)
    if (typeof verdict === 'string')
      return { end: filePos + p, bad: { position: filePos + p, reason: verdict } }
    if (verdict === false) return { end: filePos + p, bad: undefined }
    p += r
  }
}

/** Outcome of `readRecords`. */
export interface ReadOutcome {
  /** Bytes of records appended to `out`. */
  bytes: number
  /** The byte budget is spent (or maxRecords reached): stop reading further segments. */
  full: boolean
  bad: BadRecord | undefined
  /** True when `bad` is the very first record examined (an index pointing at the wrong spot). */
  badAtStart: boolean
}

/**
 * Reads records with offset >= `fromOffset` from `[start, end)` into `out`, decoding views
 * into freshly allocated buffers, until `maxBytes` is spent (the first record is returned even
 * when larger) or `maxRecords` are in `out`. Offsets must increase and stay below `limit`;
 * with `startOffset` >= 0 the record at `start` must have that offset (an index's claim).
 */
export async function readRecords(
  fh: FileHandle,
  start: number,
  end: number,
  fromOffset: number,
  limit: number,
  maxBytes: number,
  maxRecords: number,
  slack: number,
  out: LogRecord[],
  startOffset = -1,
): Promise<ReadOutcome> {
  let pos = start
  let bytes = 0
  let lastOffset = -1
  let first = true
  const bad = (position: number, reason: string): ReadOutcome => ({
    bytes,
    full: true,
    bad: { position, reason },
    badAtStart: first,
  })
  while (pos < end) {
    let len = Math.min(end - pos, Math.max(maxBytes - bytes, REC.HEADER_SIZE) + slack)
    let buf = Buffer.allocUnsafe(len)
    let n = await readFully(fh, buf, 0, len, pos)
    slack = 0
    let p = 0
    while (p < n) {
      let r = verifyRecord(buf, p, n, MAX_SEGMENT_BYTES)
      if (r === INCOMPLETE && p === 0) {
        // A single record larger than the chunk: read exactly it.
        if (n < REC.HEADER_SIZE) return bad(pos, 'truncated record')
        len = buf.readUInt32BE(REC.SIZE)
        if (pos + len > end) return bad(pos, 'record runs past the end of the segment')
        if (out.length > 0 && bytes + len > maxBytes)
          return { bytes, full: true, bad: undefined, badAtStart: false }
        buf = Buffer.allocUnsafe(len)
        n = await readFully(fh, buf, 0, len, pos)
        r = verifyRecord(buf, 0, n, MAX_SEGMENT_BYTES)
      }
      if (r === INCOMPLETE) {
        if (pos + p + REC.HEADER_SIZE > end) return bad(pos + p, 'truncated record')
        break
      }
      if (typeof r === 'string') return bad(pos + p, r)
      const offset = recordOffset(buf, p)
      if (first && startOffset >= 0 && offset !== startOffset) {
        return bad(pos + p, `index entry for offset ${startOffset} points at offset ${offset}`)
      }
      if (offset <= lastOffset || offset >= limit) return bad(pos + p, `offset ${offset} out of order`)
      lastOffset = offset
      if (offset >= fromOffset) {
        if (out.length > 0 && bytes + r > maxBytes)
          return { bytes, full: true, bad: undefined, badAtStart: false }
        try {
          out.push(decodeRecord(buf, p))
        } catch (err) {
          if (err instanceof DecodeError) return bad(pos + p, err.message)
          throw err
        }
        bytes += r
        if (out.length >= maxRecords) return { bytes, full: true, bad: undefined, badAtStart: false }
      }
      first = false
      p += r
    }
    if (p === 0) return bad(pos, 'truncated record')
    pos += p
  }
  return { bytes, full: bytes >= maxBytes, bad: undefined, badAtStart: false }
}
