/**
 * Public interfaces of Plexus. Implementations stay internal; `index.ts` exports these
 * with the factory functions.
 */

/**
 * The logger a node writes to: the subset of pino's interface Plexus uses (a pino logger, or
 * any object with these methods, fits). Each call gets the structured fields first, then a
 * one-line message. With `child` (pino's), each layer logs through `child({ component })`;
 * without it the node adds the `component` field itself. See docs/logging.md for the events.
 */
export interface Logger {
  error(fields: Record<string, unknown>, msg: string): void
  warn(fields: Record<string, unknown>, msg: string): void
  info(fields: Record<string, unknown>, msg: string): void
  debug(fields: Record<string, unknown>, msg: string): void
  /** A logger adding `bindings` to every record (optional; pino's `child`). */
  child?(bindings: Record<string, unknown>): Logger
}

/** The `logger` option's type under the name SPEC uses: any pino-compatible logger. */
export type PinoCompatibleLogger = Logger

/** Options of `createNode`; every field is optional, defaults live in `constants.ts`. */
export interface NodeOptions {
  /** Overlay name; nodes of different networks never exchange traffic. Default `plexus`. */
  network?: string
  /** Pre-shared network key (libp2p pnet): nodes without it cannot connect at all. */
  networkKey?: string | Uint8Array
  /**
   * AEAD of the noise encryption on this node's connections, as a preference. `auto`
   * (default): AES-256-GCM when the CPU has AES instructions (about twice as fast there),
   * else ChaCha20-Poly1305. `aes-256-gcm`: offer AES-256-GCM first even without detected AES
   * instructions. `chacha20-poly1305`: speak only the libp2p noise spec. Every node also
   * accepts ChaCha20-Poly1305, so nodes with different settings still connect.
   */
  cipher?: 'auto' | 'aes-256-gcm' | 'chacha20-poly1305'
  /**
   * Tune V8's garbage collector for this process (default false: a V8 flag is process-wide,
   * so the application decides; `plexus node` sets it unless `--no-gc-tuning`). When true, at the first node's start
   * sets `--incremental-marking-soft-trigger=80`, so V8 starts marking the old generation
   * when 80% of the room it allotted is used rather than whenever that room is smaller than
   * the young generation, which keeps busy processes from re-marking every ~200 ms (see
   * README "Performance"). Process-wide; skipped when the process sets a marking trigger
   * itself (flags or `NODE_OPTIONS`) or runs a V8 other than 12/13 (Node 22/24). False
   * leaves V8's settings untouched.
   */
  gcTuning?: boolean
  /**
   * Where the node tells its story (docs/logging.md): start and stop, links up and down,
   * members joining, leaving and expiring, refused announcements, streams created and
   * deleted, partition leader changes, replicas replaced and catching up, fsync stalls,
   * relay clients, and errors no caller sees. Any pino-compatible logger (`warn`, `error`,
   * `info`, `debug` taking a fields object and a message; `child` used when present).
   * Default: silent. Never called per message.
   */
  logger?: Logger
  /** Multiaddrs to listen on. Default `['/ip4/0.0.0.0/tcp/0']`. */
  listen?: string[]
  /** Multiaddrs of known nodes to dial at start and keep dialling while unreachable. */
  bootstrap?: string[]
  /** Discovery methods. Same-host discovery (`local`) is on by default; mDNS is on by default
   * in the CLI and off by default in the library; the DHT (members advertise their clusters
   * in it, calls look up clusters with no known member) is on by default when `bootstrap` is
   * given, else off. */
  discovery?: { local?: boolean; mdns?: boolean | { interface?: string }; dht?: boolean }
  /** Directory for the identity (same peer id after restart) and stream data. */
  dataDir?: string
  /**
   * Circuit relay v2 for nodes behind a NAT (docs/operations.md, "Behind a NAT"). Every node
   * can dial relayed (`/p2p-circuit`) addresses. `server: true` (default false) makes this
   * node a relay for nodes of its network (only peers that speak the network's link
   * protocol get a slot): run it on nodes that others can dial. `reserve`: when this node
   * takes slots on the relay servers it is connected to and announces its relayed addresses
   * — `auto` (default) once peers see it from an address that is not its own (a NAT; or when
   * AutoNAT could not confirm a public address), `always`, or `never`. `reservations`
   * (default 2): relays to hold a slot on. On a server: `maxReservations` (default 64) slots
   * at once; each relayed connection may carry `dataLimit` bytes (default 4 MiB) for
   * `durationLimitMs` (default 10 min), after which the relay ends it and the link is
   * redialled. Relayed links are replaced by direct connections when one can be made
   * (DCUtR hole punching, or the NATed end dialling out); `status().nat` tells which.
   */
  circuitRelay?: {
    server?: boolean
    reserve?: 'auto' | 'always' | 'never'
    reservations?: number
    maxReservations?: number
    dataLimit?: number
    durationLimitMs?: number
  }
  /**
   * Relay endpoint for thin clients; off unless given (`{}` means 127.0.0.1:55555).
   * `maxConnections` (default 1024): at the limit a new client is accepted by closing the
   * oldest idle connection (nothing open on it), or refused when none is idle.
   * `idleTimeoutMs` (default 5 min): a connection with nothing open (no subscription,
   * consumer, tunnel, membership or call) and no frame from its client this long is closed.
   * `handshakeTimeoutMs` (default 5 s): a connection must send HELLO within it.
   * `wsPort`: also serve the relay over WebSocket on this port of `host` (off by default; 0
   * picks a free one), for browsers (docs/relay-protocol.md, "WebSocket transport").
   * `wsOrigins`: browser origins allowed on it besides its own (e.g. `http://localhost:3000`;
   * `null` for sandboxed or file: pages); clients that send no `Origin` are always allowed.
   * `wsStatic`: a directory of pages the WebSocket port serves over HTTP (its own origin).
   */
  relay?:
    | false
    | {
        host?: string
        port?: number
        maxConnections?: number
        idleTimeoutMs?: number
        handshakeTimeoutMs?: number
        wsPort?: number
        wsOrigins?: string[]
        wsStatic?: string
      }
  /**
   * HTTP endpoint for monitoring (off by default): `GET /metrics` (Prometheus text format),
   * `GET /healthz` (200 while the node runs), `GET /readyz` (200 when ready, else 503 with a
   * JSON body naming the failing conditions), and the dashboard at `/`. `host` defaults to
   * 127.0.0.1, `port` to 0 (any free port; read `httpAddress`). Every metric and the
   * readiness rules: docs/metrics.md. A port in use fails `createNode`.
   */
  http?: false | { host?: string; port?: number }
  /** Largest payload accepted (bytes). Default 1 MiB. */
  maxMessageSize?: number
  /**
   * Neighbour links this node keeps (default 24, at least 2, at most 1024): a few peers close by id plus
   * random ones, so the overlay stays connected with a low diameter. Peers it exchanges
   * traffic with (requests, tunnels, internal calls, publishes to their subscriptions) get
   * on-demand links besides, opened on first use and closed after a minute without data
   * (at most 4 × `maxLinks`). A network of `maxLinks + 1` nodes or fewer is a full mesh.
   */
  maxLinks?: number
  /**
   * What this node proves stream administration (create, delete) with on clusters it has
   * not joined (a joined cluster's own key is always used). See `NodeCredentials`.
   */
  credentials?: NodeCredentials
  /** Durable streams hosted by this node's clusters. */
  streams?: {
    /**
     * A stream replica whose member has been unreachable this long is replaced by another
     * member of the cluster (ms, default 60 s; applied by whichever member leads the
     * cluster's metadata group).
     */
    replaceReplicaAfter?: number
    /**
     * Raft log a partition replica accumulates before compacting it (bytes, default 32 MiB).
     * Messages live in the partition log; the raft log is a write-ahead window, and a replica
     * that falls behind the compaction point copies what it lacks from another replica.
     */
    raftLogBytes?: number
  }
}

