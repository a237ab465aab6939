/**
 * `createNode`: one process's overlay endpoint. It wires the layers together:
 * transport (libp2p) → links (one batched stream per peer) → cluster membership (signed
 * announcements) → request client/server, plus discovery (same host, mDNS, bootstrap)
 * and the optional relay endpoint for thin clients. See docs/architecture.md.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { startRelay, type RelayServer } from '../relay/server.js'
import { MemberDirectory } from './cluster/membership.js'
import {
  DEFAULT_LIMITS,
  DEFAULT_LISTEN,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_NETWORK,
  DEFAULT_RELAY_HOST,
  DEFAULT_RELAY_PORT,
  LINK,
} from './constants.js'
import { LocalDiscovery } from './discovery/local.js'
import { AbortedError, InvalidArgumentError } from './errors.js'
import { decodeReply, decodeRequest, encodeBytesFrame, FrameType } from './link/frames.js'
import { LinkManager } from './link/manager.js'
import { RequestClient } from './request/client.js'
import { type RequestHandler, RequestServer } from './request/server.js'
import { loadIdentity } from './transport/identity.js'
import { buildLibp2p, type PlexusLibp2p, protocols } from './transport/libp2p.js'
import type { JoinOptions, Limits, Membership, NodeOptions, NodeStatus, PlexusNode, RequestOptions } from './types.js'
import { type BinaryReader, type BinaryWriter, DecodeError } from './util/binary.js'
import { parseKey } from './util/keys.js'
import {
  checkClusterName,
  checkFunction,
  checkNetworkName,
  checkOptions,
  checkPort,
  checkPositiveInt,
  checkStringArray,
  checkTimeout,
  describe,
  toPayload,
} from './util/validate.js'

/** How long after start a request for a cluster with no known members waits for one (ms). */
const DISCOVERY_GRACE = 3000

/**
 * Creates and starts a node. Resolves once it listens and discovery runs.
 * Throws `InvalidArgumentError` naming the bad option.
 */
export async function createNode(options: NodeOptions = {}): Promise<PlexusNode> {
  const o = checkOptions<NodeOptions>(options, 'options')
  const network = checkNetworkName(o.network ?? DEFAULT_NETWORK, 'network')
  const networkKey = o.networkKey === undefined ? undefined : parseKey(o.networkKey, 'networkKey')
  const listen = checkStringArray(o.listen, 'listen') ?? DEFAULT_LISTEN
  const bootstrapAddrs = checkStringArray(o.bootstrap, 'bootstrap') ?? []
  const discovery = checkOptions<NonNullable<NodeOptions['discovery']>>(o.discovery, 'discovery')
  const maxMessageSize = checkPositiveInt(o.maxMessageSize, 'maxMessageSize') ?? DEFAULT_MAX_MESSAGE_SIZE
  if (o.dataDir !== undefined && (typeof o.dataDir !== 'string' || o.dataDir === '')) {
    throw new InvalidArgumentError(`dataDir must be a non-empty path string, got ${describe(o.dataDir)}`)
  }
  for (const [i, a] of [...listen.map((a) => ['listen', a]), ...bootstrapAddrs.map((a) => ['bootstrap', a])].entries()) {
    try {
      multiaddr(a[1])
    } catch {
      throw new InvalidArgumentError(`${a[0]}[${i}] is not a valid multiaddr: ${describe(a[1])}`)
    }
  }
  let relay: { host: string; port: number } | undefined
  if (o.relay !== undefined && o.relay !== false) {
    const r = checkOptions<{ host?: string; port?: number }>(o.relay, 'relay')
    if (r.host !== undefined && typeof r.host !== 'string') {
      throw new InvalidArgumentError(`relay.host must be a string, got ${describe(r.host)}`)
    }
    relay = { host: r.host ?? DEFAULT_RELAY_HOST, port: checkPort(r.port, 'relay.port') ?? DEFAULT_RELAY_PORT }
  }
  const mdnsOn = discovery.mdns !== undefined && discovery.mdns !== false
  const node = new Node({
    network,
    networkKey,
    listen,
    bootstrap: bootstrapAddrs,
    local: discovery.local !== false,
    mdns: mdnsOn,
    dht: discovery.dht === true,
    dataDir: o.dataDir,
    relay,
    maxMessageSize,
  })
  await node.start()
  return node
}

