/**
 * Prometheus metrics of one node (docs/metrics.md lists every one). Each node has its own
 * prom-client `Registry` (never the global default one), so two nodes in one process do not
 * collide. Almost every value is read at scrape time by a `collect()` callback from what the
 * node already keeps (`status().counters`, links, hosted replicas, consumers), so the
 * per-message paths gain nothing; only the request outcome and latency (request/client.ts,
 * request/server.ts) and fsync latency (log/observers.ts) are observed as they happen.
 *
 * Label cardinality is bounded: peers only while linked, streams and partitions only while
 * hosted here, and at most `MAX_SERIES_PER_METRIC` label sets per metric (beyond that the
 * rest is dropped from the scrape, or counted under `cluster="_other"` for requests).
 */
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import type { NodeStatus } from '../types.js'
import { Buckets, registerHistogram } from './histogram.js'

/** Most label sets one metric exposes (clusters, peers, partitions, consumers). */
export const MAX_SERIES_PER_METRIC = 256
/** Buckets of the request latency histogram (seconds). */
const REQUEST_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
/** Buckets of the fsync latency histogram (seconds). */
const FSYNC_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]

/** One link as the metrics see it. */
export interface LinkStats {
  peer: string
  /** Smoothed heartbeat round trip (ms), null before a sample. */
  latencyMs: number | null
  queuedBytes: number
  bytesSent: number
  bytesReceived: number
}

/** One partition replica hosted on this node. */
export interface PartitionStats {
  cluster: string
  stream: string
  partition: number
  leader: boolean
  /** A leader is known (this node or another). */
  hasLeader: boolean
  term: number
  commitIndex: number
  appliedIndex: number
  /** Bytes of the raft log on disk. */
  logBytes: number
  /** Messages in the partition log (next offset − first offset). */
  logMessages: number
  /** Leader only: the largest `lastIndex − match` over followers (entries); 0 otherwise. */
  followerLag: number
}

/** One durable consumer open on this node. */
export interface ConsumerStats {
  stream: string
  durable: string
  /** Messages in the partitions it holds that it has not acknowledged (lag). */
  pending: number
  /** Messages handed out and not acknowledged yet. */
  unacked: number
}

/** Traffic totals kept as plain counters by the layers. */
export interface TrafficStats {
  pubsubPublished: number
  pubsubSentToPeers: number
  pubsubReceived: number
  broadcastsSent: number
  tunnelBytesSent: number
  tunnelBytesReceived: number
}

/** What the metrics read from the node at scrape time. */
export interface MetricsSource {
  status(): NodeStatus
  links(): LinkStats[]
  partitions(): PartitionStats[]
  consumers(): ConsumerStats[]
  traffic(): TrafficStats
}

/** A request outcome label from how the request ended. */
export function requestOutcome(err: unknown): string {
  if (err === undefined) return 'ok'
  switch ((err as Error | undefined)?.name) {
    case 'TimeoutError':
      return 'timeout'
    case 'AbortedError':
      return 'aborted'
    case 'NoMembersError':
      return 'no_members'
    case 'OverloadedError':
      return 'overloaded'
    case 'MemberLostError':
      return 'member_lost'
    case 'RemoteError':
      return 'remote_error'
    default:
      return 'error'
  }
}

let processRegistry: Registry | undefined
/**
 * The process metrics (CPU, RSS, heap, event-loop lag, GC), collected once per process:
 * they describe the process, not a node, and prom-client's event-loop monitor and GC
 * observer stay installed for good, so one set serves every node of the process.
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry
}

/** Request counts and latency of one cluster, kept as plain numbers (read at scrape time). */
interface RequestSeries {
  duration: Buckets
  sent: Map<string, number>
  served: Map<string, number>
}

/** A node's metrics: its registry plus the hooks the instrumented paths call. */
export class NodeMetrics {
  /** This node's registry (the process metrics are appended by `text()`). */
  readonly registry = new Registry()
  private readonly fsync = new Buckets(FSYNC_BUCKETS)
  private readonly series = new Map<string, RequestSeries>()
  private other: RequestSeries | undefined

