/**
 * Every default of Plexus in one place. Options left out take these values; docs quote them.
 */

/** Default network name: nodes of different networks never exchange traffic. */
export const DEFAULT_NETWORK = 'plexus'
/**
 * Default `cipher`: prefer noise with AES-256-GCM when the CPU has AES instructions, else the
 * libp2p spec's ChaCha20-Poly1305 (which every node also accepts).
 */
export const DEFAULT_CIPHER = 'auto' as const
/** Protocol id of noise with AES-256-GCM (`transport/encrypters.ts`). */
export const NOISE_AES_GCM_PROTOCOL = '/plexus/noise-aes256gcm/1.0.0'
/** Protocol id of the libp2p noise spec (ChaCha20-Poly1305). */
export const NOISE_PROTOCOL = '/noise'
/**
 * Default `gcTuning` of the library: off, since a V8 flag is process-wide and belongs to the
 * application; `plexus node` turns it on (`util/gc-tuning.ts`, README "Performance").
 */
export const DEFAULT_GC_TUNING = false
/** Default listen addresses. */
export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/0']
/** Largest payload accepted by request, broadcast, publish and tunnel send (bytes). */
export const DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024

/**
 * Limits of what a message carries besides its data, the same in the library, the relay
 * and its clients: a publish breaking one is refused at once with `InvalidArgumentError`
 * naming the field (docs/relay-protocol.md, "Message limits"). Together they fit in the
 * `FRAME_OVERHEAD` a link or relay frame allows beyond `maxMessageSize` (worst case about
 * 53 KiB: key, headers, a topic of 1024 characters as UTF-8, msgId, sender id and fixed
 * fields), so a message accepted at publish reaches every subscriber and consumer.
 */
/** Bytes a frame (link or relay) may hold beyond `maxMessageSize`: a message's other fields. */
export const FRAME_OVERHEAD = 64 * 1024
/** Largest message key (bytes). */
export const MAX_KEY_BYTES = 32 * 1024
/** Most headers on one message. */
export const MAX_HEADERS = 64
/** Longest header name (bytes of UTF-8); names are never empty. */
export const MAX_HEADER_NAME_BYTES = 256
/** Most bytes of one message's header names and values together (UTF-8). */
export const MAX_HEADERS_BYTES = 16 * 1024
/** Longest publish `msgId` (bytes of UTF-8); ids are never empty. */
export const MAX_MSG_ID_BYTES = 256
/** Longest topic or subscription pattern (characters). */
export const MAX_TOPIC_LENGTH = 1024
/**
 * Largest `maxMessageSize` a node accepts (bytes). Internal calls carry one stored message
 * plus its fields in a body of at most 16 MiB, and links queue 8 MiB per peer before
 * senders wait: 8 MiB keeps a message within both.
 */
export const MAX_MAX_MESSAGE_SIZE = 8 * 1024 * 1024
/**
 * Longest timeout (ms) of every public `timeout`, `ackWait` and other duration: 2^31 - 1,
 * about 24.8 days. Node's timers fire at once for longer delays, so longer ones are
 * refused with `InvalidArgumentError` rather than silently shortened.
 */
export const MAX_TIMEOUT = 2 ** 31 - 1
/** A stream replica unreachable this long is replaced by another member (ms). */
export const DEFAULT_REPLACE_REPLICA_AFTER = 60_000
/**
 * Bytes of raft entries a partition replica applies before it compacts its raft log (the
 * partition log holds the messages; the raft log keeps a quarter of this for followers
 * slightly behind).
 */
export const DEFAULT_RAFT_LOG_BYTES = 32 * 1024 * 1024
/**
 * Heartbeats a Raft leader sends within a follower's shortest election timeout, when the
 * driver is not given `heartbeatTick` (replication/driver.ts `defaultHeartbeatTick`): 3, so a
 * follower campaigns only after three heartbeats in a row went missing, and an idle group
 * costs a third of what one heartbeat per tick cost.
 */