interface NodeConfig {
  network: string
  networkKey: Uint8Array | undefined
  listen: string[]
  bootstrap: string[]
  local: boolean
  mdns: boolean
  dht: boolean
  dataDir: string | undefined
  relay: { host: string; port: number } | undefined
  maxMessageSize: number
}

class Node implements PlexusNode {
  private libp2p!: PlexusLibp2p
  private links!: LinkManager
  private directory!: MemberDirectory
  private server!: RequestServer
  private client!: RequestClient
  private localDiscovery: LocalDiscovery | undefined
  private relayServer: RelayServer | undefined
  private readonly counters: Record<string, number> = {}
  private changeWaiters: Array<() => void> = []
  private readonly joins = new Map<string, Membership>()
  private readonly lastDial = new Map<string, number>()
  private bootstrapTimer: NodeJS.Timeout | undefined
  private startedAt = 0
  private stopping: Promise<void> | undefined
  id = ''

  constructor(private readonly cfg: NodeConfig) {}

  get network(): string {
    return this.cfg.network
  }

  get addresses(): string[] {
    return this.libp2p.getMultiaddrs().map((a) => a.toString())
  }

  get relayAddress(): string | undefined {
    return this.relayServer?.address
  }

  /** The libp2p node underneath (for tests and advanced use). */
  get p2p(): PlexusLibp2p {
    return this.libp2p
  }

  async start(): Promise<void> {
    const privateKey = await loadIdentity(this.cfg.dataDir)
    this.libp2p = await buildLibp2p({
      network: this.cfg.network,
      privateKey,
      listen: this.cfg.listen,
      bootstrap: this.cfg.bootstrap,
      networkKey: this.cfg.networkKey,
      mdns: this.cfg.mdns,
      dht: this.cfg.dht,
    })
    this.id = this.libp2p.peerId.toString()
    this.startedAt = Date.now()
    const self = this.id
    const now = () => Date.now()
    this.server = new RequestServer({ now, sendTo: (p, enc) => this.sendTo(p, enc), count: (c) => this.count(c) })
    this.client = new RequestClient({
      self,
      now,
      members: (c) => this.directory.members(c).map((m) => m.peer),
      link: (p) => this.links.get(p),
      servesLocally: (c) => this.directory.joined(c),
      runLocal: (c, data, remaining) => this.server.runLocal(c, data, remaining, self),
      nextChange: (signal) => this.nextChange(signal),
      discovering: () => Date.now() - this.startedAt < DISCOVERY_GRACE,
      count: (c) => this.count(c),
    })
    this.directory = new MemberDirectory({
      network: this.cfg.network,
      self,
      now,
      addresses: () => this.addresses.slice(0, 16),
      flood: (bytes, except) => {
        for (const link of this.links.all()) {
          if (link.peer !== except) link.write((w) => encodeBytesFrame(w, FrameType.Announce, bytes))
        }
      },
      changed: (_cluster, peer, added, entry) => {
        if (added && entry && peer !== self && !this.links.get(peer)) this.dial(peer, entry.addrs)
        this.notifyChange()
      },
    })
    this.links = new LinkManager(
      this.libp2p,
      { protocol: protocols(this.cfg.network).link, maxFrameSize: this.cfg.maxMessageSize + 64 * 1024 },
      {
        onUp: (link) => {
          for (const bytes of this.directory.snapshot()) {
            link.write((w) => encodeBytesFrame(w, FrameType.Announce, bytes))
          }
          this.notifyChange()
        },
        onDown: (link) => {
          this.client.onLinkDown(link)
          this.notifyChange()
        },
        onFrame: (peer, type, body) => this.onFrame(peer, type, body),
      },
    )
    await this.links.start()
    this.directory.start()
    this.libp2p.addEventListener('peer:discovery', (evt) => {
      const info = evt.detail
      if (info.id.equals(this.libp2p.peerId)) return
      this.dial(info.id.toString(), info.multiaddrs.map((m: Multiaddr) => m.toString()))
    })
    if (this.cfg.local) {
      this.localDiscovery = new LocalDiscovery({
        network: this.cfg.network,
        networkKey: this.cfg.networkKey,
        self,
        addresses: () => this.localAddresses(),
        found: (peer) => {
          // The lower id dials at once; the other waits a little to avoid crossed dials.
          if (this.links.get(peer.id)) return
          const delay = self < peer.id ? 0 : 1500
          const seen = this.lastDial.get(`seen/${peer.id}`) ?? Date.now()
          this.lastDial.set(`seen/${peer.id}`, seen)
          if (Date.now() - seen >= delay) this.dial(peer.id, peer.addrs)
        },
      })
      await this.localDiscovery.start()
    }
    if (this.cfg.bootstrap.length > 0) {
      const dialBootstrap = () => {
        for (const a of this.cfg.bootstrap) {
          const ma = multiaddr(a)
          const peer = ma.getComponents().find((c) => c.name === 'p2p')?.value
          if (peer && this.links.get(peer)) continue
          this.libp2p.dial(ma, { signal: AbortSignal.timeout(LINK.openTimeout) }).catch(() => {})
        }
      }
      dialBootstrap()
      this.bootstrapTimer = setInterval(dialBootstrap, 5000)
      this.bootstrapTimer.unref()
    }
    if (this.cfg.relay) {
      this.relayServer = await startRelay(this, this.cfg.relay)
    }
  }