  constructor(private readonly source: MetricsSource) {
    const registers = [this.registry]
    const series = () => {
      const all = [...this.series.entries()]
      if (this.other) all.push(['_other', this.other])
      return all
    }
    new Counter({
      name: 'plexus_requests_sent_total',
      help: 'Requests this node sent, by cluster and outcome (ok, timeout, no_members, overloaded, member_lost, remote_error, aborted, error)',
      labelNames: ['cluster', 'outcome'],
      registers,
      collect() {
        this.reset()
        for (const [cluster, s] of series())
          for (const [outcome, n] of s.sent) this.inc({ cluster, outcome }, n)
      },
    })
    new Counter({
      name: 'plexus_requests_served_total',
      help: 'Requests this node ran a handler for (or refused), by cluster and outcome (ok, error, overloaded, dropped)',
      labelNames: ['cluster', 'outcome'],
      registers,
      collect() {
        this.reset()
        for (const [cluster, s] of series())
          for (const [outcome, n] of s.served) this.inc({ cluster, outcome }, n)
      },
    })
    registerHistogram(
      this.registry,
      'plexus_request_duration_seconds',
      'Time from sending a request to its reply or failure, by cluster',
      () => series().map(([cluster, s]) => [{ cluster }, s.duration] as [Record<string, string>, Buckets]),
    )
    registerHistogram(
      this.registry,
      'plexus_log_fsync_duration_seconds',
      'Duration of each synced write (write + fdatasync, batched by group commit) of the commit logs under dataDir',
      () => [[{}, this.fsync]],
    )
    this.defineCollected()
  }

  /** A request sent by this node settled (`err` undefined: a reply). */
  requestDone(cluster: string, err: unknown, seconds: number): void {
    const s = this.seriesOf(cluster)
    const outcome = requestOutcome(err)
    s.sent.set(outcome, (s.sent.get(outcome) ?? 0) + 1)
    s.duration.observe(seconds)
  }

  /** A request this node serves ended (ok, error, overloaded, dropped). */
  requestServed(cluster: string, outcome: string): void {
    const s = this.seriesOf(cluster)
    s.served.set(outcome, (s.served.get(outcome) ?? 0) + 1)
  }

  /** One synced write of a commit log took `seconds`. */
  fsyncDone(seconds: number): void {
    this.fsync.observe(seconds)
  }

  /** The exposition text: this node's metrics, then the process metrics. */
  async text(): Promise<string> {
    const [mine, proc] = await Promise.all([this.registry.metrics(), processMetrics().metrics()])
    return `${mine}${proc}`
  }

  /** Content type of `text()`. */
  get contentType(): string {
    return this.registry.contentType
  }

  private seriesOf(cluster: string): RequestSeries {
    let s = this.series.get(cluster)
    if (s) return s
    if (this.series.size >= MAX_SERIES_PER_METRIC) {
      this.other ??= newSeries()
      return this.other
    }
    s = newSeries()
    this.series.set(cluster, s)
    return s
  }

