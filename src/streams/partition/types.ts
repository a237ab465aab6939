/**
 * Public types of a partition replica: messages in and out, options, recovery report.
 */

import type { NodeId } from '../../raft/index.js'
import type { ReplicaDriverOptions } from '../../replication/index.js'
import type { Logger } from '../../types.js'
import type { CopySource } from './partition-copy.js'

/** A message given to `publish`. Strings are sent as UTF-8. */
export interface PublishMessage {
  key?: Uint8Array | string
  value: Uint8Array | string
  /** Header names starting with `px.` are reserved. */
  headers?: Record<string, Uint8Array>
  /** Milliseconds since the epoch; default: the leader's clock when `publish` is called. */
  timestamp?: number
  /** The topic it was published on (stored with it, returned by `read`). */
  topic?: string
  /**
   * Publish id: a message whose id was stored within the partition's duplicate window is
   * not stored again (its original offset is returned, `duplicate` set).
   */
  msgId?: string
  /**
   * Conditional append (partition-cas.ts): stored only when the key's latest live record is
   * at this offset, or with -1 when the key has none; else `WrongRevisionError`. Needs a key
   * and a call of one message.
   */
  expectedRevision?: number
}

/** Options of `publish`. */
export interface PublishOptions {
  /**
   * `'all'`: resolve once committed (fsynced on a majority of the replicas) and applied to
   * this leader's partition log; survives the loss of any minority of replicas.
   *
   * `'leader'`: resolve once the entry is fsynced in this leader's raft log while it still
   * leads (no follower need have it; nothing is visible to readers yet), with the offsets it
   * will get when applied. Guarantees: survives a crash and restart of the leader process or
   * machine (the entry is on its disk; if it stays or becomes leader again, or a new leader
   * has the entry, it commits with exactly these offsets). Not guaranteed: the entry is lost
   * if the leader's disk is lost before a follower got it, and it is truncated (never
   * committed, its offsets later given to other messages) if leadership passes to a replica
   * that never received it (leader cut off or crashed before replicating). Leadership lost
   * before the fsync rejects with `LeadershipLostError` (outcome unknown).
   */
  ack: 'leader' | 'all'
}

/**
 * Offsets given to the messages of one `publish` call, in call order: consecutive unless
 * some were duplicates (`msgId` seen within the window: they report their original offset).
 */
export interface PublishResult {
  firstOffset: number
  lastOffset: number
  /** Set when every message of the call was a duplicate (nothing stored). */
  duplicate?: true
}

/** A committed message read back. Bytes are views into a buffer owned by the caller. */
export interface PartitionMessage {
  offset: number
  timestamp: number
  /** The topic it was published on ('' when none was given). */
  topic: string
  key: Uint8Array | undefined
  value: Uint8Array
  headers: Record<string, Uint8Array> | undefined
}

/** Options of `PartitionReplica`. */
export interface PartitionReplicaOptions {
  /** This member's id (its peer id). */
  id: NodeId
  /** Replica directory: `raft/` and `data/` are created inside. */
  dir: string
  /** Bootstrap voters (ignored once the raft directory holds a configuration). */
  voters: NodeId[]
  /** Sends bytes to a peer; must not throw (see `ReplicaDriverOptions.send`). */
  send: (to: NodeId, bytes: Uint8Array) => void
  /** Most messages queued or awaiting commit in `publish`; more get `OverloadedError` (65,536). */
  maxPendingMessages?: number
  /** Most messages per raft entry (default 4,096; one publish call is never split). */
  maxBatchMessages?: number
  /** Most encoded bytes per raft entry (default 1 MiB; one publish call is never split). */
  maxBatchBytes?: number
  /** Retention of the partition log (whole old segments; consumers below it continue from the earliest). */
  retention?: { maxAge?: number; maxBytes?: number; maxMessages?: number }
  /** Keep only the latest message per key in sealed segments (offsets then have gaps). */
  compact?: boolean
  /** How long message ids are remembered for de-duplication (ms, default 2 min). */
  duplicateWindowMs?: number
  /** Scan the whole partition log on start; rebuild it from the raft log if it is corrupt. */
  verifyOnStart?: boolean
  /** Segment size of the partition log (default: the commit log's default). */
  segmentBytes?: number
  /** Clock for default timestamps (default `Date.now`). */
  now?: () => number
  /**
   * Copies committed records from another replica (partition-copy.ts): how a replica whose
   * raft log was compacted past its partition log catches up. Without it such a replica
   * cannot start (in-process tests may pass a direct reader).
   */
  copy?: CopySource
  /** Where a catch-up by copy (start, finish) is logged; default silent. */
  logger?: Logger
  /** Most keys the key index holds (`DEFAULT_KEY_INDEX_MAX_KEYS`; key-index.ts). */
  keyIndexMaxKeys?: number
  /** Most purges by key remembered (`DEFAULT_PURGED_KEYS_MAX`; purged-keys.ts). */
  purgedKeysMax?: number
  /** Compact the raft log once this many bytes of entries were applied since the last snapshot (32 MiB). */
  raftCompactBytes?: number
  /** Bytes of the newest applied entries the raft log keeps at compaction (8 MiB). */
  raftRetainBytes?: number
  /** Passed to the driver (ticks, election, randomness, raft knobs, callbacks). */
  driver?: Omit<ReplicaDriverOptions, 'id' | 'dir' | 'voters' | 'send' | 'apply' | 'restore' | 'applied'>
}

/** What `start` found and repaired in the partition log. */
export interface PartitionRecovery {
  /** The raft index the partition log had applied (0: none). */
  appliedIndex: number
  /** Records of a half-applied batch removed from the tail (re-applied from the raft log). */
  droppedPartialRecords: number
  /** Why the partition log was discarded and rebuilt from the raft log, if it was. */
  rebuilt: string | undefined
}