/** Per-member limits; over them a member answers `OverloadedError` instead of queueing. */
export interface Limits {
  requests?: number
  broadcasts?: number
  tunnels?: number
  queueBytes?: number
}

/** What a request handler learns about the request it serves. */
export interface RequestContext {
  /** Peer id of the node that sent the request. */
  from: string
  /** Cluster the request addressed. */
  cluster: string
  /** Absolute local time (ms since epoch) after which the caller has given up. */
  deadline: number
  /** Aborted when the caller gives up (deadline, cancel) or the node stops. */
  signal: AbortSignal
  /** The request's headers (`RequestOptions.headers`); absent when it carried none. */
  headers?: Record<string, string>
}

/**
 * A reply with headers, which a request handler may return instead of the bytes alone: the
 * caller's reply then carries `headers` (same limits as message headers).
 */
export interface ReplyWithHeaders {
  data: Uint8Array | string
  headers?: Record<string, string>
}

/** What a request handler may return (or resolve to): the reply bytes, text, or `{ data, headers }`. */
export type RequestHandlerResult = Uint8Array | string | ReplyWithHeaders

/**
 * The reply `node.request` resolves to: the reply bytes, with `headers` set when the member's
 * handler returned some (`ReplyWithHeaders`).
 */
export type RequestReply = Uint8Array & { headers?: Record<string, string> }

/** What a broadcast handler learns about the broadcast. */
export interface BroadcastContext {
  from: string
  cluster: string
}

/** Options of `node.join`. */
export interface JoinOptions {
  /** The cluster key (from `generateKey()`); proves membership, never sent. */
  key: string | Uint8Array
  onRequest?: (data: Uint8Array, ctx: RequestContext) => RequestHandlerResult | Promise<RequestHandlerResult>
  onBroadcast?: (data: Uint8Array, ctx: BroadcastContext) => void | Promise<void>
  onTunnel?: (tunnel: Tunnel, ctx: { from: string; cluster: string }) => void | Promise<void>
  limits?: Limits
}

/** A joined cluster; `leave()` withdraws the membership at once (peers drop it). */
export interface Membership {
  readonly cluster: string
  leave(): Promise<void>
}

/** Options of `node.request`. */
export interface RequestOptions {
  /** Deadline in ms (default 10 s); it travels with the request. */
  timeout?: number
  signal?: AbortSignal
  /** Resend to another member when the chosen one dies after the request was written
   * (at-least-once instead of at-most-once). */
  retry?: boolean
  /**
   * Headers the handler sees as `ctx.headers` (at most 64, names of 1 to 256 bytes, 16 KiB
   * of names and values together). Members must run a version that reads request headers.
   */
  headers?: Record<string, string>
}

/** Options of `node.requestMany`. */
export interface RequestManyOptions {
  /** Stop after this many successful replies (default: one from every member asked). */
  maxReplies?: number
  /**
   * Ms to wait for replies (default 10 s); the iteration ends at it with what came, and it
   * travels with each request as its deadline.
   */
  timeout?: number
  /** Aborting ends the iteration with `AbortedError` and cancels what is still running. */
  signal?: AbortSignal
  /** Headers every member's handler sees as `ctx.headers` (limits as `RequestOptions.headers`). */
  headers?: Record<string, string>
}

/**
 * One item of `node.requestMany`: a member's reply (`data`, `headers`, `string()`, `json()`),
 * or, with `error` set and empty `data`, why that member gave none (its handler threw:
 * `RemoteError`; it was overloaded, left or was lost: `OverloadedError`, `NoMembersError`,
 * `MemberLostError`).
 */
