/**
 * Raft log compaction of a partition group. The partition log is the state machine and holds
 * every committed message, so a partition snapshot needs no copy of the data: it records only
 * the partition log's next offset at the snapshot's raft index. A replica that installs one
 * copies the records it lacks from another replica (partition-copy.ts).
 *
 * Snapshot data layout: `u8 version (1) | u64 nextOffset`, or with the partition's purges by
 * key (purged-keys.ts) `u8 version (2) | u64 nextOffset | marks` (version 1 when there are none,
 * so older replicas read it).
 *
 * `CompactionPlanner` decides where to compact: at a checkpoint (raft index, next offset) taken
 * after an apply, once `compactBytes` of entries were applied since the last snapshot, keeping
 * the newest `retainBytes` of entries in the raft log so that followers slightly behind are
 * sent entries rather than a snapshot.
 */
import { BinaryReader, BinaryWriter, DecodeError } from '../../util/binary.js'
import { decodeMarks, encodeMarks } from './purged-keys.js'

const SNAPSHOT_VERSION = 1
/** Checkpoints kept (one per `CHECKPOINT_BYTES` applied at most). */
const MAX_CHECKPOINTS = 1024
const CHECKPOINT_BYTES = 256 * 1024

/** Encodes the snapshot data of a partition group (with its purges by key, if any). */
export function encodePartitionSnapshot(
  nextOffset: number,
  purgedKeys: ReadonlyArray<readonly [Uint8Array, number]> = [],
): Uint8Array {
  if (purgedKeys.length === 0)
    return new BinaryWriter(16).u8(SNAPSHOT_VERSION).u64(nextOffset).finish().slice()
  return new BinaryWriter(64)
    .u8(SNAPSHOT_VERSION + 1)
    .u64(nextOffset)
    .raw(encodeMarks(purgedKeys))
    .finish()
    .slice()
}

/** Decodes the snapshot data of a partition group; throws `DecodeError` on malformed bytes. */
export function decodePartitionSnapshot(data: Uint8Array): {
  nextOffset: number
  purgedKeys: Array<[Uint8Array, number]>
} {
  const r = new BinaryReader(data)
  const v = r.u8('partition snapshot version')
  if (v !== SNAPSHOT_VERSION && v !== SNAPSHOT_VERSION + 1)
    throw new DecodeError(`unknown partition snapshot version ${v}`)
  const nextOffset = r.u64('nextOffset')
  const purgedKeys = v === SNAPSHOT_VERSION ? [] : decodeMarks(r)
  r.end('partition snapshot')
  return { nextOffset, purgedKeys }
}

/** A point the partition log reached: raft `index` applied, `next` offset, `bytes` applied so far. */
export interface Checkpoint {
  index: number
  next: number
  bytes: number
}

/**
 * Where to compact a partition's raft log (pure bookkeeping: no I/O). Ordering: checkpoints
 * are recorded in apply order; `due` only returns checkpoints whose records were handed to
 * the partition log (the caller makes them durable before compacting).
 */
export class CompactionPlanner {
  private readonly points: Checkpoint[] = []
  private total = 0
  private compactedBytes = 0

  constructor(
    private readonly compactBytes: number,
    private readonly retainBytes: number,
  ) {}

  /** Entries up to raft `index` were applied (`bytes` of entry data); the next offset is `next`. */
  applied(index: number, next: number, bytes: number): void {
    this.total += bytes
    const last = this.points[this.points.length - 1]
    if (last !== undefined && this.total - last.bytes < CHECKPOINT_BYTES) return
    if (this.points.length >= MAX_CHECKPOINTS) this.points.shift()
    this.points.push({ index, next, bytes: this.total })
  }

  /**
   * The checkpoint to compact at now, if compaction is due: the newest one at least
   * `retainBytes` behind the last apply, past the current snapshot (`snapshotIndex`) and not
   * before the last configuration change (`confIndex`: a snapshot carries the configuration
   * as of its index).
   */
  due(snapshotIndex: number, confIndex: number): Checkpoint | undefined {
    if (this.total - this.compactedBytes < this.compactBytes + this.retainBytes) return undefined
    const cut = this.total - this.retainBytes
    for (let i = this.points.length - 1; i >= 0; i--) {
      const p = this.points[i]!
      if (p.bytes > cut) continue
      if (p.index <= snapshotIndex || p.index < confIndex) return undefined
      return p
    }
    return undefined
  }

  /** The raft log was compacted at `p`: earlier checkpoints are dropped. */
  compacted(p: Checkpoint): void {
    this.compactedBytes = p.bytes
    while (this.points.length > 0 && this.points[0]!.index <= p.index) this.points.shift()
  }

  /** A snapshot was installed at raft `index` (next offset `next`): start over from it. */
  reset(index: number, next: number): void {
    this.points.length = 0
    this.compactedBytes = this.total
    this.points.push({ index, next, bytes: this.total })
  }
}
