/**
 * Plexus public API: interfaces, factory functions and error classes, all exported by name.
 */
// First: on a Node.js too old for libp2p, fail with one clear line before libp2p loads.
import './runtime-guard.js'

export {
  CAPABILITY_OPS,
  type CapabilityGrant,
  type CapabilityOp,
  issueCapability,
} from './cluster/capability.js'
export {
  AbortedError,
  ConsumerNotFoundError,
  DataDirInUseError,
  InvalidArgumentError,
  LeadershipLostError,
  MemberLostError,
  NoMembersError,
  NotEnoughReplicasError,
  OverloadedError,
  PlexusError,
  RemoteError,
  StreamNotFoundError,
  TimeoutError,
  TunnelClosedError,
  UnauthorizedError,
} from './errors.js'
export { createNode } from './node.js'
export type {
  BroadcastContext,
  ConsumeFrom,
  ConsumeOptions,
  Consumer,
  ConsumerInfo,
  ConsumerSummary,
  FetchOptions,
  FlushOptions,
  JoinOptions,
  Limits,
  Logger,
  MemberRoles,
  MemberStatus,
  Membership,
  Message,
  MessageData,
  NodeCredentials,
  NodeOptions,
  NodeStatus,
  PartitionInfo,
  PinoCompatibleLogger,
  PlexusNode,
  PublishAck,
  PublishOptions,
  RequestContext,
  RequestOptions,
  StreamAccess,
  StreamCallOptions,
  StreamConfig,
  StreamInfo,
  StreamMessage,
  StreamRetention,
  Streams,
  StreamUpdate,
  SubscribeOptions,
  Subscription,
  Tunnel,
  TunnelOptions,
} from './types.js'
export { generateKey } from './util/keys.js'