export interface ManyReply extends MessageData {
  /** Peer id of the member. */
  from: string
  data: Uint8Array
  headers?: Record<string, string>
  error?: Error
}

/**
 * An ordered, reliable, flow-controlled, bidirectional message channel to one member.
 * `send` waits while the receiver's window is full; iterate to read messages in order.
 * `close()` ends this side's sending (like a TCP half-close): the other side's iteration
 * ends after the messages sent before it, and this side keeps reading until the other side
 * closes too. The peer's death ends both directions with `TunnelClosedError`.
 */
export interface Tunnel extends AsyncIterable<Uint8Array> {
  readonly peer: string
  readonly cluster: string
  readonly closed: boolean
  send(data: Uint8Array | string, options?: { signal?: AbortSignal }): Promise<void>
  close(): Promise<void>
  /** Ends both directions at once; the peer sees `TunnelClosedError` with `message`. */
  abort(message?: string): void
}

/** Options of `node.tunnel`. */
export interface TunnelOptions {
  /** Time for a member to accept (ms, default 10 s), else `TimeoutError`. */
  timeout?: number
  signal?: AbortSignal
}

/** What every received message offers besides its bytes (as nats.js messages do). */
export interface MessageData {
  data: Uint8Array
  /** The data as UTF-8 text (an invalid byte sequence becomes U+FFFD). */
  string(): string
  /** The data parsed as JSON (`JSON.parse` of `string()`); throws `SyntaxError` when it is not JSON. */
  json<T = unknown>(): T
}

/** A message delivered to a subscription. */
export interface Message extends MessageData {
  topic: string
  data: Uint8Array
  key?: Uint8Array
  headers?: Record<string, string>
  /** Peer id of the publisher. */
  from: string
}

/** Options of `node.subscribe`. */
export interface SubscribeOptions {
  /**
   * Queue group name (1-64 characters of [A-Za-z0-9_-]). Each message published on a topic
   * goes to exactly one subscription of the group whose pattern matches it, network-wide
   * (subscriptions of one name form one group whatever their patterns); several groups each
   * get one copy and plain subscriptions all get theirs. The publishing node picks a member
   * node round-robin, skipping nodes whose link is down and, while another is free, those
   * whose link is crowded; that node picks one of its members round-robin. At most once, as
   * all pub/sub: a message sent to a member whose link drops meanwhile, or that unsubscribed
   * before its node read the message, is lost, not handed to another member. Every node of
   * the network must know queue groups (nodes from before them reset links carrying them).
   */
  queue?: string
}

/**
 * A subscription. Without a handler it is an `AsyncIterable<Message>` with a bounded
 * queue (65,536 messages or 64 MiB): when full, new messages are dropped and counted in
 * `dropped`. With a handler, the handler is called for each message in order and the
 * subscription cannot be iterated. Breaking out of a `for await` unsubscribes.
 */
export interface Subscription extends AsyncIterable<Message> {
  readonly pattern: string
  /** Its queue group (`SubscribeOptions.queue`), or undefined for a plain subscription. */
  readonly queue: string | undefined
  readonly dropped: number
  readonly received: number
  /**
   * Resolves once every peer linked to this node has acknowledged this subscription's
   * interest, or is no longer linked (its link closed, or it did not answer within
   * 10 s). Guarantee: a publish made after this point by any of those peers reaches the
   * subscriber. Peers linked later learn the interest when their link comes up. Never
   * rejects; resolves at once once the subscription ended (unsubscribe, node stopped).
   * For a deadline or an `AbortSignal`, use `node.flush({ timeout, signal })`, which covers
   * this subscription too.
   */
  readonly ready: Promise<void>
  unsubscribe(): void
}

/** Options of `node.flush`. */
export interface FlushOptions {
  /** Deadline in ms (default 10 s), else `TimeoutError`. */
  timeout?: number
  /** Aborting rejects with `AbortedError`. */
  signal?: AbortSignal
}

/** Options of `node.publish`. */
export interface PublishOptions {
  key?: Uint8Array | string
  headers?: Record<string, string>
  /** `none` (default): fire and forget. `leader`/`all` need a durable stream capturing the topic. */
  ack?: 'none' | 'leader' | 'all'
  /**
   * Publish id: the stream stores a message once per id within its `duplicateWindow` (default
   * 2 min), so a publish retried after a timeout or a leader change is not stored twice. With
   * an id the node also resends on its own when the leader's link drops or the leader lost
   * leadership with the outcome unknown (without one, that rejects with `LeadershipLostError`).
   */
  msgId?: string
  timeout?: number
  /**
   * A capability (`pxc1.…`, `issueCapability`, `plexus keygen --capability publish`) proving
   * this publish to a stream whose `access.publish` is `'capability'`; taken before the node's
   * `credentials.capabilities`. Not needed on a node that joined the stream's cluster.
   */
  capability?: string
}

/** Where a message with `ack` was stored. */
export interface PublishAck {
  stream: string
  partition: number
  offset: number
  /** Set when a message with this `msgId` was already stored (at `offset`): nothing was added. */
  duplicate?: boolean
}

/** Retention of a stream; absent fields mean "no limit". */
export interface StreamRetention {
  /** Milliseconds. */
  maxAge?: number
  maxBytes?: number
  maxMessages?: number
}

