/**
 * `PurgedKeys`: the purges by key a partition replica applied (`streams.purge(name, { key })`,
 * purge.ts): per key, the offset below which its messages are hidden from every read
 * (consumers, `streams.get`, `streams.last`, the key index). The records stay in the partition
 * log until retention, a purge `before` or compaction removes them; reads skip them.
 *
 * Durable: kept in `<partition dir>/purged-keys` (`u32 crc32 | u32 n | n × (bytes key | u64
 * below)`), replaced atomically and synchronously when a purge entry is applied, before any
 * later record reaches the partition log. So a replica that crashes after applying one either
 * has the file, or restarts below the entry and applies it again (idempotent: a key's mark
 * only moves forward). It travels in partition snapshots (partition-snapshot.ts) to replicas
 * catching up by copy.
 *
 * Bounded: at most `max` keys (`DEFAULT_PURGED_KEYS_MAX`). A mark at or below the log's start
 * offset is moot (retention or a purge `before` removed the messages) and is dropped when the
 * next purge by key is applied. A purge of a new key beyond the bound is skipped on every
 * replica alike (decided from the log), and the leader refuses it before proposing.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { CorruptReplicaStateError } from '../../replication/errors.js'
import { BinaryReader, BinaryWriter } from '../../util/binary.js'
import { keyText } from './key-index.js'

const FILE = 'purged-keys'

/** Per key, the offset below which its messages are purged; see the module doc. */
export class PurgedKeys {
  private readonly marks = new Map<string, number>()

  constructor(readonly max: number) {}

  /** Keys remembered. */
  get size(): number {
    return this.marks.size
  }

  /** Whether the message of `key` at `offset` is purged. */
  hides(key: Uint8Array | undefined, offset: number): boolean {
    if (key === undefined || this.marks.size === 0) return false
    const below = this.marks.get(keyText(key))
    return below !== undefined && offset < below
  }

  /** Whether a purge of `key` can be remembered now (known key, or room for one more). */
  accepts(key: Uint8Array, startOffset: number): boolean {
    if (this.marks.has(keyText(key))) return true
    this.prune(startOffset)
    return this.marks.size < this.max
  }

  /**
   * Records a purge of `key` below `below` (marks only move forward), after dropping moot
   * marks. Returns false (nothing recorded) when the bound is reached for a new key.
   */
  record(key: Uint8Array, below: number, startOffset: number): boolean {
    const k = keyText(key)
    const had = this.marks.get(k)
    if (had === undefined && !this.accepts(key, startOffset)) return false
    if (had === undefined || below > had) this.marks.set(k, below)
    return true
  }

  /** Drops the marks at or below `startOffset` (their messages are gone). */
  prune(startOffset: number): void {
    for (const [k, below] of this.marks) if (below <= startOffset) this.marks.delete(k)
  }

  /** The marks, as `[key bytes, below]`. */
  entries(): Array<[Uint8Array, number]> {
    return [...this.marks].map(([k, b]) => [Buffer.from(k, 'latin1'), b])
  }

  /** Replaces the marks (a snapshot restore). */
  replace(entries: ReadonlyArray<readonly [Uint8Array, number]>): void {
    this.marks.clear()
    for (const [k, b] of entries) this.marks.set(keyText(k), b)
  }

  /** Writes the marks to `<dir>/purged-keys`, atomically and durably (synchronous). */
  saveSync(dir: string): void {
    const payload = encodeMarks(this.entries())
    const out = new Uint8Array(4 + payload.length)
    new DataView(out.buffer).setUint32(0, crc32(payload))
    out.set(payload, 4)
    const tmp = join(dir, `${FILE}.tmp`)
    const fd = openSync(tmp, 'w')
    try {
      writeSync(fd, out)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, join(dir, FILE))
    const d = openSync(dir, 'r')
    try {
      fsyncSync(d)
    } finally {
      closeSync(d)
    }
  }

  /** Loads `<dir>/purged-keys` (none: no marks); `CorruptReplicaStateError` when damaged. */
  loadSync(dir: string): void {
    const path = join(dir, FILE)
    let bytes: Buffer
    try {
      bytes = readFileSync(path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      this.replace([])
      return
    }
    const payload = bytes.subarray(4)
    if (bytes.length < 8 || bytes.readUInt32BE(0) !== crc32(payload))
      throw new CorruptReplicaStateError(path, 'purged keys file checksum mismatch')
    try {
      this.replace(decodeMarks(new BinaryReader(new Uint8Array(payload))))
    } catch (err) {
      throw new CorruptReplicaStateError(path, `purged keys file: ${(err as Error).message}`)
    }
  }
}

/** Encodes marks: `u32 n | n × (bytes key | u64 below)`. */
export function encodeMarks(entries: ReadonlyArray<readonly [Uint8Array, number]>): Uint8Array {
  const w = new BinaryWriter(16).u32(entries.length)
  for (const [k, b] of entries) w.bytes(k).u64(b)
  return w.finish().slice()
}

/** Reads marks written by `encodeMarks` from `r`. */
export function decodeMarks(r: BinaryReader): Array<[Uint8Array, number]> {
  const n = r.u32('purged keys')
  const out: Array<[Uint8Array, number]> = []
  for (let i = 0; i < n; i++) out.push([r.bytes('purged key').slice(), r.u64('purged below')])
  return out
}
