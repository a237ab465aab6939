/**
 * The state machine side of `PartitionReplica`: turning committed raft entries into partition
 * log records at dense offsets, and recovering the partition log on start (repairing a
 * half-applied tail, or rebuilding it from scratch when it cannot be trusted). See
 * docs/replication.md, "Partition replicas".
 */
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import {
  CorruptLogError,
  type Log,
  openLog,
  type ReplicaRecord,
  type RetentionOptions,
} from '../../log/index.js'
import type { Entry } from '../../raft/index.js'
import { decodePurgeEntry } from '../host/purge.js'
import {
  type BatchMessage,
  decodeBatch,
  decodePosition,
  encodePosition,
  MSG_ID_HEADER,
  POSITION_HEADER,
} from './batch.js'
import type { DedupeWindow } from './dedupe.js'

/** How often a partition log with retention or compaction is maintained (ms). */
export const MAINTENANCE_MS = 10_000

const idDecoder = new TextDecoder()
const idText = (b: Uint8Array) => idDecoder.decode(b)

import type { PartitionRecovery } from './types.js'

/** What `entriesToRecords` derived from a run of committed entries. */
export interface AppliedRun {
  /** Records to append to the partition log, at dense offsets. */
  records: ReplicaRecord[]
  /** Offset the next applied message gets. */
  nextOffset: number
  /** Raft index of the last entry of the run (or the previous applied index). */
  appliedIndex: number
  /**
   * `[raft index, offsets]` of each data entry when spans were asked for: one offset per
   * message of the entry, negative (`-1 - original offset`) for a duplicate not stored.
   */
  spans: Array<[number, number[]]>
  /** Entries whose payload did not decode (skipped identically on every replica). */
  skipped: number
  /** The start offset purge entries of the run ask for (purge.ts; -1: none). */
  purgeTo: number
  /** Purges by key of the run, in order: `key`'s messages below `below` (purge.ts). */
  keyPurges: Array<{ key: Uint8Array; below: number }>
}

/**
 * Assigns offsets to the messages of committed `entries` (index order, possibly re-delivered:
 * indexes at or below `appliedIndex` are skipped), starting at `nextOffset`. No-ops and conf
 * changes only advance the applied index; each message carries its `px.ri` position header.
 * With `trackSpans`, the first offset of every data entry is reported.
 */
export function entriesToRecords(
  entries: Entry[],
  appliedIndex: number,
  nextOffset: number,
  trackSpans: boolean,
  dedupe?: DedupeWindow,
): AppliedRun {
  const records: ReplicaRecord[] = []
  let offset = nextOffset
  let last = appliedIndex
  let skipped = 0
  let purgeTo = -1
  const keyPurges: AppliedRun['keyPurges'] = []
  const spans: Array<[number, number[]]> = []
  for (const e of entries) {
    if (e.index <= last) continue // re-delivered after a restart: already in the partition log
    last = e.index
    if (e.type !== 'normal' || e.data.length === 0) continue // conf change, leader no-op
    const purge = decodePurgeEntry(e.data)
    if (purge !== undefined) {
      // Everything applied so far is below `offset`: the same mark on every replica.
      const below = Math.min(purge.before, offset)
      if (purge.key !== undefined) keyPurges.push({ key: purge.key, below })
      else purgeTo = Math.max(purgeTo, below)
      continue
    }
    let batch: BatchMessage[]
    try {
      batch = decodeBatch(e.data)
    } catch {
      skipped++ // same bytes on every replica: skipped everywhere alike
      continue
    }
    // Messages whose id was stored within the window are dropped (decided from the log
    // alone: identical on every replica); positions count the stored ones.
    const offsets: number[] = []
    const kept: BatchMessage[] = []
    for (const m of batch) {
      const id = m.headers?.[MSG_ID_HEADER]
      const key = id === undefined ? undefined : idText(id)
      const dup = key === undefined || dedupe === undefined ? undefined : dedupe.duplicateOf(key, m.timestamp)
      if (dup !== undefined) {
        offsets.push(-1 - dup)
        continue
      }
      if (key !== undefined) dedupe?.record(key, m.timestamp, offset + kept.length)
      offsets.push(offset + kept.length)
      kept.push(m)
    }
    if (trackSpans) spans.push([e.index, offsets])
    for (let pos = 0; pos < kept.length; pos++) {
      const m = kept[pos]!
      const headers = {
        ...m.headers,
        [POSITION_HEADER]: encodePosition({ index: e.index, pos, count: kept.length }),
      }
      records.push({
        offset: offset++,
        timestamp: m.timestamp,
        term: e.term,
        key: m.key,
        value: m.value,
        headers,
      })
    }
  }
  return { records, nextOffset: offset, appliedIndex: last, spans, skipped, purgeTo, keyPurges }
}

/**
 * Messages `entriesToRecords` assigns offsets to for entry `e` (0 for no-ops, conf changes,
 * bad payloads; NaN when it carries message ids, whose duplicates are known only on apply).
 */