export const RAFT_HEARTBEATS_PER_ELECTION = 3
/** Largest `streams.raftLogBytes` a node accepts: the raft log window is disk per replica. */
export const MAX_RAFT_LOG_BYTES = 16 * 1024 * 1024 * 1024
/** Default relay endpoint (thin clients and the CLI). */
export const DEFAULT_RELAY_HOST = '127.0.0.1'
export const DEFAULT_RELAY_PORT = 55555
/**
 * Default `relay.maxConnections`: connections the relay holds at once. At the limit a new
 * client is accepted by closing the oldest idle connection (no open subscription, consumer,
 * tunnel, membership or call); when none is idle it is refused (REFUSE).
 */
export const DEFAULT_RELAY_MAX_CONNECTIONS = 1024
/**
 * Default `relay.idleTimeoutMs`: a handshaken relay connection with nothing open (no
 * subscription, consumer, tunnel, membership or call in flight) and no frame from the client
 * for this long is closed (ms). A client that sends PING now and then stays connected.
 */
export const DEFAULT_RELAY_IDLE_TIMEOUT = 5 * 60_000
/** Default `relay.handshakeTimeoutMs`: a relay connection must send HELLO within this long (ms). */
export const DEFAULT_RELAY_HANDSHAKE_TIMEOUT = 5000
/** Default `http.host`: the metrics and health endpoint listens on loopback only. */
export const DEFAULT_HTTP_HOST = '127.0.0.1'
/**
 * `/readyz` fails when a hosted partition has had no leader for longer than this (ms): about
 * two election timeouts (10 ticks of 50 ms, randomized up to twice that).
 */
export const READY_LEADERLESS_MS = 1000
/**
 * `/readyz` on a node without a metadata replica of a joined cluster: the cluster's newest
 * stream table must be younger than this (ms; the metadata leader refreshes it every 10 s).
 */
export const READY_TABLE_MAX_AGE_MS = 30_000
/** Environment variable that overrides where CLI client commands attach (host:port). */
export const RELAY_ENV = 'PLEXUS_RELAY'

/**
 * Stream consumers (`consume`): how much a consumer holds fetched and not yet handed out
 * (durable consumers: not yet acknowledged) before it stops fetching.
 */
export const CONSUMER = {
  /** Messages in flight (fetched, not yet handed out) before fetching pauses. */
  maxMessagesInFlight: 4096,
  /**
   * Default `maxBytesInFlight`: bytes of messages in flight (plain: fetched and not yet
   * handed out; durable: not yet acknowledged) before fetching pauses.
   */
  maxBytesInFlight: 16 * 1024 * 1024,
  /**
   * Largest read one fetch asks a replica for (bytes); at most half of `maxBytesInFlight`
   * divided by the partitions read, so each partition can keep a long poll waiting.
   */
  fetchBytes: 1024 * 1024,
  /** Largest `max` of `Consumer.fetch`, and its default. */
  fetchMaxMessages: 4096,
  fetchDefaultMessages: 100,
  /** Largest `expires` of `Consumer.fetch` (ms), and its default. */
  fetchMaxExpires: 10 * 60_000,
  fetchDefaultExpires: 30_000,
  /** Default `ackWait` (ms) and `maxAckPending` of durable consumers. */
  ackWait: 30_000,
  maxAckPending: 1024,
  /** Most values of `ConsumeOptions.backoff`. */
  maxBackoff: 64,
  /** Pub/sub topic prefix of consumer advisories (`$` is a valid token character). */
  advisoryPrefix: '$plexus.advisory',
} as const

/** Default request timeout (ms). */
export const DEFAULT_REQUEST_TIMEOUT = 10_000
/**
 * Most requests one `requestMany` has in flight at once (one per member); further members
 * are asked as earlier ones answer.
 */
export const REQUEST_MANY_MAX_IN_FLIGHT = 64
/** Default per-member limits when joining a cluster. */
export const DEFAULT_LIMITS = {
  /** Requests running at once in this member's handler. */
  requests: 1024,
  /** Broadcast handlers running at once. */
  broadcasts: 256,
  /** Open tunnels. */
  tunnels: 128,
  /** Bytes of request payloads held by running handlers. */
  queueBytes: 64 * 1024 * 1024,
} as const

/** Cluster names: 1–64 chars of [A-Za-z0-9_-]. */
export const CLUSTER_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/
/** Network names: same alphabet, 1–64 chars. */
export const NETWORK_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/

