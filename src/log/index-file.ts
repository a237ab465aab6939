/**
 * The sparse offset index of one segment (`.index`): one entry (relative offset, byte
 * position, CRC) every `indexIntervalBytes` of log, the first record always indexed. Entries are
 * strictly increasing in both fields. The file is a cache of the log: it is never fsynced on
 * the append path, it is rebuilt from the log when missing or implausible, and a lookup
 * whose position turns out wrong falls back to scanning (see reader.ts).
 */
import { crc32 } from 'node:zlib'
import { IDX } from './constants.js'

/** In-memory sparse offset index; `flushable()` yields entries not yet written to the file. */
export class OffsetIndex {
  private rel: Uint32Array
  private pos: Uint32Array
  /** Number of entries. */
  count = 0
  /** Entries already in the file. */
  written = 0

  constructor(capacity = 64) {
    this.rel = new Uint32Array(capacity)
    this.pos = new Uint32Array(capacity)
  }

  /** Adds an entry; both fields must exceed the previous entry's. */
  append(relOffset: number, position: number): void {
    if (this.count === this.rel.length) {
      const rel = new Uint32Array(this.count * 2)
      rel.set(this.rel)
      const pos = new Uint32Array(this.count * 2)
      pos.set(this.pos)
      this.rel = rel
      this.pos = pos
    }
    this.rel[this.count] = relOffset
    this.pos[this.count] = position
    this.count++
  }

  /** The last entry at or before `relOffset` (relative offset -1, position 0 if none). */
  lookupEntry(relOffset: number): { relOffset: number; position: number } {
    let lo = 0
    let hi = this.count - 1
    let best = -1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      if (this.rel[mid]! <= relOffset) {
        best = mid
        lo = mid + 1
      } else hi = mid - 1
    }
    return best < 0
      ? { relOffset: -1, position: 0 }
      : { relOffset: this.rel[best]!, position: this.pos[best]! }
  }

  /** Byte position of the last indexed record at or before `relOffset` (0 if none). */
  lookup(relOffset: number): number {
    let lo = 0
    let hi = this.count - 1
    let best = -1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      if (this.rel[mid]! <= relOffset) {
        best = mid
        lo = mid + 1
      } else hi = mid - 1
    }
    return best < 0 ? 0 : this.pos[best]!
  }

  /** Relative offset of the entry at or before `position`, with that entry's position. */
  entryAt(i: number): { relOffset: number; position: number } {
    return { relOffset: this.rel[i]!, position: this.pos[i]! }
  }

  /** Encodes entries `[written, count)` and marks them written. */
  flushable(): Buffer | undefined {
    if (this.written === this.count) return undefined
    const buf = Buffer.allocUnsafe((this.count - this.written) * IDX.ENTRY_SIZE)
    for (let i = this.written, p = 0; i < this.count; i++, p += IDX.ENTRY_SIZE) {
      buf.writeUInt32BE(this.rel[i]!, p + IDX.REL_OFFSET)
      buf.writeUInt32BE(this.pos[i]!, p + IDX.POSITION)
      buf.writeUInt32BE(crc32(buf.subarray(p, p + IDX.CRC)), p + IDX.CRC)
    }
    this.written = this.count
    return buf
  }

  /** Encodes every entry (for a rebuilt file). */
  encode(): Buffer {
    this.written = 0
    return this.flushable() ?? Buffer.alloc(0)
  }

  /** Approximate heap bytes held. */
  get memoryBytes(): number {
    return this.rel.byteLength * 2
  }

  /**
   * Parses an index file of a segment holding `logBytes` bytes and offsets below
   * `relLimit` (relative). Returns a reason string when the file is implausible.
   */
  static decode(buf: Buffer, logBytes: number, relLimit: number): OffsetIndex | string {
    if (buf.length % IDX.ENTRY_SIZE !== 0) return `size ${buf.length} is not a multiple of ${IDX.ENTRY_SIZE}`
    const n = buf.length / IDX.ENTRY_SIZE
    if (n === 0 && logBytes > 0) return 'empty index for a non-empty segment'
    const idx = new OffsetIndex(Math.max(n, 16))
    let lastRel = -1
    let lastPos = -1
    for (let i = 0, p = 0; i < n; i++, p += IDX.ENTRY_SIZE) {
      if (crc32(buf.subarray(p, p + IDX.CRC)) !== buf.readUInt32BE(p + IDX.CRC))
        return `entry ${i} fails its checksum`
      const rel = buf.readUInt32BE(p + IDX.REL_OFFSET)
      const pos = buf.readUInt32BE(p + IDX.POSITION)
      if (i === 0 && pos !== 0) return 'first entry does not point at position 0'
      if (rel <= lastRel || pos <= lastPos) return `entry ${i} is not increasing`
      if (pos >= logBytes || rel >= relLimit) return `entry ${i} points past the segment`
      idx.append(rel, pos)
      lastRel = rel
      lastPos = pos
    }
    idx.written = n
    return idx
  }
}
