/**
 * `plexus/relay`: the thin client (`connectRelay`, over TCP or WebSocket, optionally
 * reconnecting), the server side (`startRelay`, used by the node; `stats()` shows its bounded
 * buffers; `wsPort` adds the WebSocket transport) and the wire protocol constants (see
 * docs/relay-protocol.md). Browsers get `relay/browser/index.ts`, bundled.
 */
export {
  type ConnectRelayOptions,
  connectRelay,
  parseRelayAddress,
  type RelayClient,
  type RelayConsumer,
  type RelayJoinOptions,
  type RelayMembership,
  type RelayRequestManyOptions,
  type RelayRequestOptions,
  type RelayStreams,
  type RelaySubscription,
  type RelayTunnel,
  type RelayTunnelOptions,
  RelayUnavailableError,
} from './client/client.js'
export { type RelayKvOptions, WATCH_QUEUE } from './client/client-kv.js'
export type { ReconnectOptions } from './client/client-reconnect.js'
export type { RelayStoredMessage } from './client/client-streams.js'
export {
  RELAY_LIMITS,
  type RelayServer,
  type RelayServerOptions,
  type RelayStats,
  startRelay,
} from './server/server.js'
export { CONSUMER_LIMITS, type ConsumerBridgeStats } from './server/server-consumer.js'
export { SUB_LIMITS } from './server/server-pubsub.js'
export { relayTunnelWindow, type TunnelBridgeStats } from './server/server-tunnels.js'
export {
  CONNECTION_ID,
  FRAME_OVERHEAD,
  type Frame,
  FrameDecoder,
  HEADER_SIZE,
  JoinFlag,
  KeyForm,
  MAGIC,
  MIN_FRAME_LENGTH,
  Op,
  opcodeName,
  PROTOCOL_VERSION,
  RESERVED_OPCODES,
  SUPPORTED_VERSIONS,
  writeFrame,
} from './wire/protocol.js'
export { AckMode, CloseKind, MsgFlag } from './wire/protocol-ext.js'
export { ManyKind } from './wire/protocol-requests.js'
export { FromKind } from './wire/protocol-streams.js'
