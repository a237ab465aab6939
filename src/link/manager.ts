/**
 * Keeps one link per connected peer of the same network. On every new connection it opens
 * the link stream; a peer that does not speak this network's link protocol (another
 * network) is hung up on and not tried again for a while: `FOREIGN_RETRY_MIN` ms, doubling at
 * each refusal up to `FOREIGN_RETRY_MAX` (a node restarted with another `network` on the same
 * peer id is linked again later). A sign that it speaks the protocol now (it opens a link
 * stream to us, or identify lists the protocol) ends the wait at once; at most
 * `FOREIGN_MAX` such peers are remembered. Heartbeats measure latency and find silent peers: a peer not
 * heard from for `deadAfter` ms is disconnected. Frames received from any peer are handed
 * to the registered handler by type.
 *
 * Guarantees: at most one sending link per peer at a time; `onUp` runs once per link
 * before any frame is written on it; `onDown` runs once when it closes.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { LATENCY_EWMA_ALPHA, LINK } from '../constants.js'
import type { PlexusLibp2p } from '../transport/libp2p.js'
import { releasedOnSend } from '../transport/noise/index.js'
import type { Logger } from '../types.js'
import type { BinaryReader } from '../util/binary.js'
import { SILENT_LOGGER } from '../util/logger.js'
import { encodeU64Frame, FrameType } from './frames.js'
import { Link, readFrames } from './link.js'

/** First wait before a peer that refused our link protocol is tried again (ms). */
export const FOREIGN_RETRY_MIN = 10_000
/** Longest such wait: it doubles at each refusal up to this (ms). */
export const FOREIGN_RETRY_MAX = 5 * 60_000
/** Most peers remembered as refusing our link protocol (the oldest are forgotten first). */
export const FOREIGN_MAX = 4096

/** Options of the link manager (defaults in constants.ts `LINK`). */
export interface LinkManagerOptions {
  protocol: string
  maxFrameSize?: number
  maxQueuedBytes?: number
  heartbeatInterval?: number
  deadAfter?: number
  now?: () => number
  /** Where links up and down are logged (component `link`); default silent. */
  logger?: Logger
  /**
   * Whether a link whose stream closed while the peer is still connected is reopened (the
   * link policy, src/overlay/: not an idle on-demand link). Default: always.
   */
  keep?(peer: string): boolean
}

/** Link lifecycle callbacks and frame dispatch. */
export interface LinkEvents {
  onUp(link: Link): void
  onDown(link: Link): void
  /** Every connection to the peer has closed. */
  onPeerGone(peer: string): void
  onFrame(peer: string, type: number, body: BinaryReader): void
  /** The peer's link stream was reset on what it sent (`abortCounter` names the reason). */
  onAbort?(peer: string, err: unknown): void
  /** Whether the peer is a proven member of a joined cluster (fair dispatch, link/reader.ts). */
  trusted?(peer: string): boolean
  /** The peer's link was held to its share of the event loop (link/reader.ts). */
  onThrottle?(peer: string): void
}

/** Manages links to every connected peer. */
export class LinkManager {
  private readonly links = new Map<string, Link>()
  private readonly opening = new Map<string, Promise<Link | undefined>>()
  /** Peers that refused our link protocol: not tried again before `until` (see the module doc). */
  private readonly foreign = new Map<string, { until: number; wait: number }>()
  private heartbeat: NodeJS.Timeout | undefined
  private stopped = false
  private readonly now: () => number
  private readonly opts: Required<Omit<LinkManagerOptions, 'now' | 'logger' | 'keep'>>
  private readonly keep: (peer: string) => boolean
  /** Peers we hung up on just now: their link is not reopened while the connection closes. */
  private readonly hungUp = new Set<string>()
  private readonly log: Logger
  private readonly listeners: Array<[string, (evt: any) => void]> = []
  /** Bytes sent on links that have closed. */
  private closedSentBytes = 0
  /** Bytes received from peers on their link streams (counted per chunk). */
  receivedBytes = 0
  /** Per peer: a data frame (not upkeep, see `CONTROL_FRAMES`) arrived since `takeUse` last looked. */
  private readonly inboundUse = new Map<string, { used: boolean }>()

  constructor(
    private readonly libp2p: PlexusLibp2p,
    options: LinkManagerOptions,
    private readonly events: LinkEvents,
  ) {
    this.now = options.now ?? Date.now
    this.log = options.logger ?? SILENT_LOGGER
    this.keep = options.keep ?? (() => true)
    this.opts = {
      protocol: options.protocol,
      maxFrameSize: options.maxFrameSize ?? LINK.maxFrameSize,
      maxQueuedBytes: options.maxQueuedBytes ?? LINK.maxQueuedBytes,
      heartbeatInterval: options.heartbeatInterval ?? LINK.heartbeatInterval,
      deadAfter: options.deadAfter ?? LINK.deadAfter,
    }
  }