/** Link (per-peer long-lived stream) settings. */
export const LINK = {
  /** Bytes queued for one peer before senders wait for the stream to drain. */
  maxQueuedBytes: 8 * 1024 * 1024,
  /** Largest frame a peer may send (bytes); a larger length prefix resets the link. */
  maxFrameSize: DEFAULT_MAX_MESSAGE_SIZE + FRAME_OVERHEAD,
  /** Heartbeat interval (ms): pings measure latency and prove the peer alive. */
  heartbeatInterval: 1000,
  /** A peer silent this long (ms) is considered dead and its link closed. */
  deadAfter: 3500,
  /** Time to open the link stream to a newly connected peer (ms). */
  openTimeout: 5000,
  /**
   * A link silent this long (ms; two heartbeats missed) is suspect: requests go to other
   * members while one is reachable, until the peer is heard again or `deadAfter` closes it.
   */
  suspectAfter: 2000,
  /**
   * Fair dispatch (`link/reader.ts`): frames one link dispatches per event-loop turn before
   * other links get theirs (a flooding peer's frames wait, its stream paused, while a good
   * peer's frame is served within a turn).
   */
  readSlice: 64,
  /** Bytes of frames one link dispatches per turn (at least one frame always goes). */
  readSliceBytes: 256 * 1024,
  /**
   * Time (ms) one link's frames may take per turn, checked every 8 frames: a good peer's
   * frame waits behind about this much of each busy link (64 echoed requests can take a
   * millisecond on a loaded machine).
   */
  readSliceMs: 0.25,
  /**
   * Share windows (ms) of fair dispatch: while the event loop was busier than
   * `readShareBusy` (its utilization) in the last window and another link was active, an
   * untrusted link (a peer that is not a proven member) that dispatched more than a slice
   * per window gets the shared slice for the next window: `readShareSlice` frames, an eighth
   * of the bytes and a quarter of the time of a full slice per turn. It still gets a slice
   * every turn, so what it may use is relative to the loop (turns come faster as slices
   * shrink) and a backlog keeps draining; only the others' frames wait less behind it.
   * Members always get the full slice.
   */
  readShareWindow: 20,
  readShareBusy: 0.5,
  readShareSlice: 8,
} as const

/**
 * Redialling known peers whose link dropped (`discovery/redial.ts`): members from
 * announcements, peers found on this host or by mDNS, and peers we had a link with.
 */
export const REDIAL = {
  /** First wait after a link drops or a dial fails (ms); it doubles at each failure. */
  minDelay: 250,
  /** Longest wait between two dials of one peer (ms). */
  maxDelay: 30_000,
  /**
   * After a link drops, the end with the higher peer id waits this much longer (ms) before its
   * first redial, so usually only one end dials (two dials would open two connections).
   */
  yieldDelay: 750,
  /** Each wait is shortened by a random share of up to this (0.5: between 50% and 100%). */
  jitter: 0.5,
  /**
   * A peer found by mDNS or on this host, or one we had a link with, is redialled for this
   * long (ms) after it was last found or last linked (members: as long as their
   * announcement has not expired).
   */
  forgetAfter: 60_000,
  /**
   * When any link comes up (the network may be back), peers waiting longer than `minDelay`
   * are dialled again at once; at most once per this many ms.
   */
  kickInterval: 1000,
  /** Most peers remembered for redialling (the oldest non-members are forgotten first). */
  maxPeers: 4096,
} as const

/**
 * Bounded links (`src/overlay/`): a node keeps at most `maxLinks` neighbour links, chosen for
 * connectivity, plus on-demand links to the peers it exchanges traffic with.
 */
