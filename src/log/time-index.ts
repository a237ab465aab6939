/**
 * The sparse time index of one segment (`.timeindex`). An entry (T, o) means: the largest
 * timestamp among records up to offset o is T, and record o has timestamp T. Entries are
 * added when a record raises the maximum and at least `indexIntervalBytes` passed since the
 * previous entry (the first record always), and once more when the segment is sealed:
 * (largest timestamp, last offset), so the last entry of a sealed segment carries its largest
 * timestamp and names its last record (that entry may repeat the previous timestamp; it is
 * the only one whose record need not have that timestamp). Timestamps need not be monotonic
 * across records; entries increase strictly in offset and never decrease in timestamp. Like the offset
 * index it is a rebuildable cache, not fsynced on the append path.
 */
import { crc32 } from 'node:zlib'
import { TIDX } from './constants.js'
import { readU64, writeU64 } from './record.js'

/** In-memory sparse time index; `flushable()` yields entries not yet written to the file. */
export class TimeIndex {
  private ts: Float64Array
  private rel: Uint32Array
  count = 0
  written = 0

  constructor(capacity = 16) {
    this.ts = new Float64Array(capacity)
    this.rel = new Uint32Array(capacity)
  }

  append(timestamp: number, relOffset: number): void {
    if (this.count === this.ts.length) {
      const ts = new Float64Array(this.count * 2)
      ts.set(this.ts)
      const rel = new Uint32Array(this.count * 2)
      rel.set(this.rel)
      this.ts = ts
      this.rel = rel
    }
    this.ts[this.count] = timestamp
    this.rel[this.count] = relOffset
    this.count++
  }

  /** Largest timestamp indexed, -1 when empty. */
  get lastTimestamp(): number {
    return this.count === 0 ? -1 : this.ts[this.count - 1]!
  }

  /** Relative offset of the last entry, -1 when empty. */
  get lastRelOffset(): number {
    return this.count === 0 ? -1 : this.rel[this.count - 1]!
  }

  /**
   * Bounds where the first record with timestamp >= `target` lies: it is in
   * `(after, upTo]` (relative offsets; `after` = -1 for the segment start, `upTo` = -1 when
   * no entry reaches `target`, meaning scan to the segment end).
   */
  search(target: number): { after: number; upTo: number } {
    let lo = 0
    let hi = this.count - 1
    let first = this.count
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      if (this.ts[mid]! >= target) {
        first = mid
        hi = mid - 1
      } else lo = mid + 1
    }
    const after = first === 0 ? -1 : this.rel[first - 1]!
    const upTo = first === this.count ? -1 : this.rel[first]!
    return { after, upTo }
  }

  flushable(): Buffer | undefined {
    if (this.written === this.count) return undefined
    const buf = Buffer.allocUnsafe((this.count - this.written) * TIDX.ENTRY_SIZE)
    for (let i = this.written, p = 0; i < this.count; i++, p += TIDX.ENTRY_SIZE) {
      writeU64(buf, p + TIDX.TIMESTAMP, this.ts[i]!)
      buf.writeUInt32BE(this.rel[i]!, p + TIDX.REL_OFFSET)
      buf.writeUInt32BE(crc32(buf.subarray(p, p + TIDX.CRC)), p + TIDX.CRC)
    }
    this.written = this.count
    return buf
  }

  encode(): Buffer {
    this.written = 0
    return this.flushable() ?? Buffer.alloc(0)
  }

  /**
   * Parses a time index file of a segment with offsets below `relLimit` (relative).
   * Returns a reason string when the file is implausible.
   */
  static decode(buf: Buffer, logBytes: number, relLimit: number): TimeIndex | string {
    if (buf.length % TIDX.ENTRY_SIZE !== 0)
      return `size ${buf.length} is not a multiple of ${TIDX.ENTRY_SIZE}`
    const n = buf.length / TIDX.ENTRY_SIZE
    if (n === 0 && logBytes > 0) return 'empty time index for a non-empty segment'
    const idx = new TimeIndex(Math.max(n, 16))
    let lastTs = -1
    let lastRel = -1
    for (let i = 0, p = 0; i < n; i++, p += TIDX.ENTRY_SIZE) {
      if (crc32(buf.subarray(p, p + TIDX.CRC)) !== buf.readUInt32BE(p + TIDX.CRC))
        return `entry ${i} fails its checksum`
      const ts = readU64(buf, p + TIDX.TIMESTAMP)
      const rel = buf.readUInt32BE(p + TIDX.REL_OFFSET)
      if (ts < 0 || ts < lastTs || rel <= lastRel) return `entry ${i} is not increasing`
      if (rel >= relLimit) return `entry ${i} points past the segment`
      idx.append(ts, rel)
      lastTs = ts
      lastRel = rel
    }
    idx.written = n
    return idx
  }
}