/** Options of `node.streams.create`. */
export interface StreamConfig {
  /** The cluster that owns the stream; its members host the replicas. */
  cluster: string
  /** Topic pattern the stream captures (wildcards allowed); never overlaps another stream's. */
  subject: string
  /** Replicas per partition (default 3); more than the cluster's members is `NotEnoughReplicasError`. */
  replicas?: number
  /** Partitions (default 1); messages go by key hash, without a key round robin. */
  partitions?: number
  retention?: StreamRetention
  compact?: boolean
  /** How long a publish `msgId` is remembered: a retry within it is stored once (ms, default 2 min). */
  duplicateWindow?: number
  /** Who may publish to and read the stream (default: open to the network, both). */
  access?: Partial<StreamAccess>
}

/**
 * Who may publish to / consume a stream. `open`: any node of the network. `capability`: a
 * member of the stream's cluster, or a caller presenting an unexpired capability granting
 * that operation on the stream (and covering the topic / the stream's subject); the partition
 * leader and the replicas refuse anything else with `UnauthorizedError` (docs/security.md).
 */
export interface StreamAccess {
  publish: 'open' | 'capability'
  consume: 'open' | 'capability'
}

/** Options of the `node.streams` calls. */
export interface StreamCallOptions {
  /** Deadline in ms (default 10 s). */
  timeout?: number
  signal?: AbortSignal
  /**
   * Administration (`create`, `delete`, `update`, `purge`, `deleteConsumer`) on a cluster this
   * node has not joined: the cluster key to prove the call with (it never leaves the node;
   * members check a signature made with it).
   */
  clusterKey?: string | Uint8Array
  /**
   * Administration: a capability (`issueCapability`, `plexus keygen --capability`) to prove
   * the call with; taken before `clusterKey` and the node's own keys.
   */
  capability?: string
}

/**
 * Node-level credentials for stream administration on clusters the node has not joined,
 * like a NATS credentials file: used when a call passes none of its own. Members refuse a
 * create or delete without a proof of the cluster key or a capability covering it
 * (`UnauthorizedError`).
 */
export interface NodeCredentials {
  /** Cluster keys by cluster name. */
  clusterKeys?: Record<string, string | Uint8Array>
  /** Capabilities (`pxc1.…`); the first that covers a call's cluster, operation and stream is used. */
  capabilities?: string[]
}

/** One partition of a stream as `streams.info` reports it. */
export interface PartitionInfo {
  partition: number
  /** Peer id of the current leader; null while none is elected. */
  leader: string | null
  /** Peer ids of the replicas (preferred leader first). */
  replicas: string[]
  /** Replicas whose log is caught up with the leader's (the leader included). */
  inSync: string[]
  /** Lowest offset still retained. */
  firstOffset: number
  /** Offset the next message will get (= messages ever committed). */
  nextOffset: number
}

/** A stream: its configuration and the state of every partition. */
export interface StreamInfo {
  name: string
  cluster: string
  subject: string
  replicas: number
  retention: StreamRetention
  compact: boolean
  duplicateWindow: number
  /** Who may publish to and read the stream. */
  access: StreamAccess
  partitions: PartitionInfo[]
}

/**
 * One stream as `streams.list()` reports it: from this node's stream directory (the signed
 * tables the clusters' metadata leaders flood), no network call. `placement` is as the table
 * says; a partition's `leader` is this node's latest view (its own replica's when it hosts one,
 * else the leader its last call there reached; null: not known here — `info` asks).
 */
export interface StreamSummary {
  name: string
  cluster: string
  subject: string
  partitions: number
  replicas: number
  retention: StreamRetention
  compact: boolean
  duplicateWindow: number
  access: StreamAccess
  /** The metadata leader that signed the table this node holds. */
  metadataLeader: string | null
  /** Per partition: its replicas (preferred leader first) and the leader as known here. */
  placement: Array<{ partition: number; replicas: string[]; leader: string | null }>
}

