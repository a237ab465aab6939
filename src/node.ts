/**
 * `createNode`: one process's overlay endpoint. It wires the layers together:
 * transport (libp2p) → links (one batched stream per peer) → cluster membership (signed
 * announcements) → request-reply, broadcast, pub/sub and tunnels, plus discovery and the
 * optional relay endpoint for thin clients. See docs/architecture.md.
 */
import { type RelayServer, startRelay } from '../relay/server/server.js'
import { Broadcaster } from './broadcast/broadcast.js'
import { MemberDirectory, unservedMessage } from './cluster/membership.js'
import {
  DEFAULT_REQUEST_TIMEOUT,
  FRAME_OVERHEAD,
  FSYNC_STALL_MS,
  LINK,
  LOG_RATE_INTERVAL,
} from './constants.js'
import { ClusterDht } from './discovery/dht.js'
import { Dialer } from './discovery/dialer.js'
import { AbortedError, InvalidArgumentError, MemberLostError, TimeoutError } from './errors.js'
import { kvDeps } from './kv/deps.js'
import { openBucket } from './kv/index.js'
import { decodeReply, decodeRequest, encodeBytesFrame, FrameType } from './link/frames.js'
import { abortCounter } from './link/link.js'
import { LinkManager } from './link/manager.js'
import { observeLogs } from './log/observers.js'
import type { Dashboard, Health, HttpEndpoint, NodeMetrics, NodeParts } from './observe/index.js'
import { type NodeConfig, parseLimits, parseNodeOptions } from './options.js'
import { FarDelivery } from './overlay/deliver.js'
import { OverlayGossip } from './overlay/gossip.js'
import { InterestRecords, OVERLAY_INTEREST } from './overlay/interest.js'
import { OVERLAY_DROP, OVERLAY_PROPOSE, Overlay } from './overlay/overlay.js'
import { PubSub } from './pubsub/pubsub.js'
import { PUBSUB_SYNC, SYNC_TIMEOUT } from './pubsub/ready.js'
import { checkTopic } from './pubsub/subject.js'
import { RaftTransport } from './replication/transport.js'
import { RequestClient } from './request/client.js'
import { requestMany } from './request/many.js'
import { type RequestHandler, RequestServer } from './request/server.js'
import { PeerRpc, PeerUnreachableError } from './rpc/rpc.js'
import { STREAM_CALL_TIMEOUT } from './streams/client.js'
import { peerLiveness } from './streams/host/liveness.js'
import { MAX_TABLE_BYTES } from './streams/meta/directory.js'
import { StreamService } from './streams/service.js'
import { loadIdentity } from './transport/identity.js'
import { buildLibp2p, dhtRouting, type PlexusLibp2p, protocols } from './transport/libp2p.js'
import type { NatService } from './transport/nat.js'
import { TunnelManager } from './tunnel/manager.js'
import type {
  ConsumeOptions,
  Consumer,
  FlushOptions,
  JoinOptions,
  KvBucket,
  KvOptions,
  ManyReply,
  Membership,
  Message,
  NodeOptions,
  NodeStatus,
  PlexusNode,
  PublishAck,
  PublishOptions,
  RequestManyOptions,
  RequestOptions,
  RequestReply,
  Streams,
  SubscribeOptions,
  Subscription,
  Tunnel,
  TunnelOptions,
} from './types.js'
import { type BinaryReader, type BinaryWriter, DecodeError } from './util/binary.js'
import { type DataDirLock, lockDataDir } from './util/data-dir-lock.js'
import { tuneGc } from './util/gc-tuning.js'
import { parseKey } from './util/keys.js'
import { childLogger, RateLimitedLog, SILENT_LOGGER } from './util/logger.js'
import { PeerInputError, refusedCounter } from './util/peer-input.js'
import {
  checkClusterName,
  checkFunction,
  checkHeaders,
  checkKey,
  checkMsgId,
  checkOptions,
  checkPositiveInt,
  checkSignal,
  checkSubscribeArgs,
  checkTimeout,
  describe,
  toPayload,
} from './util/validate.js'

/** How long after start a request for a cluster with no known members waits for one (ms). */
const DISCOVERY_GRACE = 3000
/** Body of a pub/sub sync call and of its answer. */
const NO_BYTES = new Uint8Array(0)

/**
 * Creates and starts a node. Resolves once it listens and discovery runs.
 * Throws `InvalidArgumentError` naming the bad option.
 */
export async function createNode(options: NodeOptions = {}): Promise<PlexusNode> {
  const node = new Node(parseNodeOptions(options))
  try {
    await node.start()
  } catch (err) {
    // A half-started node (e.g. the relay port was taken) must not keep running.
    await node.stop().catch(() => {})
    throw err
  }
  return node
}

/**
 * Internal seams of a node for the layers built on it (durable streams) and their tests:
 * the Raft transport over links and the proven members of a cluster. Not part of the
 * public API.
 */
export function nodeInternals(node: PlexusNode): {
  raft: RaftTransport
  members(cluster: string): string[]
  /**
   * Tests only: with `false` the node passes on no other node's announcements (no snapshot
   * when a link comes up, no flooding onwards), so peers linked only to it learn members
   * another way (the DHT).
   */
  relayAnnouncements(on: boolean): void
  overlay: Overlay
  records: InterestRecords
} {
  if (!(node instanceof Node)) throw new InvalidArgumentError('not a node made by createNode')
  return {
    raft: node.raft,
    members: (c) => node.membersOf(c),
    relayAnnouncements: (on) => {
      node.relaysAnnouncements = on
    },
    overlay: node.overlay,
    records: node.records,
  }
}

