/**
 * `plexus/relay`: the thin client (`connectRelay`), the server side (`startRelay`, used by
 * the node) and the wire protocol constants and codecs (see docs/relay-protocol.md).
 */
export {
  type ConnectRelayOptions,
  connectRelay,
  parseRelayAddress,
  type RelayClient,
  type RelayJoinOptions,
  type RelayMembership,
  type RelayRequestOptions,
  RelayUnavailableError,
} from './client.js'
export {
  CONNECTION_ID,
  FRAME_OVERHEAD,
  type Frame,
  FrameDecoder,
  HEADER_SIZE,
  KeyForm,
  MAGIC,
  MIN_FRAME_LENGTH,
  Op,
  opcodeName,
  PROTOCOL_VERSION,
  RESERVED_OPCODES,
  writeFrame,
} from './protocol.js'
export { RELAY_LIMITS, type RelayServer, type RelayServerOptions, startRelay } from './server.js'