/** Durable streams of the network (any node may call these, members or not). */
export interface Streams {
  /**
   * Creates a stream, agreed by the owning cluster's metadata group. Creating a stream that
   * exists with the same configuration resolves to it; a different configuration or an
   * overlapping subject is an `InvalidArgumentError`.
   */
  create(name: string, config: StreamConfig, options?: StreamCallOptions): Promise<StreamInfo>
  /** The stream's configuration and partitions; `StreamNotFoundError` when none has that name. */
  info(name: string, options?: StreamCallOptions): Promise<StreamInfo>
  /** Deletes the stream and its data on every replica; `StreamNotFoundError` when absent. */
  delete(name: string, options?: StreamCallOptions): Promise<void>
  /**
   * The streams this node knows of, sorted by name, with their configuration and placement
   * (`StreamSummary`): synchronous, from the local directory, so an operator sees every
   * stream without one `info` call each (`info` adds the live offsets and in-sync replicas).
   */
  list(): StreamSummary[]
  /**
   * Changes a stream (admin: `update`), agreed by the metadata group.
   * - `retention` replaces the whole policy (`{}` removes every limit); every replica applies
   *   it when the new stream table reaches it (at its next maintenance pass, every 10 s).
   * - `replicas` changes the replication factor of every partition. The metadata leader then
   *   moves each partition's placement toward it one replica per second (adding the least
   *   loaded live storage member, or dropping a replica: an unreachable one first), and each
   *   partition's Raft leader follows with one voter change at a time; an added replica
   *   copies the partition from the leader before it counts as in sync. Acknowledged data is
   *   never lost: a voter is removed only through a committed Raft configuration change.
   *   While a partition grows from 1 to 2 replicas, publishes wait until the new one holds
   *   the log (two voters need both). More replicas than storage members is
   *   `NotEnoughReplicasError`.
   * At least one of them. Changing `partitions`, `subject`, `compact`, `duplicateWindow` or
   * `cluster` is an `InvalidArgumentError` naming the field (not supported). Resolves with
   * the new info (placement changes follow within seconds; `info` shows them).
   */
  update(name: string, changes: StreamUpdate, options?: StreamCallOptions): Promise<StreamInfo>
  /**
   * Removes messages (admin: `purge`), like Kafka's deleteRecords: in each partition (or only
   * `target.partition`), every message below offset `target.before`, or all of them when it is
   * absent. Replicated as an entry of each partition's Raft log, so every replica applies it at
   * the same point; it survives restarts. Reads and consumers below the new start continue
   * from it.
   *
   * With `key` (1–1024 bytes; a string is UTF-8) only that key's messages go, like a
   * JetStream purge by subject or a Kafka tombstone: in the key's partition (where keyed
   * publishes go; `partition` overrides), those below `before`, or all of them so far. Once it
   * resolves, consumers (plain and durable), `get` and `last` no longer return them, on every
   * replica, across restarts and leader changes (acknowledged = durable). The records stay on
   * disk until retention or a purge `before` passes them; each partition remembers up to
   * `DEFAULT_PURGED_KEYS_MAX` (4,096) purged keys until then, and refuses a purge of a further
   * key with `InvalidArgumentError`. Resolves with each purged partition's first offset.
   */
  purge(
    name: string,
    target?: { before?: number; partition?: number; key?: string | Uint8Array },
    options?: StreamCallOptions,
  ): Promise<Array<{ partition: number; firstOffset: number }>>
  /** The durable consumers of a stream with their committed positions, sorted by name. */
  consumers(stream: string, options?: StreamCallOptions): Promise<ConsumerSummary[]>
  /**
   * One durable consumer: per partition its position, the partition end and the messages
   * pending between them, and the lease holder; `ConsumerNotFoundError` when unknown.
   */
  consumerInfo(stream: string, name: string, options?: StreamCallOptions): Promise<ConsumerInfo>
  /**
   * Deletes a durable consumer (admin: `consumer-delete`): its positions and leases. A
   * consumer running under the name ends with `ConsumerNotFoundError` at its next commit (within
   * a second); a new consumer of the name starts fresh (`from`). `ConsumerNotFoundError` when
   * unknown.
   */
  deleteConsumer(stream: string, name: string, options?: StreamCallOptions): Promise<void>
  /**
   * The message at `offset` of `partition` (default 0); `MessageNotFoundError` when none is
   * stored there. Read by the partition leader with a current view: every message
   * acknowledged with `ack: 'all'` before the call is seen. `capability`: `consume` access.
   */
  get(
    name: string,
    at: { partition?: number; offset: number },
    options?: Pick<StreamCallOptions, 'timeout' | 'signal' | 'capability'>,
  ): Promise<StreamMessage>
  /**
   * The latest message with `key` (in the key's partition), on any stream; on a compacted one
   * the compaction keeps it. A keyed message with an empty value is a tombstone: the key then
   * has none. `MessageNotFoundError` when none. Served from the partition leader's key index
   * (bounded: the `DEFAULT_KEY_INDEX_MAX_KEYS` keys written most recently), not by a scan;
   * same consistency as `get`.
   */
  last(
    name: string,
    by: { key: string | Uint8Array },
    options?: Pick<StreamCallOptions, 'timeout' | 'signal' | 'capability'>,
  ): Promise<StreamMessage>
}

/** What `streams.update` may change: the retention limits, the replicas, or both. */
export interface StreamUpdate {
  /** Replaces the whole retention policy (absent limits are removed; `{}`: keep everything). */
  retention?: StreamRetention
  /** The new replication factor of every partition (1 to 7, as at create). */
  replicas?: number
}

/** A durable consumer of a stream (`streams.consumers`). */
export interface ConsumerSummary {
  name: string
  /** Per partition with a committed position: the next offset it reads (all below acknowledged). */
  positions: Array<{ partition: number; position: number }>
  /** Last time a consumer of the name asked for a lease (ms since the epoch); null: not seen by the current metadata leader. */
  lastActive: number | null
}

/** One durable consumer in detail (`streams.consumerInfo`). */
export interface ConsumerInfo {
  stream: string
  name: string
  lastActive: number | null
  partitions: Array<{
    partition: number
    /** Committed position (null: none yet). */
    position: number | null
    /** The partition's next offset. */
    end: number
    /** Messages between the position (or the partition's first offset) and the end. */
    pending: number
    /** The consumer holding the partition's lease now (null: none). */
    holder: string | null
  }>
  /**
   * Messages delivered again (after `ackWait`, `backoff` or a `nak`), terminated (`term()`)
   * and dropped after `maxDeliver` deliveries, by the consumers of this name, as reported to
   * the current metadata leader (in memory: counted since it took over; reported about once
   * a second and on `close()`).
   */
  redelivered: number
  terminated: number
  maxDeliverDropped: number
}

/** Where `consume` starts in each partition. */
export type ConsumeFrom = 'earliest' | 'latest' | 'new' | { offset: number } | { time: Date }