class Node implements PlexusNode {
  private libp2p!: PlexusLibp2p
  private links!: LinkManager
  private directory!: MemberDirectory
  private server!: RequestServer
  private client!: RequestClient
  private pubsub!: PubSub
  private broadcaster!: Broadcaster
  private tunnels!: TunnelManager
  private dialer!: Dialer
  /** Cluster advertising and lookups through the DHT (`discovery.dht`), else undefined. */
  private dht: ClusterDht | undefined
  /** False: other nodes' announcements are not passed on (tests; see nodeInternals). */
  relaysAnnouncements = true
  /** Which links are kept: neighbours and on-demand links (internal; see nodeInternals). */
  overlay!: Overlay
  /** Every node's signed interest, spread over the neighbours (bounded links). */
  records!: InterestRecords
  /** Publishes to subscribers without a link. */
  private far!: FarDelivery
  /** Digests, anti-entropy and failure detection over the neighbours. */
  private gossip!: OverlayGossip
  /** Raft traffic of every group this node takes part in (internal; see nodeInternals). */
  raft!: RaftTransport
  private rpc!: PeerRpc
  private streamService!: StreamService
  private relayServer: RelayServer | undefined
  /** Metrics, readiness and their HTTP endpoint (`http` option; observe/). */
  private metrics: NodeMetrics | undefined
  private health: Health | undefined
  private httpServer: HttpEndpoint | undefined
  private dashboard: Dashboard | undefined
  private unobserveLogs: (() => void) | undefined
  private readonly counters: Record<string, number> = {}
  private changeWaiters: Array<() => void> = []
  private readonly joins = new Map<string, Membership>()
  private startedAt = 0
  private stopping: Promise<void> | undefined
  /** The data directory's lock, held from start to stop (one process per dataDir). */
  private dirLock: DataDirLock | undefined
  id = ''

  constructor(private readonly cfg: NodeConfig) {}

  get network(): string {
    return this.cfg.network
  }

  get addresses(): string[] {
    return this.libp2p.getMultiaddrs().map((a) => a.toString())
  }

  /** Largest payload accepted (bytes). */
  get maxMessageSize(): number {
    return this.cfg.maxMessageSize
  }

  get relayAddress(): string | undefined {
    return this.relayServer?.address
  }

  get relayWsAddress(): string | undefined {
    return this.relayServer?.wsAddress
  }

  get httpAddress(): string | undefined {
    return this.httpServer?.address
  }

