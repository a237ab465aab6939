/**
 * Public interfaces of Plexus. Implementations stay internal; `index.ts` exports these
 * with the factory functions.
 */

/** Options of `createNode`; every field is optional, defaults live in `constants.ts`. */
export interface NodeOptions {
  /** Overlay name; nodes of different networks never exchange traffic. Default `plexus`. */
  network?: string
  /** Pre-shared network key (libp2p pnet): nodes without it cannot connect at all. */
  networkKey?: string | Uint8Array
  /** Multiaddrs to listen on. Default `['/ip4/0.0.0.0/tcp/0']`. */
  listen?: string[]
  /** Multiaddrs of known nodes to dial at start and keep dialling while unreachable. */
  bootstrap?: string[]
  /** Discovery methods. Same-host discovery (`local`) is on by default; mDNS is on by default
   * in the CLI and off by default in the library; the DHT is off by default. */
  discovery?: { local?: boolean; mdns?: boolean | { interface?: string }; dht?: boolean }
  /** Directory for the identity (same peer id after restart) and stream data. */
  dataDir?: string
  /** Relay endpoint for thin clients; off unless given (`{}` means 127.0.0.1:55555). */
  relay?: false | { host?: string; port?: number }
  /** Largest payload accepted (bytes). Default 1 MiB. */
  maxMessageSize?: number
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
}

/** What a broadcast handler learns about the broadcast. */
export interface BroadcastContext {
  from: string
  cluster: string
}

/** Options of `node.join`. */
export interface JoinOptions {
  /** The cluster key (from `generateKey()`); proves membership, never sent. */
  key: string | Uint8Array
  onRequest?: (data: Uint8Array, ctx: RequestContext) => Uint8Array | string | Promise<Uint8Array | string>
  onBroadcast?: (data: Uint8Array, ctx: BroadcastContext) => void | Promise<void>
  onTunnel?: (tunnel: unknown, ctx: { from: string; cluster: string }) => void | Promise<void>
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
}

/** One member as seen by this node. */
export interface MemberStatus {
  id: string
  connected: boolean
  outstanding: number
  latencyMs: number | null
}

/** Snapshot for `plexus status`. */
export interface NodeStatus {
  id: string
  network: string
  addresses: string[]
  peers: Array<{ id: string; addresses: string[]; latencyMs: number | null }>
  clusters: Array<{ name: string; joined: boolean; members: MemberStatus[] }>
  counters: Record<string, number>
}

/** A running overlay node. */
export interface PlexusNode {
  /** Peer id (base58 Ed25519). */
  readonly id: string
  /** Multiaddrs other nodes can dial, each ending in /p2p/<id>. */
  readonly addresses: string[]
  /** Network name. */
  readonly network: string
  /** Relay endpoint address when enabled (`host:port`). */
  readonly relayAddress: string | undefined
  /** Serve a cluster. Resolves once the membership is announced. */
  join(cluster: string, options: JoinOptions): Promise<Membership>
  /** Send one request to one proven member, chosen by load; resolves to its reply. */
  request(cluster: string, data: Uint8Array | string, options?: RequestOptions): Promise<Uint8Array>
  /** Snapshot of peers, clusters, members and counters. */
  status(): NodeStatus
  /** Stop everything; leaves no open handles. Idempotent. */
  stop(): Promise<void>
}