/** Options of `node.consume`. */
export interface ConsumeOptions {
  /** Default `'earliest'`. `latest`: the last committed message; `new`: only later ones. */
  from?: ConsumeFrom
  /** Read only this partition (default: every partition). */
  partition?: number
  /**
   * Durable consumer name (1–64 of [A-Za-z0-9_-]): its position — every offset below it
   * acknowledged — is stored replicated by the stream's cluster and survives restarts. It
   * resumes there (`from` applies only the first time). Consumers sharing a name share the
   * partitions: each partition is read by one of them at a time.
   */
  durable?: string
  /**
   * Durable only: an unacknowledged message is delivered again this long (ms, default 30 s)
   * after it was handed out (`working()` restarts the wait; `backoff` replaces it).
   */
  ackWait?: number
  /** Durable only: delivery pauses while this many messages are unacknowledged (default 1,024). */
  maxAckPending?: number
  /**
   * A subject pattern (`*`, `>` as in `subscribe`) that must overlap the stream's subject:
   * only messages whose topic matches are delivered; the others are skipped and count as
   * acknowledged for a durable consumer's position.
   */
  filter?: string
  /**
   * Durable only: deliveries of one message at most (default unlimited). When the last one
   * is not acknowledged in time (or is `nak`ed) the message is dropped: it counts as
   * acknowledged for the position, is counted in `consumerInfo` (`maxDeliverDropped`), and an
   * advisory (JSON `{ stream, durable, partition, offset, deliveries }`) is published, at most
   * once, on the pub/sub topic `$plexus.advisory.max_deliveries.<stream>.<durable>`.
   * Deliveries are counted as `deliveryCount` is: per consumer session.
   */
  maxDeliver?: number
  /**
   * Durable only: how long (ms, each ≥ 0) to wait for the acknowledgement of the first,
   * second, … delivery before delivering again, instead of `ackWait`; the last value repeats.
   * At most 64 values, and no more than `maxDeliver`.
   */
  backoff?: number[]
  /**
   * Durable only: `'explicit'` (default) — each message is acknowledged with `ack()` (or
   * `term()`, `nak()`); `'none'` — a message counts as acknowledged once handed out (never
   * delivered again by this consumer; the position is committed as for explicit acks).
   */
  ackPolicy?: 'explicit' | 'none'
  /**
   * Byte budget of the consumer (default 16 MiB, `CONSUMER.maxBytesInFlight`): fetching from
   * the replicas pauses while this many bytes of messages are in flight — fetched and not
   * yet handed out, and for a durable consumer not yet acknowledged (a durable consumer also
   * reads ahead at most 2 MiB of it). Exceeded only by a single message larger than the room
   * left, one per partition at most. At most 4,096 messages are buffered as well. Through
   * the relay it is the consumer's window (the credit granted to the relay, at least one
   * frame).
   */
  maxBytesInFlight?: number
  /** Ends the iteration. */
  signal?: AbortSignal
  /**
   * A capability (`pxc1.…`) granting `consume` on the stream, for a stream whose
   * `access.consume` is `'capability'`; taken before the node's `credentials.capabilities`.
   */
  capability?: string
}

/** A committed message read from a stream. */
export interface StreamMessage extends MessageData {
  stream: string
  topic: string
  partition: number
  offset: number
  /** Milliseconds since the epoch (the leader's clock when appended). */
  timestamp: number
  key?: Uint8Array
  data: Uint8Array
  headers?: Record<string, string>
  /**
   * 1 on first delivery, more when this durable consumer delivers it again after `ackWait`.
   * Counted per consumer session: a message delivered again by another consumer of the name
   * (after a crash or a partition handover) starts at 1.
   */
  deliveryCount: number
  /**
   * Acknowledges the message. For a durable consumer the position is committed (replicated)
   * every 100 ms and on `close()`; messages acknowledged in the last 100 ms before a crash
   * may be delivered again. A no-op for other consumers (and with `ackPolicy: 'none'`), as
   * are `nak`, `term` and `working`; each is also a no-op once the message was acknowledged,
   * terminated or dropped, or its partition moved to another consumer.
   */
  ack(): Promise<void>
  /**
   * Durable: deliver this message again after `delayMs` (default 0: at once, ms ≥ 0;
   * `InvalidArgumentError` otherwise). It stays unacknowledged meanwhile (it counts against
   * `maxAckPending`); a `nak` of an earlier delivery than the latest is ignored.
   */
  nak(delayMs?: number): Promise<void>
  /**
   * Durable: never deliver this message again. It counts as acknowledged for the position
   * and is counted in `consumerInfo` (`terminated`).
   */
  term(): Promise<void>
  /**
   * Durable: still being processed: restarts the wait before redelivery (`ackWait`, or the
   * `backoff` value of this delivery) from now. Ignored for an earlier delivery than the latest.
   */
  working(): Promise<void>
}

/** Options of `Consumer.fetch`. */
export interface FetchOptions {
  /** Messages at most (default 100, at most 4,096: `CONSUMER.fetchMaxMessages`). */
  max?: number
  /** How long to wait for `max` messages (ms, default 30 s, at most 10 minutes). */
  expires?: number
}

/**
 * Reads a stream: committed messages of each partition in offset order (no order across
 * partitions), tailing live. Memory is bounded: reading pauses while the buffer is full.
 */
export interface Consumer extends AsyncIterable<StreamMessage> {
  readonly stream: string
  /**
   * Bytes of messages in flight in this consumer now (fetched and not yet handed out; for a
   * durable consumer not yet acknowledged), plus the reads under way: at most
   * `maxBytesInFlight`, or one message more per partition when a single message is larger
   * than the room left.
   */
  readonly bytesInFlight: number
  /**
   * Pull: resolves with the next messages once `max` of them are there or `expires` ms
   * passed (possibly with none; at once with none once the consumer ended). A consumer is read
   * either with `fetch` or as an iterator: the first use picks, and the other then throws
   * `InvalidArgumentError`. Calls made while one runs wait their turn (`expires` counts from
   * each call). The `ackWait` of a message starts when `fetch` returns it. Rejects with the
   * consumer's failure (e.g. `StreamNotFoundError`) when it failed and nothing is left.
   */
  fetch(options?: FetchOptions): Promise<StreamMessage[]>
  /** Ends the iteration; pending reads stop. */
  close(): void
}