export function dataMessages(e: Entry): number {
  if (e.type !== 'normal' || e.data.length === 0) return 0
  try {
    const batch = decodeBatch(e.data)
    // Messages with ids may be duplicates: the count is known only once applied.
    if (batch.some((m) => m.headers?.[MSG_ID_HEADER] !== undefined)) return Number.NaN
    return batch.length
  } catch {
    return 0
  }
}

/** An opened partition log and the state machine position it holds. */
export interface OpenedPartitionLog {
  log: Log
  /** Last raft index fully applied to the log. */
  appliedIndex: number
  /** Offset the next applied message gets. */
  nextOffset: number
  /** What was found (and repaired or rebuilt). */
  report: PartitionRecovery
}

/**
 * Opens the partition log in `<dir>/data`, derives the applied raft index from its last
 * record, and rebuilds it empty when it cannot be trusted (corrupt, or contradicting what
 * the state machine writes). Other errors are thrown.
 */
export async function openPartitionLog(opts: {
  dir: string
  segmentBytes?: number
  verifyOnStart?: boolean
  retention?: RetentionOptions
  compact?: boolean
}): Promise<OpenedPartitionLog> {
  const dir = join(opts.dir, 'data')
  // Retention and compaction run on each replica alike: segments roll by size only, so every
  // replica holds the same segment boundaries and trims the same whole old segments.
  const maintained = opts.compact === true || Object.keys(opts.retention ?? {}).length > 0
  const open = () =>
    openLog({
      dir,
      fsync: 'never',
      segmentBytes: opts.segmentBytes,
      retention: opts.retention,
      compact: opts.compact,
      maintenanceIntervalMs: maintained ? MAINTENANCE_MS : 0,
    })
  let log: Log | undefined
  let rebuilt: string | undefined
  try {
    log = await open()
    if (opts.verifyOnStart) await verify(log)
    const tail = await recoverTail(log)
    return {
      log,
      appliedIndex: tail.applied,
      nextOffset: tail.next,
      report: { appliedIndex: tail.applied, droppedPartialRecords: tail.dropped, rebuilt },
    }
  } catch (err) {
    if (!(err instanceof CorruptLogError) && !(err instanceof TrustError)) throw err
    rebuilt = err.message
  }
  await log?.close().catch(() => {})
  await rm(dir, { recursive: true, force: true })
  log = await open()
  return {
    log,
    appliedIndex: 0,
    nextOffset: 0,
    report: { appliedIndex: 0, droppedPartialRecords: 0, rebuilt },
  }
}

/** Reads the last record's position; drops a half-applied batch so it is re-applied whole. */
async function recoverTail(log: Log): Promise<{ applied: number; next: number; dropped: number }> {
  const lastOffset = log.latestOffset()
  if (lastOffset < 0) return { applied: 0, next: 0, dropped: 0 }
  const [rec] = await log.read(lastOffset, { maxRecords: 1, includePurged: true })
  const p = rec?.offset === lastOffset ? decodePosition(rec.headers?.[POSITION_HEADER]) : undefined
  if (p === undefined)
    throw new TrustError(`last partition record ${lastOffset} has no valid position header`)
  let dropped = 0
  let applied = p.index
  if (p.pos !== p.count - 1) {
    dropped = p.pos + 1
    await log.truncateAfter(lastOffset - dropped)
    applied = p.index - 1
  }
  return { applied, next: log.latestOffset() + 1, dropped }
}

/** The partition log's content contradicts what the state machine writes. */
class TrustError extends Error {}

/** Reads the whole log once (every record's CRC is checked); throws `CorruptLogError`. */
async function verify(log: Log): Promise<void> {
  let next = log.earliestOffset()
  const end = log.latestOffset()
  while (next <= end) {
    const recs = await log.read(next, { maxBytes: 4 << 20 })
    if (recs.length === 0) break
    for (const r of recs)
      if (r.offset !== next++) throw new TrustError(`partition log offsets not dense at ${r.offset}`)
  }
}

/**
 * Refills a duplicate window from the partition log after a restart: the ids of stored
 * messages from one window (plus a minute of clock slack) before the last one, in offset
 * order — the state the window had when those records were applied.
 */
export async function rebuildDedupe(log: Log, window: DedupeWindow): Promise<void> {
  const last = log.latestOffset()
  if (last < 0) return
  const [tail] = await log.read(last, { maxRecords: 1 })
  if (tail === undefined) return
  let offset = (await log.offsetForTime(Math.max(0, tail.timestamp - window.windowMs - 60_000))) ?? last + 1
  while (offset <= last) {
    const recs = await log.read(offset, { maxBytes: 4 << 20 })
    if (recs.length === 0) break
    for (const r of recs) {
      const id = r.headers?.[MSG_ID_HEADER]
      if (id !== undefined) window.record(idText(id), r.timestamp, r.offset)
    }
    offset = recs[recs.length - 1]!.offset + 1
  }
}
