/**
 * The options, callbacks and counters of `ReplicaDriver` (driver.ts, which re-exports them).
 */
import type { Entry, NodeId, RaftConfig, Role, Snapshot } from '../raft/index.js'

/** A leadership or role change seen by this member. */
export interface LeaderChange {
  leader: NodeId | null
  role: Role
  term: number
}

/** Options of `ReplicaDriver`. */
export interface ReplicaDriverOptions {
  /** This member's id (its peer id). */
  id: NodeId
  /** Replica directory (see `RaftLogStorage`). */
  dir: string
  /** Bootstrap voters for a brand-new group (ignored once the directory has a configuration). */
  voters?: NodeId[]
  /**
   * Sends encoded bytes to a peer. Called only after the state those bytes promise is
   * durable. Must not throw (errors are counted and the message dropped: Raft retries).
   */
  send: (to: NodeId, bytes: Uint8Array) => void
  /**
   * The state machine: applies committed entries, in index order, awaited before the next
   * batch. Gets every committed entry: `normal` ones (a leader's no-op has empty data) and
   * `confChange` ones (membership already updated by the driver). After a restart entries
   * after `applied` are delivered again, possibly some the state machine had already
   * applied: deduplicate by index. A throw stops the driver (see `onError`).
   */
  apply: (entries: Entry[]) => void | Promise<void>
  /**
   * Pipelined apply: the next batch does not wait for `apply`'s promise (batches still start
   * in index order, and `apply` must update its state synchronously before its first await),
   * and proposals resolve once their entry is committed and handed to `apply`. For state
   * machines whose durability rests on the raft log (rebuilt from it after a crash). Default
   * false: proposals resolve after `apply`'s promise.
   */
  pipelineApply?: boolean
  /** Installs a snapshot's data received from the leader (before later entries are applied). */
  restore?: (snapshot: Snapshot) => void | Promise<void>
  /** Index the state machine durably applied (default 0: replay everything retained). */
  applied?: number
  /**
   * Bytes of applied raft entries kept in memory for followers that lag (default 16 MiB);
   * older ones are read back from the raft log on disk when a follower needs them. Entries
   * not yet applied always stay in memory.
   */
  memoryBytes?: number
  /** Segment size of the raft commit log (default `DEFAULT_RAFT_SEGMENT_BYTES`, 16 MiB). */
  segmentBytes?: number
  /**
   * Most milliseconds a leader holds an append that carries nothing but a new commit index
   * for a caught-up follower (default 10; 0 sends it at once). The next append to that
   * follower carries the commit instead, so under pipelined traffic, and for a publisher
   * waiting on each acknowledgement in turn, these messages (and the follower's answers)
   * are mostly never sent. Each held append leaves `commitDelayMs` after it was first held
   * (`commit-hold.ts`). It never delays a commit or an acknowledgement, only (briefly) what
   * followers apply; followers serve no reads.
   */
  commitDelayMs?: number
  /** Milliseconds per Raft tick (default 50). */
  tickMs?: number
  /** Ticks before a follower campaigns (default 10, randomized in [n, 2n)). */
  electionTick?: number
  /**
   * Ticks between a leader's heartbeats (default a third of `electionTick`, at least 1:
   * 3 ticks, 150 ms, with the defaults; see `defaultHeartbeatTick`).
   */
  heartbeatTick?: number
  /** Randomness for election jitter (default `Math.random`). */
  rand?: () => number
  /** Most proposals queued or awaiting commit; more are rejected with `OverloadedError` (default 4096). */
  maxPending?: number
  /** Most payloads per `proposeBatch` (default 1024). */
  maxBatch?: number
  /** Other core knobs (message size, pipelining window, pre-vote, check-quorum). */
  raft?: Pick<RaftConfig, 'maxSizePerMsg' | 'maxInflightMsgs' | 'preVote' | 'checkQuorum'>
  /** Called on every leader or role change seen by this member. Must not throw. */
  onLeaderChange?: (change: LeaderChange) => void
  /**
   * Called once with `fatal` true when the driver stops on an error (disk failure, `apply`
   * threw); the layers above also report errors that stopped nothing through it (`fatal`
   * not set).
   */
  onError?: (err: unknown, fatal?: boolean) => void
  /** Clock for log record timestamps (default `Date.now`). */
  now?: () => number
}

/** Counters since start, for monitoring and tests. */
export interface DriverStats {
  received: number
  /** Inbound bytes that did not decode as a Raft message. */
  malformed: number
  /** Inbound messages not from `from`, not addressed to us, or proposals from peers. */
  misrouted: number
  /** Inbound messages the core threw on (should stay 0). */
  stepErrors: number
  sent: number
  sendErrors: number
  /** Commit-only appends held back and then dropped because a later append carried the commit. */
  commitOnlySaved: number
  readies: number
  /** Proposals accepted on the leader, and the `proposeBatch` calls that carried them. */
  proposals: number
  batches: number
}
