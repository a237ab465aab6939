/**
 * Public types of the thin relay client (`client.ts`): its options, the `RelayClient`
 * interface, `RelayUnavailableError`, and the argument checks it shares.
 */
import { InvalidArgumentError, PlexusError } from '../../src/errors.js'
import type {
  BroadcastContext,
  ConsumeOptions,
  FlushOptions,
  KvBucket,
  Limits,
  ManyReply,
  Message,
  NodeStatus,
  PublishAck,
  PublishOptions,
  RequestContext,
  RequestHandlerResult,
  RequestManyOptions,
  RequestReply,
  SubscribeOptions,
} from '../../src/types.js'
import { checkHeaders as checkLibraryHeaders, checkPositiveInt, describe } from '../../src/util/validate.js'
import type { RelayConsumer } from './client-consumer.js'
import type { RelayKvOptions } from './client-kv.js'
import type { RelayStreams } from './client-streams.js'
import type { RelaySubscription } from './client-subscription.js'
import type { RelayTunnel } from './client-tunnel.js'

/**
 * No relay could be reached (nothing listening, refused handshake, connection lost).
 * Requests in flight when the connection is lost may or may not have run.
 */
export class RelayUnavailableError extends PlexusError {}

/** Options of `flush` (the library's `node.flush` options). */
export type { FlushOptions }

/** Options of `connectRelay`. */
export interface ConnectRelayOptions {
  /** Relay host; default from `PLEXUS_RELAY`, else 127.0.0.1. */
  host?: string
  /** Relay port; default from `PLEXUS_RELAY`, else 55555. */
  port?: number
  /** `host:port` (wins over `host`/`port`). */
  address?: string
  /**
   * A WebSocket URL (`ws://127.0.0.1:55580/`): connect over the relay's WebSocket transport
   * instead of TCP (wins over the others). In a browser page it defaults to the page's host.
   */
  url?: string
  /** The WebSocket constructor for `url` (default: the global `WebSocket`). */
  WebSocket?: new (
    url: string,
  ) => WebSocket
  /**
   * Open a new connection whenever one is lost, with exponential backoff (`true`, or
   * `{ minDelay, maxDelay, onState }`: default 250 ms doubling to 10 s): subscriptions and
   * joins are restored; calls in flight fail (at-most-once). See `client-reconnect.ts`.
   */
  reconnect?:
    | boolean
    | {
        minDelay?: number
        maxDelay?: number
        onState?: (state: 'connected' | 'disconnected', err?: Error) => void
      }
  /** Aborts connecting (AbortedError). */
  signal?: AbortSignal
  /** Connect + handshake deadline in ms (default 5000; TimeoutError). */
  timeout?: number
  /** Name sent in HELLO (for the node's logs). */
  clientName?: string
}

/** Options of `RelayClient.request`. */
export interface RelayRequestOptions {
  /** Deadline in ms (default: the node's, 10 s); enforced by the node. */
  timeout?: number
  /** Aborting sends CANCEL and rejects with AbortedError. */
  signal?: AbortSignal
  /** Headers the member's handler sees as `ctx.headers` (the library's limits; REQUEST_HEADERS). */
  headers?: Record<string, string>
}

/** Options of `RelayClient.requestMany`: the library's (`maxReplies`, `timeout`, `signal`, `headers`). */
export type RelayRequestManyOptions = RequestManyOptions

/** Options of `RelayClient.join`. */
export interface RelayJoinOptions {
  /** The cluster key; it goes to the local node over loopback, never to the network. */
  key: string | Uint8Array
  /** Serves requests; may return `{ data, headers }` (the caller's reply then carries the headers). */
  onRequest?: (data: Uint8Array, ctx: RequestContext) => RequestHandlerResult | Promise<RequestHandlerResult>
  /** Called for each broadcast to the cluster; it counts against `limits.broadcasts` until it settles. */
  onBroadcast?: (data: Uint8Array, ctx: BroadcastContext) => void | Promise<void>
  /** Called with each tunnel a caller opens to this member. */
  onTunnel?: (tunnel: RelayTunnel, ctx: { from: string; cluster: string }) => void | Promise<void>
  limits?: Limits
}

/** Options of `RelayClient.tunnel`. */
export interface RelayTunnelOptions {
  /** Time for a member to accept (ms, default the node's 10 s), else TimeoutError. */
  timeout?: number
  /** Aborting gives up the setup (AbortedError). */
  signal?: AbortSignal
}

/** A cluster joined through the relay; `leave()` withdraws it (peers drop it at once). */
export interface RelayMembership {
  readonly cluster: string
  leave(): Promise<void>
}

/**
 * A connection to a node's relay. Calls may run concurrently; each resolves or rejects
 * exactly once. Closing (or losing the connection) fails pending calls and makes the node
 * leave every cluster joined through this client.
 */