  async start(): Promise<void> {
    await this.libp2p.handle(this.opts.protocol, (stream, connection) => this.onInbound(stream, connection), {
      maxInboundStreams: 8,
      maxOutboundStreams: 8,
      // Links run over circuit relays too (limited connections; transport/nat.ts moves them
      // to a direct connection when one can be made).
      runOnLimitedConnection: true,
    })
    this.on('connection:open', (evt) => {
      void this.ensure((evt.detail as Connection).remotePeer)
    })
    this.on('peer:identify', (evt) => {
      const r = evt.detail as { peerId: PeerId; protocols: string[] }
      // It speaks our protocol now (restarted on our network): no need to wait any longer.
      if (this.foreign.has(r.peerId.toString()) && r.protocols.includes(this.opts.protocol)) {
        this.foreign.delete(r.peerId.toString())
        void this.ensure(r.peerId)
      }
    })
    this.on('peer:disconnect', (evt) => {
      const peer = (evt.detail as PeerId).toString()
      this.inboundUse.delete(peer)
      this.links.get(peer)?.abort(new Error('peer disconnected'))
      this.events.onPeerGone(peer)
    })
    for (const conn of this.libp2p.getConnections()) void this.ensure(conn.remotePeer)
    this.heartbeat = setInterval(() => this.beat(), this.opts.heartbeatInterval)
    this.heartbeat.unref()
  }

  private on(name: string, fn: (evt: any) => void): void {
    this.libp2p.addEventListener(name as any, fn)
    this.listeners.push([name, fn])
  }

  /** The open link to `peer`, if any. */
  get(peer: string): Link | undefined {
    const link = this.links.get(peer)
    return link && !link.closed ? link : undefined
  }

  /** Every open link. */
  all(): Link[] {
    return [...this.links.values()].filter((l) => !l.closed)
  }

  /** Bytes sent on every link since the node started. */
  get sentBytes(): number {
    let n = this.closedSentBytes
    for (const l of this.links.values()) n += l.sentBytes
    return n
  }

  /** Opens (or returns) the link to a connected or dialable peer. */
  ensure(peer: PeerId): Promise<Link | undefined> {
    const key = peer.toString()
    const existing = this.get(key)
    if (existing) return Promise.resolve(existing)
    if (this.stopped || this.refused(key)) return Promise.resolve(undefined)
    let p = this.opening.get(key)
    if (p) return p
    p = this.open(peer).finally(() => this.opening.delete(key))
    this.opening.set(key, p)
    return p
  }

  private async open(peer: PeerId): Promise<Link | undefined> {
    const key = peer.toString()
    let stream: Stream
    try {
      const signal = AbortSignal.timeout(LINK.openTimeout)
      // libp2p reuses only unlimited connections: with nothing but a relayed (limited) one,
      // open the stream on it rather than dial the peer again.
      const conns = this.libp2p.getConnections(peer).filter((c) => c.status === 'open')
      const relayed = conns.every((c) => c.limits != null) ? conns[0] : undefined
      stream = relayed
        ? await relayed.newStream(this.opts.protocol, { signal, runOnLimitedConnection: true })
        : await this.libp2p.dialProtocol(peer, this.opts.protocol, { signal, runOnLimitedConnection: true })
    } catch (err) {
      if ((err as Error).name === 'UnsupportedProtocolError') {
        // Another network (or not Plexus): no traffic with it; tried again after a while.
        this.markForeign(key)
        this.log.debug(
          { peer: key, retryInMs: this.foreign.get(key)?.wait },
          'peer does not speak our network; hung up',
        )
        await this.libp2p.hangUp(peer).catch(() => {})
      }
      return undefined
    }
    this.foreign.delete(key)
    if (this.stopped) {
      stream.abort(new Error('stopped'))
      return undefined
    }
    const connection = this.libp2p.getConnections(peer).find((c) => c.streams.includes(stream))
    const link = new Link(
      key,
      stream,
      this.opts.maxQueuedBytes,
      this.now(),
      releasedOnSend(stream, connection),
    )
    // Our outbound stream carries only our frames; anything the peer sends on it is ignored.
    this.links.set(key, link)
    link.onClose(() => {
      if (this.links.get(key) === link) this.links.delete(key)
      this.closedSentBytes += link.sentBytes
      this.log.info({ peer: key, reason: link.closeReason, upMs: this.now() - link.openedAt }, 'link down')
      this.events.onDown(link)
      // Reopen when the stream died but the peer is still connected.
      if (
        !this.stopped &&
        !this.hungUp.has(key) &&
        this.keep(key) &&
        this.libp2p.getConnections(peer).some((c) => c.status === 'open')
      ) {
        setTimeout(() => void this.ensure(peer), 200).unref()
      }
    })
    this.log.info({ peer: key, address: connection?.remoteAddr.toString() }, 'link up')
    this.events.onUp(link)
    return link
  }