  async start(): Promise<void> {
    if (this.cfg.gcTuning) tuneGc()
    if (this.cfg.dataDir !== undefined) this.dirLock = lockDataDir(this.cfg.dataDir)
    const privateKey = await loadIdentity(this.cfg.dataDir)
    this.libp2p = await buildLibp2p({
      network: this.cfg.network,
      cipher: this.cfg.cipher,
      privateKey,
      listen: this.cfg.listen,
      bootstrap: this.cfg.bootstrap,
      networkKey: this.cfg.networkKey,
      mdns: this.cfg.mdns,
      dht: this.cfg.dht,
      count: (c) => this.count(c),
      mdnsFound: (peer) => this.dialer?.mdnsFound(peer.id.toString(), peer.multiaddrs.map(String)),
      circuitRelay: this.cfg.circuitRelay,
      // A relay slot made or lost: members re-announce with the new addresses at once.
      addressesChanged: () => this.directory?.refresh(),
      linkActivity: (p) => {
        const l = this.links?.get(p)
        return l ? l.sentBytes + l.bytesReceived : 0
      },
      linkBusy: (p) => this.client.memberStats(p).outstanding > 0 || this.server.servingFor(p) > 0,
      relink: (p) => void this.links?.ensure(p),
    })
    const self = (this.id = this.libp2p.peerId.toString())
    this.startedAt = Date.now()
    const now = () => Date.now()
    const count = (c: string) => this.count(c)
    const link = (p: string) => this.links.get(p)
    const members = (c: string) => this.directory.members(c).map((m) => m.peer)
    const discovering = () => Date.now() - this.startedAt < DISCOVERY_GRACE
    const routing = dhtRouting(this.libp2p, () => this.notifyChange())
    if (routing) {
      this.dht = new ClusterDht({
        network: this.cfg.network,
        self,
        provide: routing.provide,
        withdraw: routing.withdraw,
        findProviders: routing.findProviders,
        ready: routing.ready,
        linked: (p) => this.links.get(p) !== undefined,
        known: (c, p) => this.directory.isMember(c, p),
        dial: (p, addrs) => this.dialer.providerFound(p, addrs),
        changed: () => this.notifyChange(),
      })
    }
    const dht = this.dht
    const lookup = dht && ((c: string) => dht.lookup(c, this.directory.members(c).length === 0))
    const nextChange = (signal: AbortSignal) => this.nextChange(signal)
    // Loaded only when asked for: nodes without `http` do not load prom-client.
    const observe = this.cfg.http ? await import('./observe/index.js') : undefined
    if (observe) {
      this.metrics = new observe.NodeMetrics(observe.nodeMetricsSource(this, () => this.parts()))
    }
    const metrics = this.metrics
    if (this.cfg.dataDir !== undefined) this.unobserveLogs = this.observeLogs(this.cfg.dataDir)
    this.server = new RequestServer({
      now,
      sendTo: (p, enc) => this.sendTo(p, enc),
      count,
      served: metrics && ((c, outcome) => metrics.requestServed(c, outcome)),
    })
    this.client = new RequestClient({
      self,
      now,
      members,
      servers: (c, role) => this.directory.servers(c, role),
      link,
      servesLocally: (c) => this.directory.joined(c),
      runLocal: (c, data, headers, remaining) => this.server.runLocal(c, data, headers, remaining, self),
      nextChange,
      discovering,
      lookup,
      count,
      unreachable: (p) => this.dialer.unreachable(p) || this.overlay.unreachable(p),
      want: (p) => this.overlay.want(p),
      settled: metrics && ((c, err, t) => metrics.requestDone(c, err, t)),
    })
    this.records = new InterestRecords({
      self,
      network: this.cfg.network,
      now,
      sign: async (d) => privateKey.sign(d),
      addresses: () => this.addresses.slice(0, 16),
      patterns: () => this.pubsub.localPatterns(),
      queues: () => this.pubsub.localQueues(),
      unreachable: (p) => this.overlay.unreachable(p),
      flood: (bytes, except) => {
        for (const l of this.links.all()) {
          if (l.peer !== except && this.overlay.isNeighbour(l.peer))
            this.rpc.notify(l.peer, OVERLAY_INTEREST, bytes)
        }
      },
      learned: (p, addrs) => this.overlay.learn(p, addrs),
      accepted: (p, counter) => this.gossip.swim.onRecord(p, counter),
      count,
    })
    this.pubsub = new PubSub({
      self,
      links: () => this.links.all(),
      link,
      count,
      sync: (p) => this.syncPeer(p),
      farRoute: (t) => this.records.route(t),
      sendFar: (p, frame) => this.far.send(p, frame),
      farGroups: this.records,
      interestChanged: () => this.records.changed(),
    })
    this.far = new FarDelivery({
      link,
      open: (p) => this.overlay.open(p),
      count: (c, n = 1) => void (this.counters[c] = (this.counters[c] ?? 0) + n),
    })
    this.broadcaster = new Broadcaster({
      self,
      members,
      isMember: (c, p) => this.directory.isMember(c, p),
      linkQueueBytes: LINK.maxQueuedBytes,
      link,
      far: this.far,
      unreachable: (p) => this.dialer.unreachable(p) || this.overlay.unreachable(p),
      count,
    })
    this.raft = new RaftTransport({ sendTo: (p, enc) => this.sendTo(p, enc), count })
    this.rpc = new PeerRpc({
      self,
      sendTo: (p, enc, undeliverable) => this.sendTo(p, enc, undeliverable),
      count,
      full: (p) => this.links.get(p)?.full ?? false,
    })
    this.rpc.handle(PUBSUB_SYNC, () => NO_BYTES)
    this.streamService = new StreamService({
      self,
      network: this.cfg.network,
      dataDir: this.cfg.dataDir,
      raft: this.raft,
      rpc: this.rpc,
      maxMessageSize: this.cfg.maxMessageSize,
      members,
      storageMembers: (c) => {
        const storing = this.directory.servers(c, 'storage')
        // No member known: a stream call waits for changes until its deadline; look it up.
        if (storing.length === 0) lookup?.(c)
        return storing
      },
      clusters: () => this.directory.clusterNames(),
      signer: (c) => this.directory.signer(c),
      credentials: this.cfg.credentials,
      publicKey: (c) => this.directory.publicKey(c),
      flood: (bytes, except) => {
        for (const l of this.links.all()) {
          if (l.peer !== except) l.writeControl((w) => encodeBytesFrame(w, FrameType.StreamTable, bytes))
        }
      },
      nextChange,
      count,
      isUp: peerLiveness(self, link, (p) => this.syncPeer(p)),
      replaceAfterMs: this.cfg.replaceReplicaAfter,
      raftLogBytes: this.cfg.raftLogBytes,
      logger: childLogger(this.cfg.logger, 'streams'),
      advise: (topic, data) => void this.pubsub.publish(topic, data, undefined, undefined)?.catch(() => {}),
    })
    this.streamService.start()
    this.tunnels = new TunnelManager({
      self,
      link,
      open: (p) => this.overlay.open(p),
      pick: (c, exclude) => this.client.pick(c, new Set([...exclude, self]), 'tunnel'),
      unserved: (c) => unservedMessage(this.directory, c, 'tunnel'),
      nextChange,
      discovering,
      lookup,
      maxMessageSize: this.cfg.maxMessageSize,
      count,
    })
    this.directory = new MemberDirectory({
      network: this.cfg.network,
      self,
      now,
      addresses: () => this.addresses.slice(0, 16),
      flood: (bytes, except) => {
        if (except !== undefined && !this.relaysAnnouncements) return
        for (const l of this.links.all()) {
          if (l.peer !== except) l.writeControl((w) => encodeBytesFrame(w, FrameType.Announce, bytes))
        }
      },
      changed: (cluster, peer, added, entry) => {
        this.broadcaster.invalidate()
        if (peer === self) {
          // nothing to dial
        } else if (added && entry) {
          this.dialer.member(peer, entry.addrs)
          this.dht?.memberAdded(cluster, peer)
        } else if (!added && !this.directory.clusterNames().some((c) => this.directory.isMember(c, peer)))
          this.dialer.notMember(peer)
        this.notifyChange()
      },
      refreshed: (e) => {
        if (e.peer !== self && !this.links.get(e.peer)) this.dialer.heard(e.peer, e.addrs)
      },
      logger: childLogger(this.cfg.logger, 'membership'),
    })
    this.links = new LinkManager(
      this.libp2p,
      {
        protocol: protocols(this.cfg.network).link,
        maxFrameSize: this.cfg.maxMessageSize + FRAME_OVERHEAD,
        logger: childLogger(this.cfg.logger, 'link'),
        keep: (p) => this.overlay.wantsLink(p),
      },
      {
        onUp: (l) => {
          this.gossip.linkUp(l.peer)
          for (const bytes of this.streamService.directory.snapshot())
            l.writeControl((w) => encodeBytesFrame(w, FrameType.StreamTable, bytes))
          this.pubsub.onLinkUp(l)
          this.dialer.linkUp(l.peer)
          this.dht?.linkUp()
          this.overlay.linkUp(l)
          this.notifyChange()
        },
        onDown: (l) => {
          this.client.onLinkDown(l)
          this.rpc.onLinkDown(l.peer)
          this.streamService.onLinkDown(l.peer)
          this.tunnels.onLinkDown(l.peer)
          this.gossip.linkDown(l.peer)
          this.overlay.linkDown(l.peer)
          this.dialer.linkDown(l.peer)
          this.notifyChange()
        },
        onPeerGone: (peer) => {
          this.pubsub.onPeerGone(peer)
          this.rpc.onPeerGone(peer)
          this.server.onPeerGone(peer)
          this.broadcaster.onPeerGone(peer)
        },
        onFrame: (peer, type, body) => this.onFrame(peer, type, body),
        onAbort: (_peer, err) => this.count(abortCounter(err)),
        trusted: (peer) => this.directory.clusterNames().some((c) => this.directory.isMember(c, peer)),
        onThrottle: () => this.count('links.throttled'),
      },
    )
    this.dialer = new Dialer({
      libp2p: this.libp2p,
      network: this.cfg.network,
      networkKey: this.cfg.networkKey,
      linked: (p) => this.links.get(p) !== undefined,
      ensureLink: (p) => this.links.ensure(p),
      count,
      shouldDial: (p) => this.overlay.wantsLink(p),
      found: (p, addrs) => this.overlay.learn(p, addrs),
      logger: childLogger(this.cfg.logger, 'discovery'),
    })
    this.overlay = new Overlay({
      self,
      maxLinks: this.cfg.maxLinks,
      now,
      link,
      links: () => this.links.all(),
      takeUse: (p) => this.links.takeUse(p),
      hangUp: (p) => this.links.hangUp(p),
      dial: (p, addrs) => this.dialer.dialNow(p, addrs),
      call: (p, method, body, timeout) => this.rpc.call(p, method, body, { timeout }),
      count,
      changed: () => this.notifyChange(),
      neighbourAdded: (p) => this.gossip.neighbourAdded(p),
      logger: childLogger(this.cfg.logger, 'overlay'),
    })
    this.gossip = new OverlayGossip({
      ...{ self, now, rpc: this.rpc, link, links: () => this.links.all(), overlay: this.overlay },
      ...{ directory: this.directory, records: this.records, relays: () => this.relaysAnnouncements },
      dial: (p) => this.dialer.dialNow(p, this.overlay.addresses(p)),
      changed: () => this.notifyChange(),
    })
    this.rpc.handle(OVERLAY_PROPOSE, (_b, ctx) => this.overlay.onPropose(ctx.from))
    this.rpc.handle(OVERLAY_DROP, (_b, ctx) => this.overlay.onDrop(ctx.from))
    this.rpc.handle(OVERLAY_INTEREST, this.records.onCall)
    this.overlay.start()
    await this.links.start()
    this.directory.start()
    this.records.start()
    this.gossip.start()
    await this.dialer.start({ local: this.cfg.local, bootstrap: this.cfg.bootstrap })
    if (this.cfg.relay) {
      this.relayServer = await startRelay(this, {
        ...this.cfg.relay,
        maxMessageSize: this.cfg.maxMessageSize,
        logger: childLogger(this.cfg.logger, 'relay'),
      })
    }
    if (this.cfg.http && observe && this.metrics) {
      this.health = new observe.Health(observe.nodeHealthSource(this, () => this.parts()))
      this.health.start()
      const dashboard = (this.dashboard = observe.createDashboard(this))
      // Extra routes go in the list below (tried in order after the built-in ones): observe/http.ts.
      this.httpServer = await observe.startHttp(
        this.cfg.http,
        { metrics: this.metrics, health: this.health },
        [(req, res) => dashboard.handle(req, res)],
      )
    }
    childLogger(this.cfg.logger, 'node').info(
      {
        peer: self,
        network: this.cfg.network,
        addresses: this.addresses,
        dataDir: this.cfg.dataDir ?? null,
        relay: this.relayServer?.address ?? null,
      },
      'node started',
    )
  }

