/**
 * `KeyIndex`: per partition replica, in memory, the offset of the latest live record of each
 * key (a record with a key and a non-empty value; a keyed record with an empty value is a
 * tombstone, as compaction treats it, and removes the key). Updated as entries are applied,
 * rebuilt from the partition log on start and after a snapshot catch-up (one read of the
 * log). It serves `streams.last` and the leader's `expectedRevision` check (partition-cas.ts).
 *
 * Bounded: at most `maxKeys` keys, those written most recently (a `Map` kept in offset order:
 * a write moves its key to the end, the oldest is dropped first); about 100 bytes plus the
 * key per entry. Once a key was dropped, a key missing from the index is "unknown", not
 * "absent": `check` fails rather than guess. Purges drop the keys whose record they remove.
 */
import type { Log, LogRecord } from '../../log/index.js'

/** The `expectedRevision` of a publish meaning "the key has no live record". */
export const ABSENT = -1

/** Outcome of an expected-revision check: undefined when it holds, else the current revision. */
export type RevisionCheck = undefined | { current: number | undefined }

/** The latest live record of each key of a partition; see the module doc. */
export class KeyIndex {
  private readonly map = new Map<string, number>()
  /** Where eviction goes on (see `record`). */
  private cursor: MapIterator<string> | undefined
  /** Keys dropped for the bound since start (on this replica: reads say so when a key misses). */
  evicted = 0

  constructor(readonly maxKeys: number) {}

  /** Keys held. */
  get size(): number {
    return this.map.size
  }

  /** The offset of the latest live record of `key`, or undefined. */
  get(key: Uint8Array): number | undefined {
    return this.map.get(keyText(key))
  }

  /** Applies a stored record (offsets increase from call to call). */
  record(key: Uint8Array, offset: number, tombstone: boolean): void {
    const k = keyText(key)
    this.map.delete(k)
    if (tombstone) return
    this.map.set(k, offset)
    if (this.map.size > this.maxKeys) {
      // A live iterator kept across calls: every live key lies after it (a rewritten key moves
      // to the end), so its next key is the oldest, and deleted slots are skipped once rather
      // than on every eviction (iterating from the start made each eviction O(evicted)).
      let next = (this.cursor ??= this.map.keys()).next()
      if (next.done) next = (this.cursor = this.map.keys()).next()
      this.map.delete(next.value as string)
      this.evicted++
    }
  }

  /**
   * Checks `expected` (`ABSENT` or an offset) against `key`'s latest live record. A key
   * missing after keys were dropped for the bound cannot be told absent: the check fails,
   * current unknown.
   */
  check(key: Uint8Array, expected: number): RevisionCheck {
    const current = this.get(key)
    if (current === undefined && this.evicted > 0) return { current: undefined }
    const c = current ?? ABSENT
    return c === expected ? undefined : { current: c }
  }

  /** Drops the keys whose latest record lies below `offset` (a purge). */
  dropBelow(offset: number): void {
    for (const [k, o] of this.map) {
      if (o >= offset) break
      this.map.delete(k)
    }
  }

  /** Drops `key` when its latest live record lies below `offset` (a purge by key). */
  dropKeyBelow(key: Uint8Array, offset: number): void {
    const k = keyText(key)
    const o = this.map.get(k)
    if (o !== undefined && o < offset) this.map.delete(k)
  }

  /** Keys held, as bytes, in the order of their latest record (oldest first). */
  *keys(): IterableIterator<Uint8Array> {
    for (const k of this.map.keys()) yield Buffer.from(k, 'latin1')
  }

  /** Empties the index. */
  clear(): void {
    this.map.clear()
    this.cursor = undefined
    this.evicted = 0
  }
}

/** Applies a read record to `index` (rebuilds). */
export function indexRecord(index: KeyIndex, r: LogRecord): void {
  if (r.key !== undefined) index.record(r.key, r.offset, r.value.length === 0)
}

/**
 * Refills `index` from the whole partition log, in offset order (start, snapshot restore),
 * leaving out the records `hidden` says were purged by key (purged-keys.ts).
 */
export async function rebuildKeyIndex(
  log: Log,
  index: KeyIndex,
  hidden?: (key: Uint8Array | undefined, offset: number) => boolean,
): Promise<void> {
  index.clear()
  let offset = log.earliestOffset()
  const last = log.latestOffset()
  while (offset <= last) {
    const recs = await log.read(offset, { maxBytes: 4 << 20 })
    if (recs.length === 0) break
    for (const r of recs) if (hidden === undefined || !hidden(r.key, r.offset)) indexRecord(index, r)
    offset = recs[recs.length - 1]!.offset + 1
  }
}

/** A key's bytes as a map key (latin1: one character per byte). */
export function keyText(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1')
}