  /** Metrics whose values are read at scrape time. */
  private defineCollected(): void {
    const src = this.source
    // One scrape reads the node once: the first collect() of a scrape reads it, the others
    // (run in the same turn) reuse it; a microtask forgets it before the next scrape.
    let cur:
      | { status: NodeStatus; links: LinkStats[]; parts: PartitionStats[]; traffic: TrafficStats }
      | undefined
    const snap = () => {
      if (!cur) {
        cur = {
          status: src.status(),
          links: src.links().slice(0, MAX_SERIES_PER_METRIC),
          parts: src.partitions().slice(0, MAX_SERIES_PER_METRIC),
          traffic: src.traffic(),
        }
        queueMicrotask(() => {
          cur = undefined
        })
      }
      return cur
    }
    const registers = [this.registry]
    new Gauge({
      name: 'plexus_node_info',
      help: 'Always 1; labels name the node',
      labelNames: ['id', 'network'],
      registers,
      collect() {
        const { status } = snap()
        this.reset()
        this.set({ id: status.id, network: status.network }, 1)
      },
    })
    const counter = (name: string, help: string, read: () => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset()
          this.inc(read())
        },
      })
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read())
        },
      })
    const ev = (name: string) => snap().status.counters[name] ?? 0
    gauge('plexus_requests_in_flight', 'Requests sent by this node waiting for a reply', () =>
      ev('requests.inFlight'),
    )
    gauge('plexus_requests_serving', 'Request handlers running on this node', () => ev('requests.serving'))
    counter(
      'plexus_broadcasts_sent_total',
      'Broadcasts this node originated',
      () => snap().traffic.broadcastsSent,
    )
    counter('plexus_broadcasts_delivered_total', 'Broadcasts delivered to a handler on this node', () =>
      ev('broadcasts.delivered'),
    )
    counter('plexus_broadcasts_dropped_total', 'Broadcasts dropped here (handler limit reached)', () =>
      ev('broadcasts.dropped'),
    )
    counter(
      'plexus_pubsub_messages_published_total',
      'publish() calls on this node',
      () => snap().traffic.pubsubPublished,
    )
    counter(
      'plexus_pubsub_messages_sent_total',
      'Pub/sub messages written to peers (one per subscribed peer)',
      () => snap().traffic.pubsubSentToPeers,
    )
    counter(
      'plexus_pubsub_messages_received_total',
      'Pub/sub messages received from peers for subscriptions here',
      () => snap().traffic.pubsubReceived,
    )
    new Counter({
      name: 'plexus_pubsub_messages_dropped_total',
      help: 'Pub/sub messages dropped: queue_full (a subscription iterator was full), unwanted (no local subscriber matched)',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset()
        this.inc({ reason: 'queue_full' }, ev('pubsub.dropped'))
        this.inc({ reason: 'unwanted' }, ev('pubsub.unwanted'))
      },
    })
    gauge('plexus_pubsub_subscriptions', 'Local subscriptions', () => ev('pubsub.subscriptions'))
    counter(
      'plexus_tunnel_sent_bytes_total',
      'Tunnel payload bytes sent',
      () => snap().traffic.tunnelBytesSent,
    )
    counter(
      'plexus_tunnel_received_bytes_total',
      'Tunnel payload bytes received',
      () => snap().traffic.tunnelBytesReceived,
    )
    gauge('plexus_tunnels_open', 'Tunnel ends open on this node', () => ev('tunnels.open'))
    gauge('plexus_links', 'Peers linked now', () => snap().links.length)
    gauge('plexus_links_neighbours', 'Neighbour links now (at most maxLinks)', () => ev('links.neighbours'))
    gauge('plexus_links_on_demand', 'On-demand links now (traffic with non-neighbours)', () =>
      ev('links.onDemand'),
    )
    gauge('plexus_overlay_suspects', 'Peers suspected now (failure detector)', () => ev('overlay.suspects'))
    gauge('plexus_overlay_dead', 'Peers declared dead, remembered 60 s', () => ev('overlay.deadKnown'))
    const perPeer = (name: string, help: string, read: (l: LinkStats) => number | null) =>
      new Gauge({
        name,
        help,
        labelNames: ['peer'],
        registers,
        collect() {
          this.reset()
          for (const l of snap().links) {
            const v = read(l)
            if (v !== null) this.set({ peer: l.peer }, v)
          }
        },
      })
    const perPeerTotal = (name: string, help: string, read: (l: LinkStats) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['peer'],
        registers,
        collect() {
          this.reset()
          for (const l of snap().links) this.inc({ peer: l.peer }, read(l))
        },
      })
    perPeer('plexus_link_latency_seconds', 'Heartbeat round trip to a linked peer (smoothed)', (l) =>
      l.latencyMs === null ? null : l.latencyMs / 1000,
    )
    perPeer(
      'plexus_link_queue_bytes',
      'Bytes queued on a link, not yet handed to the stream',
      (l) => l.queuedBytes,
    )
    perPeerTotal(
      'plexus_link_sent_bytes_total',
      'Bytes sent on the link to a peer (since the link opened)',
      (l) => l.bytesSent,
    )
    perPeerTotal(
      'plexus_link_received_bytes_total',
      'Bytes received from a peer on its link (since the link opened)',
      (l) => l.bytesReceived,
    )
    const perCluster = (name: string, help: string, read: (c: NodeStatus['clusters'][number]) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['cluster'],
        registers,
        collect() {
          this.reset()
          for (const c of snap().status.clusters.slice(0, MAX_SERIES_PER_METRIC))
            this.set({ cluster: c.name }, read(c))
        },
      })
    perCluster(
      'plexus_cluster_members',
      'Proven members of a cluster known to this node',
      (c) => c.members.length,
    )
    perCluster(
      'plexus_cluster_members_connected',
      'Members of a cluster this node has a link to (itself included)',
      (c) => c.members.filter((m) => m.connected).length,
    )
    const perPartition = (name: string, help: string, read: (p: PartitionStats) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['stream', 'partition'],
        registers,
        collect() {
          this.reset()
          for (const p of snap().parts)
            this.set({ stream: p.stream, partition: String(p.partition) }, read(p))
        },
      })
    perPartition('plexus_partition_leader', '1 when this replica leads the partition', (p) =>
      p.leader ? 1 : 0,
    )
    perPartition('plexus_partition_has_leader', '1 when a leader of the partition is known here', (p) =>
      p.hasLeader ? 1 : 0,
    )
    perPartition('plexus_partition_raft_term', 'Raft term of the replica', (p) => p.term)
    perPartition('plexus_partition_commit_index', 'Raft commit index of the replica', (p) => p.commitIndex)
    perPartition(
      'plexus_partition_applied_index',
      'Raft index applied to the partition log',
      (p) => p.appliedIndex,
    )
    perPartition('plexus_partition_log_bytes', 'Bytes of the replica raft log on disk', (p) => p.logBytes)
    perPartition('plexus_partition_log_messages', 'Messages held in the partition log', (p) => p.logMessages)
    perPartition(
      'plexus_partition_follower_lag_entries',
      'Leader only: entries the furthest follower is behind (0 on followers)',
      (p) => p.followerLag,
    )
    const perConsumer = (name: string, help: string, read: (c: ConsumerStats) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['stream', 'consumer'],
        registers,
        collect() {
          this.reset()
          const totals = new Map<string, { stream: string; consumer: string; v: number }>()
          for (const c of src.consumers()) {
            const k = `${c.stream}\0${c.durable}`
            const t = totals.get(k)
            if (t) t.v += read(c)
            else if (totals.size < MAX_SERIES_PER_METRIC)
              totals.set(k, { stream: c.stream, consumer: c.durable, v: read(c) })
          }
          for (const t of totals.values()) this.set({ stream: t.stream, consumer: t.consumer }, t.v)
        },
      })
    perConsumer(
      'plexus_consumer_pending_messages',
      'Durable consumers open here: messages in their partitions not acknowledged yet (lag)',
      (c) => c.pending,
    )
    perConsumer(
      'plexus_consumer_unacked_messages',
      'Durable consumers open here: messages handed out and not acknowledged yet',
      (c) => c.unacked,
    )
    new Counter({
      name: 'plexus_events_total',
      help: "The node's event counters (status().counters), by name: failovers, refusals, drops, errors",
      labelNames: ['event'],
      registers,
      collect() {
        this.reset()
        for (const [name, v] of Object.entries(snap().status.counters))
          if (!NOT_EVENTS.has(name)) this.inc({ event: name }, v)
      },
    })
  }
}

/**
 * Entries of `status().counters` left out of `plexus_events_total`: levels, not totals
 * (exported as gauges above), and totals with a metric of their own.
 */
const NOT_EVENTS = new Set([
  'requests.sent',
  'requests.served',
  'requests.failed',
  'pubsub.published',
  'pubsub.received',
  'pubsub.dropped',
  'pubsub.unwanted',
  'broadcasts.delivered',
  'broadcasts.dropped',
  'links.bytesSent',
  'links.bytesReceived',
  'links.neighbours',
  'links.onDemand',
  'links.maxLinks',
  'interest.records',
  'overlay.suspects',
  'overlay.deadKnown',
  'overlay.localHealth',
  'pubsub.farPending',
  'pubsub.queueDropped',
  'requests.inFlight',
  'requests.serving',
  'pubsub.subscriptions',
  'pubsub.peerPatterns',
  'pubsub.readyWaiters',
  'tunnels.open',
  'rpc.serving',
  'rpc.servingPeers',
  'relay.connections',
  'relay.subscriptions',
  'relay.tunnels',
  'relay.consumers',
  'relay.consumerBytes',
])

function newSeries(): RequestSeries {
  return { duration: new Buckets(REQUEST_BUCKETS), sent: new Map(), served: new Map() }
}