export const OVERLAY = {
  /** Default `maxLinks`: neighbour links a node keeps (a network this size or smaller is a full mesh). */
  maxLinks: 24,
  /** Largest `maxLinks` accepted. */
  maxMaxLinks: 1024,
  /** Smallest `maxLinks` accepted: with 1, two pairs of nodes can each fill their only link and split the graph. */
  minMaxLinks: 2,
  /** On-demand links a node keeps, as a multiple of `maxLinks` (the least recently used close first). */
  onDemandFactor: 4,
  /** An on-demand link without data frames (requests, calls, publishes, tunnels) this long (ms) closes. */
  idleAfter: 60_000,
  /** How often (ms) neighbours are checked: proposals, trimming, idle on-demand links. */
  tickInterval: 1000,
  /**
   * How often (ms, jittered ±25%) a node compares one slice of its records with one random
   * neighbour by digest (anti-entropy push-pull, overlay/anti-entropy.ts).
   */
  antiEntropyInterval: 3000,
  /** A peer that refused or dropped us as a neighbour is not proposed to again for this long (ms). */
  declineFor: 60_000,
  /** An on-demand dial that failed makes the peer unreachable (requests fail over) for this long (ms). */
  failedFor: 5_000,
  /** Peers remembered for neighbour selection (the least recently heard of are forgotten first). */
  maxKnown: 10_000,
  /** Time for a neighbour proposal or drop call to be answered (ms). */
  callTimeout: 5_000,
  /** Messages queued per peer while its on-demand link opens (more are dropped and counted). */
  pendingMessages: 1024,
  /** Bytes queued per peer while its on-demand link opens (more are dropped and counted). */
  pendingBytes: 4 * 1024 * 1024,
} as const

/** Membership announcements. */
/**
 * Failure detection (overlay/swim.ts): SWIM's indirect probes and suspicion with Lifeguard's
 * local health, on top of link heartbeats. A crashed member is declared dead network-wide
 * about `probeTimeout` + the suspicion timeout after its neighbours' links to it fail.
 */
export const SWIM = {
  /** Neighbours asked to probe a peer whose link failed (K). */
  indirectProbes: 3,
  /** How long (ms) a node waits for their answers before it suspects the peer. */
  probeTimeout: 1500,
  /** Unit (ms) of the suspicion timeout: the link heartbeat interval. */
  interval: 1000,
  /** Shortest suspicion timeout = this × max(1, log10 N) × interval (N nodes known). */
  suspicionMult: 2,
  /** Longest suspicion timeout (no confirmations) = this × the shortest. */
  suspicionMaxMult: 3,
  /** Highest local-health score (every timeout × (1 + score)). */
  maxHealth: 8,
  /** How long (ms) a dead peer is remembered (a record older than its death cannot revive it). */
  deadFor: 60_000,
  /** Most peers suspected or remembered dead at once. */
  maxTracked: 4096,
  /** A helper asked to probe a peer it has no live link to dials it for at most this long (ms). */
  dialTimeout: 1000,
} as const

export const MEMBERSHIP = {
  /** Members re-sign their announcement this often (ms) so it stays fresh. */
  refreshInterval: 20_000,
  /** Announcements older (or further in the future) than this (ms) are refused. */
  maxAge: 60_000,
  /** Remembered last counters per (peer, cluster), to refuse replays (entries). */
  maxRemembered: 65_536,
} as const

/**
 * Logging: events a peer or client can repeat at will (refused announcements, refused stream
 * tables) are logged at most once per reason in this many ms, with a count of those dropped.
 */
export const LOG_RATE_INTERVAL = 60_000
/** An fsync (commit log or raft state) slower than this (ms) is logged as a stall. */
export const FSYNC_STALL_MS = 1000

/** Same-host discovery. */
export const LOCAL_DISCOVERY = {
  /** Rescan interval (ms) in addition to file-system notifications. */
  scanInterval: 1000,
} as const

/** Load balancing: members within this factor of the best latency, plus
 * `LATENCY_SLACK_MS`, count as equally fast (sub-millisecond noise must not decide). */
export const LATENCY_TOLERANCE = 1.5
export const LATENCY_SLACK_MS = 3
/** Weight of a new latency sample in the moving average. */
export const LATENCY_EWMA_ALPHA = 0.2
/**
 * Latency the balancer uses (`request/balancer.ts` `LatencyWindow`): the lowest heartbeat
 * round trip of the last `windowMs` (older samples age out), neutral (as fast as the best)
 * while a link is younger than `warmupMs` or has no recent sample.
 */
export const BALANCER_LATENCY = {
  /** Samples older than this (ms) no longer count. */
  windowMs: 5000,
  /** A new link counts as neutral this long (ms): a restarted member gets its share at once. */
  warmupMs: 2000,
  /** Samples kept per link (heartbeats come once a second). */
  samples: 8,
} as const