  /**
   * Watches the commit logs under `dir`: a synced write's duration goes to the metrics (with
   * `http`), and one slower than `FSYNC_STALL_MS` is logged as a stall (at most once per
   * `LOG_RATE_INTERVAL`, with the count of others); a failed background flush or maintenance
   * (retention, compaction), which no caller sees, is logged as an error (rate-limited the
   * same way). Nothing is registered when neither listens.
   */
  private observeLogs(dir: string): (() => void) | undefined {
    const metrics = this.metrics
    const log = childLogger(this.cfg.logger, 'storage')
    if (metrics === undefined && log === SILENT_LOGGER) return undefined
    const stalls = new RateLimitedLog(log, LOG_RATE_INTERVAL)
    const failures = new RateLimitedLog(log, LOG_RATE_INTERVAL)
    return observeLogs(dir, {
      synced: (seconds) => {
        metrics?.fsyncDone(seconds)
        const ms = Math.round(seconds * 1000)
        if (ms >= FSYNC_STALL_MS)
          stalls.log('warn', 'fsync', { ms, dataDir: dir }, 'fsync stall: a synced write was slow')
      },
      backgroundError: (task, logDir, err) =>
        failures.log(
          'error',
          `${task} ${logDir}`,
          { task, dir: logDir, err: err instanceof Error ? `${err.name}: ${err.message}` : String(err) },
          'commit log background task failed',
        ),
    })
  }