/** Options of `node.kv` (docs/kv.md). */
export interface KvOptions {
  /** The cluster whose members store the bucket (its stream `KV_<bucket>`). */
  cluster: string
  /** Replicas of the bucket's stream when it is created (default 3, as streams). */
  replicas?: number
  /** Deadline of each operation in ms (default 10 s). */
  timeout?: number
  /** Creating the bucket on a cluster this node has not joined: as `streams.create`. */
  clusterKey?: string | Uint8Array
  /** A capability: `create` to make the bucket, `publish`/`consume` for its stream's access. */
  capability?: string
}

/** One revision of a key (`kv.get`, `kv.history`, `kv.watch`). */
export interface KvEntry {
  key: string
  /** The value (empty for a delete). */
  value: Uint8Array
  /** The offset of the write in the bucket's stream: revisions of a bucket are totally ordered. */
  revision: number
  /** `put`, or `delete` (a tombstone). */
  operation: 'put' | 'delete'
  /** Milliseconds since the epoch (the leader's clock at the write). */
  timestamp: number
  /** The value as UTF-8 text. */
  string(): string
  /** The value parsed as JSON. */
  json<T = unknown>(): T
}

/**
 * A key-value bucket (`node.kv`): a compacted stream of one partition, so every write of the
 * bucket has a revision (its offset) in one total order. Writes resolve once committed on a
 * majority of the bucket's replicas (`ack: 'all'`); `create` and `update` are checked and
 * appended atomically by the partition leader. Reads (`get`) ask the leader, which answers
 * with a current view: a read sees every write acknowledged before it started. Keys are
 * dot-separated tokens of `[A-Za-z0-9_=/-]` (at most 256 characters); `watch` patterns use
 * `*` and `>` as topics do. Values are non-empty (an empty value is a delete).
 */
export interface KvBucket {
  /** The bucket's name. */
  readonly bucket: string
  /** The stream holding it (`KV_<bucket>`). */
  readonly stream: string
  /** Writes `value` under `key`; resolves with the new revision. */
  put(key: string, value: Uint8Array | string): Promise<number>
  /** The current value of `key`, or null (never written, or deleted). */
  get(key: string): Promise<KvEntry | null>
  /** Writes only if `key` has no value (`KeyExistsError` otherwise); the new revision. */
  create(key: string, value: Uint8Array | string): Promise<number>
  /**
   * Writes only if `key`'s current revision is `revision` (compare-and-set), else
   * `WrongRevisionError` (its `current` is the key's revision, -1 when it has none).
   */
  update(key: string, value: Uint8Array | string, revision: number): Promise<number>
  /** Deletes `key`: a tombstone (`get` then gives null; `history` shows it); its revision. */
  delete(key: string): Promise<number>
  /** The keys with a value, sorted. Reads the bucket's log (what compaction kept). */
  keys(): Promise<string[]>
  /**
   * Every revision of `key` still in the bucket's log, oldest first, deletes included:
   * compaction keeps only the latest revision of a key in sealed segments, so older ones
   * disappear over time. Reads the bucket's log.
   */
  history(key: string): Promise<KvEntry[]>
  /**
   * Changes of the keys matching `pattern` (default `>`: all): first the current value of
   * each matching key (as of the call, oldest revision first), then every later put and
   * delete, live, in revision order. Ends with `stop()` or `break`.
   */
  watch(pattern?: string): KvWatch
}

/** The iterable `kv.watch` returns. */
export interface KvWatch extends AsyncIterable<KvEntry> {
  /** Ends the watch. */
  stop(): void
}

/** One member as seen by this node. */
export interface MemberStatus {
  id: string
  connected: boolean
  outstanding: number
  latencyMs: number | null
  /** What the member serves, from its signed announcement. */
  roles: MemberRoles
}

/**
 * What a member of a cluster serves, as its signed announcements say: `request`,
 * `broadcast` and `tunnel` when it joined with that handler (`onRequest`, `onBroadcast`,
 * `onTunnel`), `storage` when its node has a `dataDir` (it can host stream replicas and the
 * cluster's stream metadata). Requests and tunnels go only to members with that role.
 */
export interface MemberRoles {
  request: boolean
  broadcast: boolean
  tunnel: boolean
  storage: boolean
}

/** What a node knows of its own reachability and its circuit relay use (`status().nat`). */
export interface NatStatus {
  /**
   * `public`: AutoNAT confirmed a public address, or peers see this node at an address of
   * its own; `private`: a peer sees it at an address that is not its own (behind a NAT);
   * `unknown`: no evidence yet.
   */
  reachability: 'unknown' | 'public' | 'private'
  /** The evidence behind `reachability`, in words. */
  reason: string
  /** Relay peers this node holds a slot on (its relayed addresses go through them). */
  reservations: string[]
  /** When this node is a circuit relay server: the peers holding a slot on it; else null. */
  serving: string[] | null
}