export interface RelayClient {
  /** Peer id of the node behind the relay. */
  readonly id: string
  /** Network of that node. */
  readonly network: string
  /** Largest payload the node accepts (bytes). */
  readonly maxMessageSize: number
  /**
   * One request to one member of `cluster` (at-most-once); resolves to its reply, with
   * `headers` when the member's handler returned some.
   */
  request(cluster: string, data: Uint8Array | string, opts?: RelayRequestOptions): Promise<RequestReply>
  /**
   * As the library's `node.requestMany`: one request to each reachable member of `cluster`,
   * replies (or a member's `error`) yielded as they arrive; breaking out sends CANCEL.
   */
  requestMany(
    cluster: string,
    data: Uint8Array | string,
    opts?: RelayRequestManyOptions,
  ): AsyncIterable<ManyReply>
  /** Serve `cluster` from this process; resolves once the node announced the membership. */
  join(cluster: string, opts: RelayJoinOptions): Promise<RelayMembership>
  /** Sends `data` to every reachable member of `cluster`; resolves to how many were handed it. */
  broadcast(cluster: string, data: Uint8Array | string): Promise<number>
  /**
   * Subscribes to a topic pattern (`*`, `>`): with a handler, or as an AsyncIterable.
   * `await sub.ready` waits until the subscription is live across the network. With
   * `options.queue` it joins that queue group (one member gets each message; the library's
   * `SubscribeOptions.queue`); a reconnecting client subscribes again in the same group.
   */
  subscribe(pattern: string, options?: SubscribeOptions): RelaySubscription
  subscribe(
    pattern: string,
    handler: ((msg: Message) => void | Promise<void>) | undefined,
    options?: SubscribeOptions,
  ): RelaySubscription
  /**
   * As the library's `node.flush()`: resolves once every subscribe and unsubscribe made so
   * far (through this connection or the node) is acknowledged by every peer linked to the
   * node, or that peer is no longer linked. A publish made after this point by any of those
   * peers reaches the subscriptions made before the call. `TimeoutError` after `timeout`
   * (default 10 s), `AbortedError` on `signal`; a relay that predates FLUSH answers
   * `InvalidArgumentError` (unsupported opcode).
   */
  flush(opts?: FlushOptions): Promise<void>
  /** Publishes to every matching subscriber; with `ack`, resolves to where a stream stored it. */
  publish(topic: string, data: Uint8Array | string, opts?: PublishOptions): Promise<PublishAck | undefined>
  /** Opens a tunnel to one member of `cluster`, with credit flow control on the relay hop too. */
  tunnel(cluster: string, opts?: RelayTunnelOptions): Promise<RelayTunnel>
  /** Durable streams: create, info, delete, list (through the node). */
  readonly streams: RelayStreams
  /**
   * Reads a stream's committed messages (every partition unless `partition` is given),
   * with credit flow control on the relay hop. Errors (`StreamNotFoundError`, …) reject
   * `ready` and end the iteration.
   */
  consume(stream: string, options?: ConsumeOptions): RelayConsumer
  /**
   * A key-value bucket (the library's `KvBucket`), run by the node (`node.kv`); created in
   * `options.cluster` when absent. Without `cluster` the bucket must exist.
   */
  kv(bucket: string, options?: RelayKvOptions): Promise<KvBucket>
  /** The node's status snapshot. */
  status(): Promise<NodeStatus>
  /** Closes the connection; pending calls reject with AbortedError. Idempotent. */
  close(): Promise<void>
}

/** Parses `host:port` (IPv6 as `[::1]:55555`); throws InvalidArgumentError naming `field`. */
export function parseRelayAddress(value: unknown, field: string): { host: string; port: number } {
  const bad = () =>
    new InvalidArgumentError(`${field} must be host:port (e.g. 127.0.0.1:55555), got ${describe(value)}`)
  if (typeof value !== 'string') throw bad()
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value.trim())
  if (!m) throw bad()
  const port = Number(m[3])
  if (port < 1 || port > 65535) throw bad()
  return { host: (m[1] ?? m[2])!, port }
}

/** An InvalidArgumentError naming `field`, what it must be, and what it was. */
export function invalid(field: string, value: unknown, what = 'a non-empty string'): InvalidArgumentError {
  return new InvalidArgumentError(`${field} must be ${what}, got ${describe(value)}`)
}

/** A u32 option (0 when absent); throws InvalidArgumentError naming `field`. */
export function checkU32(v: unknown, field: string): number {
  const n = checkPositiveInt(v, field) ?? 0
  if (n > 0xffffffff) throw invalid(field, v, 'at most 4294967295')
  return n
}

/** Checks publish headers with the library's limits (`src/util/validate.ts`). */
export const checkHeaders = checkLibraryHeaders