  private localAddresses(): string[] {
    const all = this.libp2p.getMultiaddrs().map((a) => a.toString())
    const loop = all.filter((a) => a.startsWith('/ip4/127.') || a.startsWith('/ip6/::1/'))
    return loop.length > 0 ? loop : all
  }

  /** Dials a peer unless linked or dialled in the last 2 s. */
  private dial(peer: string, addrs: string[]): void {
    if (this.stopping || peer === this.id || this.links.get(peer)) return
    const last = this.lastDial.get(peer) ?? 0
    if (Date.now() - last < 2000) return
    this.lastDial.set(peer, Date.now())
    let id: ReturnType<typeof peerIdFromString>
    try {
      id = peerIdFromString(peer)
    } catch {
      return
    }
    const mas: Multiaddr[] = []
    for (const a of addrs) {
      try {
        mas.push(multiaddr(a))
      } catch {
        // skip malformed
      }
    }
    void (async () => {
      try {
        if (mas.length > 0) await this.libp2p.peerStore.merge(id, { multiaddrs: mas })
        await this.libp2p.dial(id, { signal: AbortSignal.timeout(LINK.openTimeout) })
        await this.links.ensure(id)
      } catch {
        this.count('dials.failed')
      }
    })()
  }

  /** Writes a frame to a peer, waiting for our link to it to open when it is not up yet. */
  private sendTo(peer: string, encode: (w: BinaryWriter) => void): void {
    const link = this.links.get(peer)
    if (link) {
      link.write(encode)
      return
    }
    let id: ReturnType<typeof peerIdFromString>
    try {
      id = peerIdFromString(peer)
    } catch {
      return
    }
    this.links.ensure(id).then(
      (l) => {
        if (l && !l.closed) l.write(encode)
        else this.count('frames.undeliverable')
      },
      () => this.count('frames.undeliverable'),
    )
  }