/**
 * Internal calls served (`rpc/rpc.ts`): bounds on what callers can make a node hold
 * (docs/security.md, "Per-peer bounds"). Over a bound a call is answered `OverloadedError`
 * without running.
 */
export const RPC = {
  /** Calls being served at once, from every peer together. */
  maxConcurrent: 8192,
  /** Calls being served at once for one remote peer (this node's own calls: only the total). */
  maxPerPeer: 1024,
  /**
   * Longest a served call's signal stays unaborted (ms), whatever deadline the caller sent:
   * long polls and other waits that follow the signal end by then.
   */
  maxServeMs: 60_000,
} as const

/**
 * Share of a member's `limits` one remote peer may hold at once: running requests and
 * their bytes (`requests`, `queueBytes`) and open tunnels (`tunnels`), so a single caller
 * never takes them all (docs/security.md, "Per-peer bounds"; `util/peer-share.ts`). This
 * node's own calls count only against the whole limit.
 */
export const PEER_SHARE = 0.25
/** A peer may always hold this many of a limit (the whole limit when it is smaller). */
export const PEER_SHARE_MIN = 16

/**
 * Connection bounds of the libp2p node (`transport/libp2p.ts`, `transport/connection-guard.ts`;
 * docs/security.md, "Hostile peers"). libp2p offers the totals and the per-host rate; the
 * per-host counts are ours. Same-host nodes share the loopback address, hence the high rate.
 */
export const CONNECTIONS = {
  /** Connections open at once, all peers together. */
  maxConnections: 1000,
  /** Inbound connections still upgrading (noise, yamux) at once, all hosts together. */
  maxPendingInbound: 256,
  /** Inbound connections one host may hold at once (a share of `maxConnections`). */
  perHost: 250,
  /** Of which still upgrading. */
  pendingPerHost: 64,
  /** New inbound connections one host may open per second (libp2p's rate limiter). */
  perHostPerSecond: 1000,
  /** Streams a remote peer may have open toward us on one connection (yamux). */
  inboundStreams: 64,
} as const

/**
 * Subscription patterns this node keeps for every peer together (each peer: at most 10,000,
 * `pubsub/pubsub.ts`); beyond it a peer's new patterns are dropped and counted
 * (`pubsub.refused.totalPatterns`).
 */
export const PEER_PATTERNS_TOTAL = 100_000

/**
 * Bytes of stored messages reads (`s.fetch`) hold at once on a serving replica, from their
 * read until their reply is encoded (`streams/access/read-budget.ts`). A read waiting for new
 * messages holds nothing.
 */
export const READS = {
  /** For one remote peer. */
  bytesPerPeer: 32 * 1024 * 1024,
  /** For every peer together. */
  bytesTotal: 256 * 1024 * 1024,
} as const

/**
 * Capabilities presented for publishing or reading (`s.grant`, `streams/access/grants.ts`) a member
 * keeps: per remote peer (the oldest forgotten beyond it) and in total (more are refused with
 * `OverloadedError`). A peer's are forgotten when its link goes down.
 */
export const GRANTS = {
  perPeer: 64,
  total: 16_384,
} as const

/** Longest a read (`s.fetch`) waits for new messages (ms), whatever the caller asks. */
export const MAX_LONG_POLL_MS = 30_000

/** The web dashboard served on the HTTP port (`src/observe/dashboard.ts`). */
export const DASHBOARD = {
  /** How often a snapshot with rates is pushed to each connected page (ms). */
  intervalMs: 1000,
  /** Pages connected to the live feed at once; more get 503 until one leaves. */
  maxClients: 16,
  /** Bytes an unread live feed may hold before its updates are skipped until it drains. */
  maxBufferedBytes: 1024 * 1024,
} as const

/**
 * A replica the placement no longer holds (a stream's `replicas` lowered, or a member
 * replaced) keeps running this long while it is still a voter of its partition's Raft group,
 * so the leader can commit the configuration change that removes it (with 2 voters, that
 * needs both). It stops sooner once its own log shows it removed; its data is kept (ms).
 */
export const RETIRE_GRACE_MS = 30_000
/**
 * Keys a partition replica's key index holds (`streams.last`, key-value buckets and the
 * `expectedRevision` check of a publish): the keys written most recently, each at about 100
 * bytes plus the key's length, so about 10 MiB per partition at the bound with short keys.
 * Beyond it the key whose latest record is oldest is dropped (streams/partition/key-index.ts).
 */
