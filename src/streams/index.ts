/**
 * Durable streams, replica side: one stream partition replicated by Raft, applied to a
 * partition commit log at dense offsets. Transport-agnostic. See docs/replication.md,
 * "Partition replicas".
 */
export { POSITION_HEADER, RESERVED_HEADER_PREFIX } from './batch.js'
export { PartitionReplica } from './partition.js'
export type {
  PartitionMessage,
  PartitionRecovery,
  PartitionReplicaOptions,
  PublishMessage,
  PublishOptions,
  PublishResult,
} from './types.js'