  /**
   * Pub/sub readiness (pubsub/ready.ts): resolves once `peer` answered a sync call sent
   * after our earlier interest frames. An error answer is an answer too (an older node
   * without the method, or one too busy to run it, read the frames before it all the same).
   */
  private syncPeer(peer: string): Promise<unknown> {
    return this.rpc.call(peer, PUBSUB_SYNC, NO_BYTES, { timeout: SYNC_TIMEOUT }).catch((err) => {
      // No answer came: the link closed, the peer was unreachable or silent, or we stopped.
      if (
        err instanceof MemberLostError ||
        err instanceof PeerUnreachableError ||
        err instanceof TimeoutError ||
        err instanceof AbortedError
      )
        throw err
      return 'answered'
    })
  }

  /** Writes a frame to a peer, waiting for our link to it to open when it is not up yet. */
  private sendTo(peer: string, encode: (w: BinaryWriter) => void, undeliverable?: () => void): void {
    const l = this.links.get(peer)
    if (l) {
      l.write(encode)
      return
    }
    const fail = () => {
      this.count('frames.undeliverable')
      undeliverable?.()
    }
    this.overlay.open(peer).then((opened) => {
      if (opened && !opened.closed) opened.write(encode)
      else fail()
    }, fail)
  }

  /**
   * A frame from a peer. One whose fields break the public API's rules (`PeerInputError`,
   * util/peer-input.ts) is counted and dropped; the link stays (the framing is intact).
   */
  private onFrame(peer: string, type: number, body: BinaryReader): void {
    try {
      this.dispatchFrame(peer, type, body)
    } catch (err) {
      if (!(err instanceof PeerInputError)) throw err
      this.count(refusedCounter(err))
    }
  }

  private dispatchFrame(peer: string, type: number, body: BinaryReader): void {
    const max = this.cfg.maxMessageSize
    switch (type) {
      case FrameType.Announce: {
        const bytes = body.bytes('announcement', 64 * 1024)
        body.end('announce')
        this.directory.receive(bytes, peer)
        return
      }
      case FrameType.Request:
        this.server.onRequest(peer, decodeRequest(body, max))
        return
      case FrameType.Reply:
        this.client.onReply(peer, decodeReply(body, max))
        return
      case FrameType.Cancel: {
        const id = body.u32('cancel id')
        body.end('cancel')
        this.server.onCancel(peer, id)
        return
      }
      case FrameType.Interest:
        this.pubsub.onInterest(peer, body)
        return
      case FrameType.Publish:
        this.pubsub.onPublish(peer, body, max)
        return
      case FrameType.Broadcast:
        this.broadcaster.onFrame(peer, body, max)
        return
      case FrameType.TunnelOpen:
        this.tunnels.onFrame('open', peer, body)
        return
      case FrameType.TunnelAccept:
        this.tunnels.onFrame('accept', peer, body)
        return
      case FrameType.TunnelData:
        this.tunnels.onFrame('data', peer, body)
        return
      case FrameType.TunnelCredit:
        this.tunnels.onFrame('credit', peer, body)
        return
      case FrameType.Raft:
        this.raft.onFrame(peer, body)
        return
      case FrameType.RpcCall:
        this.rpc.onCall(peer, body)
        return
      case FrameType.RpcReply:
        this.rpc.onReply(peer, body)
        return
      case FrameType.StreamTable: {
        const bytes = body.bytes('stream table', MAX_TABLE_BYTES)
        body.end('stream table')
        this.streamService.onTable(peer, bytes)
        return
      }
      case FrameType.TunnelClose:
        this.tunnels.onFrame('close', peer, body)
        return
      default:
        this.count('frames.unknown')
        throw new DecodeError(`unknown frame type ${type}`)
    }
  }

  private count(name: string): void {
    this.counters[name] = (this.counters[name] ?? 0) + 1
  }

