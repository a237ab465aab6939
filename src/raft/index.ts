/**
 * Raft consensus core as a pure state machine (etcd-io/raft style). See docs/raft.md for the
 * Ready/advance contract: persist `hardState` and `entries`, then send `messages`, then apply
 * `committedEntries`, then `advance`.
 */
export {
  decodeConfChange,
  decodeConfState,
  decodeEntry,
  decodeHardState,
  decodeMessage,
  encodeConfChange,
  encodeConfState,
  encodeEntry,
  encodeHardState,
  encodeMessage,
  MAX_NODE_ID_BYTES,
  RAFT_CODEC_VERSION,
} from './codec.js'
export type { RaftConfig } from './config.js'
export { MemoryStorage, type Storage } from './log.js'
export type { ProgressState } from './progress.js'
export { type ProposalResult, RawNode, type Status } from './rawnode.js'
export {
  CompactedError,
  type ConfChange,
  type ConfState,
  EntriesUnavailableError,
  type Entry,
  type EntryType,
  type HardState,
  MESSAGE_TYPES,
  type Message,
  type MessageType,
  message,
  type NodeId,
  ProposalDroppedError,
  RaftInvariantError,
  type Ready,
  type Role,
  type Snapshot,
  type SoftState,
} from './types.js'