export const DEFAULT_KEY_INDEX_MAX_KEYS = 100_000

/**
 * Clusters found across networks through the Kademlia DHT (`discovery/dht.ts`, on with
 * `discovery.dht`): members advertise each joined cluster as a provider record; a call that
 * addresses a cluster with no known (or no reachable) member looks its providers up.
 */
export const DHT = {
  /** A member re-advertises each joined cluster this often (ms), jittered by up to 10%. */
  provideInterval: 10 * 60_000,
  /**
   * How long a provider record is kept by the nodes that store it (ms); a member that
   * crashed or left stays listed this long at most (records cannot be withdrawn remotely).
   */
  recordTtl: 30 * 60_000,
  /** First retry of an advertisement that reached no peer (ms); doubles up to `provideInterval`. */
  provideRetry: 1000,
  /** Longest one advertisement may run (ms). */
  provideTimeout: 30_000,
  /** Longest one lookup may run (ms); the call that started it stops waiting at its own deadline. */
  lookupTimeout: 10_000,
  /** Providers dialled per lookup (the lookup stops once this many are found). */
  maxProviders: 3,
  /** Lookups running at once; a call finding the limit reached fails as without the DHT. */
  maxLookups: 8,
  /** A finished lookup is reused this long (ms): no new lookup of that cluster meanwhile. */
  cacheMs: 10_000,
  /** After a lookup found providers, calls wait this long (ms) for their announcements. */
  reachWait: 5000,
  /** A call with no member known waits this long (ms) after the node started for the DHT's first peer. */
  firstPeerWait: 10_000,
  /** Clusters whose lookup state is remembered (the oldest finished ones go first). */
  maxEntries: 256,
} as const
/**
 * Purges by key (`streams.purge(name, { key })`) a partition replica remembers: per key, the
 * offset below which its messages are hidden (streams/partition/purged-keys.ts), about 100
 * bytes plus the key each, kept in a file and carried in partition snapshots. A mark is dropped
 * once retention or a purge `before` passed it; a purge of a further key beyond the bound is
 * refused (`InvalidArgumentError`) until then.
 */
export const DEFAULT_PURGED_KEYS_MAX = 4096
/** Longest key a purge by key names (bytes). */
export const MAX_PURGE_KEY_BYTES = 1024

/**
 * Circuit relay v2, AutoNAT and DCUtR (`transport/nat.ts`; docs/operations.md, "Behind a
 * NAT"): nodes behind a NAT reserve slots on relay-capable nodes and are dialled through them
 * until a direct connection replaces the relayed one.
 */
export const CIRCUIT_RELAY = {
  /** When to reserve relay slots: `auto` once peers see this node behind a NAT. */
  reserve: 'auto' as 'auto' | 'always' | 'never',
  /** Relays a node behind a NAT holds a slot on at once. */
  reservations: 2,
  /** Slots a relay server grants at once (libp2p's default is 15). */
  maxReservations: 64,
  /** Bytes one relayed connection may carry (both ways) before the relay ends it. */
  dataLimit: 4 * 1024 * 1024,
  /** How long one relayed connection may last (ms) before the relay ends it. */
  durationLimit: 10 * 60_000,
  /** Budget for the direct addresses of a member announced with relayed ones (ms); then the relay. */
  directFirstMs: 2000,
  /** Budget of one attempt to replace a relayed connection by a direct one (ms). */
  upgradeTimeout: 3000,
  /** Longest wait after a relayed connection opens for identify before trying a direct one (ms). */
  upgradeDelay: 2000,
  /** After a failed attempt, the next one waits this long (ms), doubling each time... */
  upgradeRetry: 30_000,
  /** ...up to this (ms), while the relayed connection is open. */
  upgradeRetryMax: 5 * 60_000,
  /** A link moves to a new direct connection once it carried nothing this long (ms)... */
  moveQuietMs: 100,
  /** ...or after this long at the latest (ms). */
  moveMaxWaitMs: 5000,
  /** NAT observations remembered (peers that told us the address they see us at). */
  maxObservations: 64,
} as const