/** Snapshot for `plexus status`. */
export interface NodeStatus {
  id: string
  network: string
  addresses: string[]
  peers: Array<{
    id: string
    addresses: string[]
    latencyMs: number | null
    /**
     * Connection encrypter negotiated with the peer: `/plexus/noise-aes256gcm/1.0.0`
     * (AES-256-GCM) or `/noise` (ChaCha20-Poly1305); null when not known.
     */
    encryption: string | null
    /**
     * `neighbour`: one of the at most `maxLinks` overlay links; `on-demand`: opened for traffic
     * with this peer (requests, calls, tunnels, publishes) and closed when idle.
     */
    link: 'neighbour' | 'on-demand'
    /**
     * True when the link runs over a circuit relay (a limited connection: the relay's data
     * and duration limits apply, and bulk traffic is slower); `relayedReason` says why no
     * direct connection replaced it yet (null on direct links).
     */
    relayed?: boolean
    relayedReason?: string | null
  }>
  /**
   * Reachability and circuit relay state (docs/operations.md, "Behind a NAT"); absent only in
   * the status of a node older than circuit relay (read through a relay).
   */
  nat?: NatStatus
  clusters: Array<{ name: string; joined: boolean; members: MemberStatus[] }>
  counters: Record<string, number>
  /** Streams this node knows, with the partitions it hosts. */
  streams: Array<{
    name: string
    cluster: string
    subject: string
    partitions: number
    replicas: number
    /** Partition replicas running on this node. */
    hosted: Array<{
      partition: number
      role: string
      leader: string | null
      /** Members placed to hold this partition's replicas (the placement), preferred leader first. */
      replicas: string[]
      inSync: string[] | null
      /** First offset this replica still holds (retention and purges move it forward). */
      firstOffset: number
      nextOffset: number
      /** Raft index of this replica's last snapshot (raft log compaction or install; 0: none). */
      snapshotIndex: number
      /** Bytes of this replica's raft log on disk (a window: compacted after `streams.raftLogBytes`). */
      raftLogBytes: number
      /**
       * `running`, or `failed`: the replica stopped on an error and is being restarted from
       * its own data or, when that cannot work, rebuilt from the other replicas (automatic).
       */
      health: 'running' | 'failed'
      /** Failures in a row (reset after a minute of running); 0 when it never failed. */
      failures: number
      /** Times this replica was emptied and rebuilt from the others since the node started. */
      rebuilds: number
      /** The last failure (`ErrorName: message`), or null. */
      lastError: string | null
    }>
    /**
     * Durable consumers and, per partition, the first offset not yet acknowledged (their lag
     * is a partition's `nextOffset` minus it), as this node's replica of the cluster's
     * metadata group knows them; null when this node holds no such replica.
     */
    consumers: Array<{ name: string; positions: Array<{ partition: number; offset: number }> }> | null
  }>
}

/** A running overlay node. */
export interface PlexusNode {
  /** Peer id (base58 Ed25519). */
  readonly id: string
  /** Multiaddrs other nodes can dial, each ending in /p2p/<id>. */
  readonly addresses: string[]
  /** Network name. */
  readonly network: string
  /** Largest payload accepted (bytes), from the `maxMessageSize` option. */
  readonly maxMessageSize: number
  /** Relay endpoint address when enabled (`host:port`). */
  readonly relayAddress: string | undefined
  /** The relay's WebSocket endpoint (`host:port`) when `relay.wsPort` was given. */
  readonly relayWsAddress: string | undefined
  /** The HTTP endpoint (`host:port`: /metrics, /healthz, /readyz) when the `http` option is on. */
  readonly httpAddress: string | undefined
  /** Serve a cluster. Resolves once the membership is announced. */
  join(cluster: string, options: JoinOptions): Promise<Membership>
  /** Send one request to one proven member, chosen by load; resolves to its reply. */
  request(cluster: string, data: Uint8Array | string, options?: RequestOptions): Promise<RequestReply>
  /**
   * Sends `data` to several members of `cluster` (each at most once; members that serve
   * requests and are reachable when it starts, at most 64 asked at once) and yields their
   * replies as they arrive. Ends after `maxReplies` successful replies, at `timeout` (with
   * what came; no error), or once every member asked answered or failed. A member that fails
   * yields an item with `error` (it does not count towards `maxReplies`). Breaking out of the
   * loop cancels the requests still running. No member serving requests: `NoMembersError`.
   */
  requestMany(
    cluster: string,
    data: Uint8Array | string,
    options?: RequestManyOptions,
  ): AsyncIterable<ManyReply>
  /** Send `data` to every member of `cluster` reachable now, at most once each, no replies.
   * Resolves to the number of members it was handed to (this node included when a member). */
  broadcast(cluster: string, data: Uint8Array | string): Promise<number>
  /** Open a tunnel to one member of `cluster`, chosen like a request. */
  tunnel(cluster: string, options?: TunnelOptions): Promise<Tunnel>
  /**
   * Subscribe to a topic pattern (`*` one token, `>` one or more trailing tokens). With
   * `options.queue`, the subscription joins that queue group: see `SubscribeOptions.queue`.
   */
  subscribe(pattern: string, options?: SubscribeOptions): Subscription
  subscribe(
    pattern: string,
    handler: ((msg: Message) => void | Promise<void>) | undefined,
    options?: SubscribeOptions,
  ): Subscription
  /**
   * Resolves once every interest change made so far on this node (subscribe, unsubscribe)
   * has been acknowledged by every peer linked now, or that peer is no longer linked, as
   * nats.js `flush()`. Guarantee: a publish made after this point by any of those peers
   * reaches every subscription made before the call. Rejects with `TimeoutError` after
   * `timeout` (default 10 s) and `AbortedError` on `signal` or when the node stops.
   */
  flush(options?: FlushOptions): Promise<void>
  /** Publish to every matching subscriber; resolves once queued on every link (with backpressure). */
  publish(topic: string, data: Uint8Array | string, options?: PublishOptions): Promise<PublishAck | undefined>
  /** Durable streams: create, inspect, delete (from any node). */
  readonly streams: Streams
  /** Reads a stream's committed messages (every partition unless `partition` is given). */
  consume(stream: string, options?: ConsumeOptions): Consumer
  /**
   * Opens key-value bucket `bucket` (1-61 characters of `[A-Za-z0-9_-]`), creating its stream
   * `KV_<bucket>` (compacted, one partition) in `options.cluster` when it does not exist.
   */
  kv(bucket: string, options: KvOptions): Promise<KvBucket>
  /** Snapshot of peers, clusters, members and counters. */
  status(): NodeStatus
  /** Stop everything; leaves no open handles. Idempotent. */
  stop(): Promise<void>
}