  private onFrame(peer: string, type: number, body: BinaryReader): void {
    switch (type) {
      case FrameType.Announce: {
        const bytes = body.bytes('announcement', 64 * 1024)
        body.end('announce')
        this.directory.receive(bytes, peer)
        return
      }
      case FrameType.Request:
        this.server.onRequest(peer, decodeRequest(body, this.cfg.maxMessageSize))
        return
      case FrameType.Reply:
        this.client.onReply(peer, decodeReply(body, this.cfg.maxMessageSize))
        return
      case FrameType.Cancel: {
        const id = body.u32('cancel id')
        body.end('cancel')
        this.server.onCancel(peer, id)
        return
      }
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

  private nextChange(signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new AbortedError('aborted'))
      const done = () => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      }
      const onAbort = () => {
        this.changeWaiters = this.changeWaiters.filter((f) => f !== done)
        reject(new AbortedError('aborted'))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.changeWaiters.push(done)
      // Re-check periodically too: discovery grace may end without any event.
      setTimeout(done, 250).unref()
    })
  }

  private assertRunning(): void {
    if (this.stopping) throw new AbortedError('node is stopped')
  }

  async join(cluster: string, options: JoinOptions): Promise<Membership> {
    this.assertRunning()
    checkClusterName(cluster, 'cluster')
    const o = checkOptions<JoinOptions>(options, 'options')
    if (o.key === undefined) throw new InvalidArgumentError('options.key (the cluster key) is required to join')
    const key = parseKey(o.key, 'options.key')
    const onRequest = checkFunction<RequestHandler>(o.onRequest, 'options.onRequest')
    checkFunction(o.onBroadcast, 'options.onBroadcast')
    checkFunction(o.onTunnel, 'options.onTunnel')
    const l = checkOptions<Limits>(o.limits, 'options.limits')
    const limits: Required<Limits> = {
      requests: checkPositiveInt(l.requests, 'options.limits.requests') ?? DEFAULT_LIMITS.requests,
      broadcasts: checkPositiveInt(l.broadcasts, 'options.limits.broadcasts') ?? DEFAULT_LIMITS.broadcasts,
      tunnels: checkPositiveInt(l.tunnels, 'options.limits.tunnels') ?? DEFAULT_LIMITS.tunnels,
      queueBytes: checkPositiveInt(l.queueBytes, 'options.limits.queueBytes') ?? DEFAULT_LIMITS.queueBytes,
    }
    if (this.joins.has(cluster)) throw new InvalidArgumentError(`cluster ${cluster} is already joined by this node`)
    this.server.serve(cluster, onRequest, limits)
    this.directory.join(cluster, key)
    let left = false
    const membership: Membership = {
      cluster,
      leave: async () => {
        if (left) return
        left = true
        this.joins.delete(cluster)
        this.directory.leave(cluster)
        this.server.unserve(cluster)
      },
    }
    this.joins.set(cluster, membership)
    return membership
  }

  async request(cluster: string, data: Uint8Array | string, options: RequestOptions = {}): Promise<Uint8Array> {
    this.assertRunning()
    checkClusterName(cluster, 'cluster')
    const payload = toPayload(data, 'data', this.cfg.maxMessageSize)
    const o = checkOptions<RequestOptions>(options, 'options')
    const timeout = checkTimeout(o.timeout, 'options.timeout')
    if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
      throw new InvalidArgumentError(`options.signal must be an AbortSignal, got ${describe(o.signal)}`)
    }
    if (o.retry !== undefined && typeof o.retry !== 'boolean') {
      throw new InvalidArgumentError(`options.retry must be a boolean, got ${describe(o.retry)}`)
    }
    return this.client.request(cluster, payload, { timeout, signal: o.signal, retry: o.retry })
  }

  status(): NodeStatus {
    const peers = this.links.all().map((l) => ({
      id: l.peer,
      addresses: this.libp2p
        .getConnections()
        .filter((c) => c.remotePeer.toString() === l.peer)
        .map((c) => c.remoteAddr.toString()),
      latencyMs: l.latencyMs === null ? null : Math.round(l.latencyMs * 1000) / 1000,
    }))
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
        }
      }),
    }))
    const counters: Record<string, number> = { ...this.counters }
    for (const [reason, n] of Object.entries(this.directory.refused)) counters[`announcements.refused.${reason}`] = n
    counters['requests.inFlight'] = this.client.inFlight
    return { id: this.id, network: this.cfg.network, addresses: this.addresses, peers, clusters, counters }
  }

  stop(): Promise<void> {
    if (!this.stopping) this.stopping = this.doStop()
    return this.stopping
  }

  private async doStop(): Promise<void> {
    if (this.bootstrapTimer) clearInterval(this.bootstrapTimer)
    await this.relayServer?.close()
    this.directory.leaveAll()
    this.directory.stop()
    this.client.abortAll()
    this.server.abortAll()
    await this.localDiscovery?.stop()
    await this.links.stop()
    await this.libp2p.stop()
    this.notifyChange()
  }
}
