/**
 * The relay client for browsers (and other runtimes without `node:net`): the entry of the
 * one-file bundle `dist/browser/plexus-relay.js` (`npm run build`) and of the `browser`
 * condition of `plexus/relay`. Same client as in Node (`connectRelay`, the same method
 * names), over the relay's WebSocket transport: `connectRelay({ url: 'ws://127.0.0.1:PORT/' })`,
 * or with no options on a page the node serves itself; `reconnect: true` reconnects with
 * backoff. See docs/relay-protocol.md, "WebSocket transport".
 */
export {
  AbortedError,
  InvalidArgumentError,
  NoMembersError,
  NotEnoughReplicasError,
  OverloadedError,
  PlexusError,
  RemoteError,
  StreamNotFoundError,
  TimeoutError,
  TunnelClosedError,
  UnauthorizedError,
} from '../../src/errors.js'
export {
  type ConnectRelayOptions,
  connectRelay,
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
} from '../client/client.js'