  private notifyChange(): void {
    const waiters = this.changeWaiters
    this.changeWaiters = []
    for (const fn of waiters) fn()
  }

  /** Resolves on the next membership or link change, or after 250 ms (re-check). */
  private nextChange(signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new AbortedError('aborted'))
      const timer = setTimeout(() => done(), 250)
      timer.unref()
      const done = () => {
        clearTimeout(timer)
        signal.removeEventListener('abort', onAbort)
        resolve()
      }
      const onAbort = () => {
        clearTimeout(timer)
        this.changeWaiters = this.changeWaiters.filter((f) => f !== done)
        reject(new AbortedError('aborted'))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.changeWaiters.push(done)
    })
  }

  /** True when this node is a member of `cluster` or has a link to one. */
  private reachesMember(cluster: string): boolean {
    return this.directory.members(cluster).some((m) => m.peer === this.id || this.links.get(m.peer))
  }

  /**
   * Waits (at most `DEFAULT_REQUEST_TIMEOUT`) until a member of `cluster` is reachable, while
   * a DHT lookup may still find one (`ClusterDht.lookup`) or during the node's first
   * `DISCOVERY_GRACE` ms (the lookup starts once the DHT has a peer to ask); for broadcasts,
   * which have no timeout of their own.
   */
  private async lookedUp(cluster: string): Promise<void> {
    const signal = AbortSignal.timeout(DEFAULT_REQUEST_TIMEOUT)
    const young = () => Date.now() - this.startedAt < DISCOVERY_GRACE
    const none = () => this.directory.members(cluster).length === 0
    while (!this.reachesMember(cluster) && (this.dht?.lookup(cluster, none()) || young())) {
      try {
        await this.nextChange(signal)
      } catch {
        return
      }
    }
  }

  /** The layers observation reads (observe/source.ts). */
  private parts(): NodeParts {
    return {
      self: this.id,
      running: this.stopping === undefined,
      bootstrap: this.cfg.bootstrap.length,
      links: this.links,
      directory: this.directory,
      pubsub: this.pubsub,
      broadcaster: this.broadcaster,
      tunnels: this.tunnels,
      streams: this.streamService,
    }
  }

  /** Proven members of a cluster (peer ids). */
  membersOf(cluster: string): string[] {
    return this.directory.members(cluster).map((m) => m.peer)
  }

  private assertRunning(): void {
    if (this.stopping) throw new AbortedError('node is stopped')
  }

  async join(cluster: string, options: JoinOptions): Promise<Membership> {
    this.assertRunning()
    checkClusterName(cluster, 'cluster')
    const o = checkOptions<JoinOptions>(options, 'options')
    if (o.key === undefined)
      throw new InvalidArgumentError('options.key (the cluster key) is required to join')
    const key = parseKey(o.key, 'options.key')
    const onRequest = checkFunction<RequestHandler>(o.onRequest, 'options.onRequest')
    const onBroadcast = checkFunction<NonNullable<JoinOptions['onBroadcast']>>(
      o.onBroadcast,
      'options.onBroadcast',
    )
    const onTunnel = checkFunction<NonNullable<JoinOptions['onTunnel']>>(o.onTunnel, 'options.onTunnel')
    const limits = parseLimits(o.limits)
    if (this.joins.has(cluster))
      throw new InvalidArgumentError(`cluster ${cluster} is already joined by this node`)
    this.server.serve(cluster, onRequest, limits)
    this.broadcaster.serve(cluster, onBroadcast, limits.broadcasts)
    this.tunnels.serve(cluster, onTunnel, limits.tunnels)
    this.directory.join(cluster, key, {
      request: onRequest !== undefined,
      broadcast: onBroadcast !== undefined,
      tunnel: onTunnel !== undefined,
      storage: this.cfg.dataDir !== undefined,
    })
    await this.streamService.onJoin(cluster)
    this.dht?.advertise(cluster)
    let left = false
    const membership: Membership = {
      cluster,
      leave: async () => {
        if (left) return
        left = true
        this.joins.delete(cluster)
        this.directory.leave(cluster)
        this.dht?.withdraw(cluster)
        this.server.unserve(cluster)
        this.broadcaster.unserve(cluster)
        this.tunnels.unserve(cluster)
        await this.streamService.onLeave(cluster)
      },
    }
    this.joins.set(cluster, membership)
    return membership
  }

  async request(
    cluster: string,
    data: Uint8Array | string,
    options: RequestOptions = {},
  ): Promise<RequestReply> {
    this.assertRunning()
    checkClusterName(cluster, 'cluster')
    const payload = toPayload(data, 'data', this.cfg.maxMessageSize)
    const o = checkOptions<RequestOptions>(options, 'options')
    const timeout = checkTimeout(o.timeout, 'options.timeout')
    checkSignal(o.signal)
    if (o.retry !== undefined && typeof o.retry !== 'boolean') {
      throw new InvalidArgumentError(`options.retry must be a boolean, got ${describe(o.retry)}`)
    }
    const headers = checkHeaders(o.headers)
    return this.client.request(cluster, payload, { timeout, signal: o.signal, retry: o.retry, headers })
  }

  requestMany(
    cluster: string,
    data: Uint8Array | string,
    options: RequestManyOptions = {},
  ): AsyncIterable<ManyReply> {
    this.assertRunning()
    checkClusterName(cluster, 'cluster')
    const payload = toPayload(data, 'data', this.cfg.maxMessageSize)
    const o = checkOptions<RequestManyOptions>(options, 'options')
    const many = {
      maxReplies: checkPositiveInt(o.maxReplies, 'options.maxReplies') ?? Number.POSITIVE_INFINITY,
      timeout: checkTimeout(o.timeout, 'options.timeout') ?? DEFAULT_REQUEST_TIMEOUT,
      headers: checkHeaders(o.headers),
      signal: o.signal,
    }
    checkSignal(o.signal)
    return requestMany(this.client, cluster, payload, many)
  }

  async broadcast(cluster: string, data: Uint8Array | string): Promise<number> {
    this.assertRunning()
    checkClusterName(cluster, 'cluster')
    const payload = toPayload(data, 'data', this.cfg.maxMessageSize)
    // Members known but not linked get it over on-demand links: wait only while none is known.
    if (this.dht && this.directory.members(cluster).length === 0) await this.lookedUp(cluster)
    return this.broadcaster.broadcast(cluster, payload)
  }

  async tunnel(cluster: string, options: TunnelOptions = {}): Promise<Tunnel> {
    this.assertRunning()
    checkClusterName(cluster, 'cluster')
    const o = checkOptions<TunnelOptions>(options, 'options')
    const timeout = checkTimeout(o.timeout, 'options.timeout')
    checkSignal(o.signal)
    return this.tunnels.open(cluster, timeout, o.signal)
  }

  subscribe(pattern: string, options?: SubscribeOptions): Subscription
  subscribe(
    pattern: string,
    handler: ((msg: Message) => void | Promise<void>) | undefined,
    options?: SubscribeOptions,
  ): Subscription
  subscribe(
    pattern: string,
    handlerOrOptions?: ((msg: Message) => void | Promise<void>) | SubscribeOptions,
    options?: SubscribeOptions,
  ): Subscription {
    this.assertRunning()
    const { handler, queue } = checkSubscribeArgs<(msg: Message) => void | Promise<void>>(
      handlerOrOptions,
      options,
    )
    return this.pubsub.subscribe(pattern, handler, queue)
  }

  async flush(options: FlushOptions = {}): Promise<void> {
    this.assertRunning()
    const o = checkOptions<FlushOptions>(options, 'options')
    const timeout = checkTimeout(o.timeout, 'options.timeout') ?? DEFAULT_REQUEST_TIMEOUT
    checkSignal(o.signal)
    await this.pubsub.flush(timeout, o.signal)
    // Peers stop counting when the node stops (their calls fail): that is no acknowledgement.
    if (this.stopping) throw new AbortedError('node is stopped')
  }

  async publish(
    topic: string,
    data: Uint8Array | string,
    options: PublishOptions = {},
  ): Promise<PublishAck | undefined> {
    this.assertRunning()
    checkTopic(topic, 'topic')
    const payload = toPayload(data, 'data', this.cfg.maxMessageSize)
    const o = checkOptions<PublishOptions>(options, 'options')
    const key = checkKey(o.key)
    const headers = checkHeaders(o.headers)
    if (o.ack !== undefined && o.ack !== 'none' && o.ack !== 'leader' && o.ack !== 'all') {
      throw new InvalidArgumentError(`options.ack must be 'none', 'leader' or 'all', got ${describe(o.ack)}`)
    }
    const timeout = checkTimeout(o.timeout, 'options.timeout') ?? STREAM_CALL_TIMEOUT
    checkMsgId(o.msgId)
    const ack = o.ack ?? 'none'
    const stored = this.streamService.publish(
      topic,
      payload,
      key,
      headers,
      ack,
      timeout,
      o.msgId,
      o.capability,
    )
    stored?.catch(() => {}) // awaited below; no unhandled rejection while pub/sub waits
    const wait = this.pubsub.publish(topic, payload, key, headers)
    if (wait) await wait
    return stored && (await stored)
  }

  get streams(): Streams {
    return this.streamService.streams
  }

  consume(stream: string, options?: ConsumeOptions): Consumer {
    this.assertRunning()
    return this.streamService.consume(stream, options)
  }

  kv(bucket: string, options: KvOptions): Promise<KvBucket> {
    this.assertRunning()
    return openBucket(this.streams, bucket, options, (o) =>
      kvDeps(this.streamService, this.cfg.maxMessageSize, o),
    )
  }

  /** The circuit relay / reachability service of the libp2p node (`transport/nat.ts`). */
  private natService(): NatService | undefined {
    return this.libp2p.services.nat as NatService | undefined
  }

  status(): NodeStatus {
    const nat = this.natService()
    const peers = this.links.all().map((l) => {
      const conns = this.libp2p.getConnections().filter((c) => c.remotePeer.toString() === l.peer)
      const relayed = conns.length > 0 && conns.every((c) => c.limits != null)
      return {
        id: l.peer,
        addresses: conns.map((c) => c.remoteAddr.toString()),
        latencyMs: l.latencyMs === null ? null : Math.round(l.latencyMs * 1000) / 1000,
        encryption: conns[0]?.encryption ?? null,
        link: this.overlay.isNeighbour(l.peer) ? ('neighbour' as const) : ('on-demand' as const),
        relayed,
        relayedReason: relayed ? (nat?.relayedReason(l.peer) ?? 'no direct connection yet') : null,
      }
    })
    const relayServer = this.libp2p.services.circuitRelay as
      | { reservations: { keys(): Iterable<{ toString(): string }> } }
      | undefined
    const clusters = this.directory.clusterNames().map((name) => ({
      name,
      joined: this.directory.joined(name),
      members: this.directory.members(name).map((m) => {
        const s = this.client.memberStats(m.peer)
        const local = m.peer === this.id
        return {
          id: m.peer,
          connected: local || this.links.get(m.peer) !== undefined,
          outstanding: s.outstanding,
          latencyMs: local ? 0 : (s.latencyMs ?? this.links.get(m.peer)?.latencyMs ?? null),
          roles: { ...m.roles },
        }
      }),
    }))
    const counters: Record<string, number> = { ...this.counters }
    for (const [reason, n] of Object.entries(this.directory.refused))
      counters[`announcements.refused.${reason}`] = n
    for (const [reason, n] of Object.entries(this.streamService.directory.refused))
      counters[`streamTables.refused.${reason}`] = n
    counters['requests.inFlight'] = this.client.inFlight
    counters['requests.sent'] = this.client.sent
    counters['links.bytesSent'] = this.links.sentBytes
    counters['links.bytesReceived'] = this.links.receivedBytes
    const lc = this.overlay.counts()
    counters['links.neighbours'] = lc.neighbours
    counters['links.onDemand'] = lc.onDemand
    counters['links.maxLinks'] = this.cfg.maxLinks
    counters['links.idleClosed'] = this.overlay.closed.idle
    counters['links.lruClosed'] = this.overlay.closed.lru
    counters['links.trimmed'] = this.overlay.closed.trimmed
    counters['links.refusedByPeers'] = this.overlay.closed.refused
    Object.assign(counters, this.gossip.counters())
    counters['pubsub.farPending'] = this.far.pending
    const ps = this.pubsub.stats()
    counters['pubsub.subscriptions'] = ps.subscriptions
    counters['pubsub.published'] = this.pubsub.published
    counters['pubsub.received'] = this.pubsub.received
    counters['pubsub.queueDropped'] = ps.dropped
    counters['pubsub.peerPatterns'] = ps.patternsFromPeers
    counters['pubsub.readyWaiters'] = ps.readyWaiters
    counters['tunnels.open'] = this.tunnels.openCount
    if (this.dht) {
      const d = this.dht.counters
      counters['dht.lookups'] = d.lookups
      counters['dht.providersFound'] = d.providersFound
      counters['dht.membersReached'] = d.membersReached
      counters['dht.provides'] = d.provides
      counters['dht.provideMisses'] = d.provideMisses
    }
    const rpc = this.rpc.stats()
    counters['rpc.serving'] = rpc.serving
    counters['rpc.servingPeers'] = rpc.servingPeers
    counters['requests.serving'] = this.server.serving
    const bc = this.broadcaster.heldForPeers()
    counters['broadcasts.origins'] = bc.origins
    counters['broadcasts.forwardBytes'] = bc.forwardBytes
    counters['broadcasts.handlersForPeers'] = bc.handlers
    if (this.relayServer) {
      const r = this.relayServer.stats()
      counters['relay.connections'] = r.connections
      counters['relay.subscriptions'] = r.subscriptions
      counters['relay.subscriptionDrops'] = r.subscriptionDrops
      counters['relay.tunnels'] = r.tunnels.length
      counters['relay.consumers'] = r.consumers.length
      counters['relay.consumerBytes'] = r.consumerBytes
      counters['relay.outboundBytes'] = r.outboundBytes
      counters['relay.idleClosed'] = r.idleClosed
      counters['relay.evicted'] = r.evicted
      counters['relay.refused'] = r.refused
    }
    return {
      id: this.id,
      network: this.cfg.network,
      addresses: this.addresses,
      peers,
      nat: {
        ...(nat?.status() ?? { reachability: 'unknown', reason: 'not started', reservations: [] }),
        serving: relayServer ? [...relayServer.reservations.keys()].map(String) : null,
      },
      clusters,
      counters,
      streams: this.streamService.status(),
    }
  }

  stop(): Promise<void> {
    if (!this.stopping) this.stopping = this.doStop()
    return this.stopping
  }

  /** Stops whatever `start` got to (it may have failed half way). */
  private async doStop(): Promise<void> {
    this.health?.stop()
    this.dashboard?.close()
    await this.httpServer?.close()
    this.unobserveLogs?.()
    const log = childLogger(this.cfg.logger, 'node')
    if (this.id !== '') log.info({ peer: this.id }, 'node stopping')
    await this.relayServer?.close()
    // Peers forget our interest at once (sent as an internal call: before rpc closes).
    await this.records?.stop()
    this.rpc?.close()
    await this.streamService?.stop()
    this.directory?.leaveAll()
    this.directory?.stop()
    this.dht?.stop()
    this.client?.abortAll()
    this.server?.abortAll()
    this.tunnels?.closeAll()
    this.pubsub?.close()
    this.far?.clear()
    this.overlay?.stop()
    this.gossip?.stop()
    await this.dialer?.stop()
    await this.links?.stop()
    await this.libp2p?.stop()
    this.dirLock?.release()
    this.notifyChange()
    if (this.id !== '') log.info({ peer: this.id }, 'node stopped')
  }
}
