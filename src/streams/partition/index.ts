/**
 * Durable streams, replica side: one stream partition replicated by Raft, applied to a
 * partition commit log at dense offsets. Transport-agnostic. See docs/replication.md,
 * "Partition replicas".
 */

export {
  type CreateStream,
  type DeleteStream,
  decodeCommand,
  encodeCommand,
  MAX_PARTITIONS,
  MAX_REMEMBERED_REQUESTS,
  MAX_REPLICAS,
  type MetaCommand,
  type MetaResult,
  metaResultError,
  type RetentionPolicy,
  StreamCatalog,
  type StreamConfig,
  type StreamMeta,
  type StreamSpec,
  sameSpec,
  subjectsOverlap,
  type UpdatePlacement,
  validateStreamConfig,
} from '../meta/metadata.js'
export { placeStream } from '../meta/placement.js'
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
