/**
 * The replication layer of durable streams: Raft storage on the commit log and the driver
 * loop around the Raft core. Transport-agnostic (bytes in, bytes out). See
 * docs/replication.md.
 */
export {
  type DriverStats,
  type LeaderChange,
  type ProposalStages,
  ReplicaDriver,
  type ReplicaDriverOptions,
} from './driver.js'
export {
  CorruptReplicaStateError,
  EntryOverwrittenError,
  LeadershipLostError,
  NotLeaderError,
} from './errors.js'
export { resetReplicaLog } from './reset.js'
export {
  DEFAULT_RAFT_SEGMENT_BYTES,
  type PersistedConfState,
  RaftLogStorage,
  type RaftLogStorageOptions,
} from './storage.js'
export { MAX_RAFT_FRAME, RaftTransport, type RaftTransportHost } from './transport.js'