  /** True while `peer` refused our link protocol recently (see the module doc). */
  private refused(peer: string): boolean {
    const f = this.foreign.get(peer)
    return f !== undefined && this.now() < f.until
  }

  /** `peer` refused our link protocol: wait before trying it again, longer each time. */
  private markForeign(peer: string): void {
    const prev = this.foreign.get(peer)
    const wait = prev === undefined ? FOREIGN_RETRY_MIN : Math.min(prev.wait * 2, FOREIGN_RETRY_MAX)
    this.foreign.delete(peer) // re-inserted last: the oldest are forgotten first
    this.foreign.set(peer, { until: this.now() + wait, wait })
    if (this.foreign.size > FOREIGN_MAX) this.foreign.delete(this.foreign.keys().next().value!)
  }

  private onInbound(stream: Stream, connection: Connection): void {
    const peer = connection.remotePeer.toString()
    this.foreign.delete(peer) // it opened our link protocol: it speaks it now
    let use = this.inboundUse.get(peer)
    if (!use) this.inboundUse.set(peer, (use = { used: false }))
    const inUse = use
    // Any data from the peer proves it alive (once per chunk, not per frame).
    stream.addEventListener('message', (evt) => {
      this.receivedBytes += evt.data.byteLength
      const link = this.links.get(peer)
      if (link) {
        link.lastSeen = this.now()
        link.bytesReceived += evt.data.byteLength
      }
    })
    readFrames(
      stream,
      peer,
      this.opts.maxFrameSize,
      (from, type, body) => {
        if (type === FrameType.Ping) {
          const token = body.u64('ping token')
          body.end('ping')
          this.links.get(from)?.writeControl((w) => encodeU64Frame(w, FrameType.Pong, token))
          return
        }
        if (type === FrameType.Pong) {
          const token = body.u64('pong token')
          body.end('pong')
          const link = this.links.get(from)
          if (link) this.sample(link, this.now() - token)
          return
        }
        if (type > 31 || ((CONTROL_FRAMES >>> type) & 1) === 0) inUse.used = true
        this.events.onFrame(from, type, body)
      },
      (err) => this.events.onAbort?.(peer, err),
      {
        slice: LINK.readSlice,
        trusted: () => this.events.trusted?.(peer) ?? false,
        onThrottle: () => this.events.onThrottle?.(peer),
        onSlice: () => {
          const link = this.links.get(peer)
          if (link) link.lastSeen = this.now()
        },
      },
    )
    // Make sure we can answer: open our side if we have not yet.
    void this.ensure(connection.remotePeer)
  }

  /**
   * True when the link to `peer` carried data either way (anything but upkeep frames) since
   * the last call; clears that mark (src/overlay/ closes idle on-demand links with it).
   */
  takeUse(peer: string): boolean {
    const link = this.links.get(peer)
    const use = this.inboundUse.get(peer)
    const used = (link?.used ?? false) || (use?.used ?? false)
    if (link) link.used = false
    if (use) use.used = false
    return used
  }

  /** Closes the link to `peer` and every connection to it (the peer sees the link go down). */
  hangUp(peer: string): void {
    this.hungUp.add(peer)
    this.links.get(peer)?.abort(new Error('closed by the overlay'))
    const closing: Promise<void>[] = []
    for (const c of this.libp2p.getConnections()) {
      if (c.remotePeer.toString() === peer) closing.push(c.close().catch(() => {}))
    }
    void Promise.all(closing).finally(() => this.hungUp.delete(peer))
  }

  /** Feeds a round-trip sample (ms) into the peer's latency average. */
  sample(link: Link, rttMs: number): void {
    if (!(rttMs >= 0)) return
    link.recentRtt.add(rttMs, this.now())
    link.latencyMs =
      link.latencyMs === null ? rttMs : link.latencyMs + LATENCY_EWMA_ALPHA * (rttMs - link.latencyMs)
  }

  private beat(): void {
    const now = this.now()
    for (const link of this.all()) {
      if (now - link.lastSeen > this.opts.deadAfter) {
        link.abort(new Error('peer silent'))
        const conns = this.libp2p.getConnections().filter((c) => c.remotePeer.toString() === link.peer)
        for (const c of conns) void c.close().catch(() => {})
        continue
      }
      link.writeControl((w) => encodeU64Frame(w, FrameType.Ping, now))
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.heartbeat) clearInterval(this.heartbeat)
    for (const [name, fn] of this.listeners) this.libp2p.removeEventListener(name as any, fn)
    await Promise.all(this.all().map((l) => l.close()))
    await this.libp2p.unhandle(this.opts.protocol).catch(() => {})
  }
}

/** Frame types that are link upkeep, not data (a bit each): they do not keep an on-demand link open. */
const CONTROL_FRAMES =
  (1 << FrameType.Ping) |
  (1 << FrameType.Pong) |
  (1 << FrameType.Announce) |
  (1 << FrameType.Interest) |
  (1 << FrameType.StreamTable)
