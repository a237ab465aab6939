/**
 * Cluster broadcast with tree fan-out. The sender splits the proven members it knows into
 * at most `BROADCAST_FANOUT` groups and sends the message once to the first linked member of
 * each group, naming the rest of the group as that member's delegates; each receiver
 * delivers locally (if it is a member) and forwards the same way to its delegates. A
 * broadcaster therefore writes O(fan-out) frames whatever the cluster size, and the message
 * reaches N members in O(log N) hops.
 *
 * Bounded links (src/overlay/): a group with no linked member is sent to its first member
 * not recently unreachable over an on-demand link (`far`, overlay/deliver.ts: frames
 * wait in a bounded queue per peer while it opens and leave in order); if that dial fails the
 * next member of the group carries it. So every member known from announcements gets each
 * broadcast once, linked or not, and the sender's count says how many were actually handed
 * to an open link (itself included), groups whose every member is unreachable not counted.
 *
 * At most once: every message carries (origin, sequence) and receivers remember, per
 * origin, the last `BROADCAST_DEDUPE` sequence numbers (`seen.ts`), so overlapping views
 * during churn never deliver twice; a node drops its own broadcasts coming back (it
 * delivered them locally when it sent them).
 * Non-members never receive it: only proven members are ever chosen as recipients.
 * Handlers run under the member's `broadcasts` limit; over it the message is dropped for
 * that member and counted (`broadcasts.dropped`).
 *
 * Per-peer bounds (docs/security.md, "Hostile peers"): broadcasts have no reply, so what a
 * remote peer is over its share of is dropped and counted, `broadcasts.refused.<reason>`:
 * - `forwarder`: a frame whose origin is not the sending peer comes only from a proven member
 *   of the cluster (only members forward), so a peer without the key can add one origin, its own;
 * - `origins`: de-duplication windows one peer's frames created (`peerShare` of
 *   `BROADCAST_ORIGINS`);
 * - `peerLimit`: handlers running for frames from one peer (`peerShare` of `broadcasts`);
 * - `forwardQueue`: bytes forwarded for one peer still queued on links (`peerShare` of the
 *   link queue bound, `BROADCAST_FORWARD_ENTRIES` frames);
 * - `forwardFull`: the link to forward to is over its queue bound (forwards cannot wait).
 *
 * Frame body: str origin | u32 seq | str cluster | u16 n | n × str delegate | bytes data
 */
import { randomInt } from 'node:crypto'
import { FrameType, writeFrame } from '../link/frames.js'
import { type Link, SENDER_WAIT_BYTES } from '../link/link.js'
import type { FarDelivery } from '../overlay/deliver.js'
import type { BroadcastContext } from '../types.js'
import { type BinaryReader, BinaryWriter, DecodeError, RepeatedString } from '../util/binary.js'
import { peerCluster, peerPayload } from '../util/peer-input.js'
import { peerShare } from '../util/peer-share.js'
import { SeenWindows } from './seen.js'

/** Groups a sender splits recipients into. */
export const BROADCAST_FANOUT = 8
/** Broadcasts remembered per origin for de-duplication (a power of two). */
export const BROADCAST_DEDUPE = 16_384
/** Origins whose recent broadcasts are remembered (2 KiB each). */
export const BROADCAST_ORIGINS = 1024
/** Most delegates one frame may name. */
export const MAX_DELEGATES = 4096
/** Forwarded frames remembered per peer until they leave (see `broadcasts.refused.forwardQueue`). */
export const BROADCAST_FORWARD_ENTRIES = 1024

const EMPTY = new Uint8Array(0)
const NO_DELEGATES: readonly string[] = []

/** Appends one broadcast frame (body layout in the module doc). */
function writeBroadcast(
  w: BinaryWriter,
  origin: string,
  seq: number,
  cluster: string,
  delegates: readonly string[],
  data: Uint8Array,
): void {
  writeFrame(w, FrameType.Broadcast, (b) => {
    b.str(origin).u32(seq).str(cluster).u16(delegates.length)
    for (const d of delegates) b.str(d)
    b.bytes(data)
  })
}

/** A broadcast handler as given to `join`. */
export type BroadcastHandler = (data: Uint8Array, ctx: BroadcastContext) => void | Promise<void>

interface Served {
  handler: BroadcastHandler | undefined
  limit: number
  running: number
  /** Handlers running per remote peer (the peer whose link carried the frame). */
  byPeer: Map<string, number>
}

/** A frame forwarded for a peer, until its link hands it to the stream. */
interface Forward {
  link: Link
  ticket: number
  bytes: number
}

/** What is held for one remote peer's frames. */
interface PeerHeld {
  forwards: Forward[]
  forwardBytes: number
}

/** What broadcast needs from the node. */
export interface BroadcastHost {
  self: string
  /** Proven members of a cluster. */
  members(cluster: string): string[]
  /** True when `peer` is a proven member of `cluster`. */
  isMember(cluster: string, peer: string): boolean
  /** Bytes a link may queue (`maxQueuedBytes`): one peer's forwards hold a share of it. */
  linkQueueBytes: number
  link(peer: string): Link | undefined
  /**
   * Frames to members without a link, over on-demand links (overlay/deliver.ts: `send` says
   * true written now, false dropped, else whether the link opened; `waits` is true while
   * frames for a peer wait for its link, so later ones queue behind them).
   */
  far?: Pick<FarDelivery, 'send' | 'waits'>
  /** True while a dial of `peer` failed recently (not tried as a group's carrier). */
  unreachable?(peer: string): boolean
  count(counter: string): void
}

/** Broadcast engine of one node. */
export class Broadcaster {
  /** Broadcasts this node originated (metrics). */
  sent = 0
  /** Starts at a random point, so receivers tell a restarted origin from old copies. */
  private seq = randomInt(0, 0xffffffff)
  private readonly served = new Map<string, Served>()
  private readonly seen = new SeenWindows(BROADCAST_DEDUPE, BROADCAST_ORIGINS, peerShare(BROADCAST_ORIGINS))
  /** Forwards queued per remote peer. */
  private readonly held = new Map<string, PeerHeld>()
  private readonly forwardShare: number
  /** Origin and cluster of received frames (a sender repeats both). */
  private readonly origins = new RepeatedString('origin')
  private readonly clusters = new RepeatedString('cluster')
  /** The last cluster name of a received frame found valid. */
  private checkedCluster = ''
  /** Sorted recipients per cluster (cleared on membership change). */
  private readonly targets = new Map<string, string[]>()
  /** Scratch buffer for a frame copied to several links. */
  private readonly scratch = new BinaryWriter(4096)
  /** The frame `writeOut` copies (saves a closure per link). */
  private out: Uint8Array = EMPTY
  private readonly writeOut = (w: BinaryWriter): void => {
    w.raw(this.out)
  }

  constructor(private readonly host: BroadcastHost) {
    this.forwardShare = peerShare(host.linkQueueBytes, 0)
  }

  serve(cluster: string, handler: BroadcastHandler | undefined, limit: number): void {
    this.served.set(cluster, { handler, limit, running: 0, byPeer: new Map() })
  }

  /** A peer's link and connections are gone: forget its queued forwards. */
  onPeerGone(peer: string): void {
    this.held.delete(peer)
  }

  /** What this node holds for remote peers now (tests, status). */
  heldForPeers(): { origins: number; forwardBytes: number; handlers: number; peers: number } {
    let forwardBytes = 0
    for (const h of this.held.values()) forwardBytes += h.forwardBytes
    let handlers = 0
    for (const s of this.served.values()) for (const n of s.byPeer.values()) handlers += n
    return { origins: this.seen.size, forwardBytes, handlers, peers: this.held.size }
  }

  unserve(cluster: string): void {
    this.served.delete(cluster)
  }

  /**
   * Sends to every member reachable now; resolves to how many members it was handed to
   * (this node included when it is a member), once every link it used holds less than
   * `SENDER_WAIT_BYTES` (backpressure, as for publishers: a fast broadcaster cannot grow
   * link queues without bound, and short queues keep block buffers reused).
   */
  async broadcast(cluster: string, data: Uint8Array): Promise<number> {
    this.sent++
    this.seq = (this.seq + 1) >>> 0
    let targets = this.targets.get(cluster)
    if (!targets) {
      targets = this.host
        .members(cluster)
        .filter((m) => m !== this.host.self)
        .sort()
      this.targets.set(cluster, targets)
    }
    let local = 0
    if (this.served.has(cluster)) {
      this.deliver(cluster, this.host.self, data)
      local = 1
    }
    const crowded: Link[] = []
    const far: Promise<number>[] = []
    let sent = this.fanOut(this.host.self, this.seq, cluster, targets, data, crowded, undefined, far)
    if (crowded.length > 0)
      await Promise.all(crowded.map((l) => l.writable(SENDER_WAIT_BYTES).catch(() => {})))
    for (const n of await Promise.all(far)) sent += n
    return local + sent
  }

  /** The open link to `peer`, unless earlier frames still wait for its on-demand link. */
  private linkTo(peer: string): Link | undefined {
    return this.host.far?.waits(peer) ? undefined : this.host.link(peer)
  }

  /**
   * Sends a group with no linked member over an on-demand link to its first member not
   * unreachable, naming the rest as delegates; when that link cannot be opened, the next
   * member carries it (still naming the ones that failed: they may be reachable from it).
   * Resolves to the members handed the frame, not counting those we failed to reach.
   */
  private async farGroup(
    origin: string,
    seq: number,
    cluster: string,
    group: readonly string[],
    data: Uint8Array,
  ): Promise<number> {
    const far = this.host.far
    for (let i = 0; far && i < group.length; i++) {
      const head = group[i]!
      if (this.host.unreachable?.(head)) continue
      const w = new BinaryWriter(data.length + 64 * (group.length + 1))
      writeBroadcast(w, origin, seq, cluster, group.slice(0, i).concat(group.slice(i + 1)), data)
      if (await far.send(head, w.finish(), 'broadcasts')) return group.length - i
    }
    this.host.count('broadcasts.unreachable')
    return 0
  }

  /** Membership changed: forget cached recipient lists. */
  invalidate(): void {
    this.targets.clear()
  }

  /**
   * Splits `targets` into groups and sends one frame per group head. When every group is
   * a single member (no delegates: clusters up to `BROADCAST_FANOUT` members) the frames are
   * identical, so the frame is encoded once and copied into each link. Links left crowded
   * (see `Link.crowded`) are added to `crowded` when given.
   */
  private fanOut(
    origin: string,
    seq: number,
    cluster: string,
    targets: string[],
    data: Uint8Array,
    crowded?: Link[],
    forPeer?: string,
    far?: Promise<number>[],
  ): number {
    const n = targets.length
    const groups = Math.min(BROADCAST_FANOUT, n)
    if (groups === n) {
      let frame: Uint8Array | undefined
      let sent = 0
      for (const peer of targets) {
        const link = this.linkTo(peer)
        if (!link) {
          const p = this.farGroup(origin, seq, cluster, [peer], data)
          far?.push(p)
          continue
        }
        if (!frame) {
          this.scratch.reset()
          writeBroadcast(this.scratch, origin, seq, cluster, NO_DELEGATES, data)
          frame = this.scratch.finish()
        }
        if (forPeer !== undefined && !this.mayForward(forPeer, link, frame.length)) continue
        this.out = frame
        const ticket = link.write(this.writeOut)
        if (forPeer !== undefined) this.forwarded(forPeer, link, ticket, frame.length)
        if (crowded && link.crowded) crowded.push(link)
        sent++
      }
      this.out = EMPTY
      return sent
    }
    let sent = 0
    for (let g = 0; g < groups; g++) {
      const start = Math.floor((g * n) / groups)
      const end = Math.floor(((g + 1) * n) / groups)
      // The first member of the group we can reach carries the rest of the group.
      let head = -1
      let link: Link | undefined
      for (let i = start; i < end && !link; i++) {
        link = this.linkTo(targets[i]!)
        if (link) head = i
      }
      if (!link) {
        const p = this.farGroup(origin, seq, cluster, targets.slice(start, end), data)
        far?.push(p)
        continue
      }
      const delegates: string[] = []
      for (let i = start; i < end; i++) if (i !== head) delegates.push(targets[i]!)
      const bytes = data.length + 64 * (delegates.length + 2)
      if (forPeer !== undefined && !this.mayForward(forPeer, link, bytes)) continue
      const ticket = link.write((w) => writeBroadcast(w, origin, seq, cluster, delegates, data))
      if (forPeer !== undefined) this.forwarded(forPeer, link, ticket, bytes)
      if (crowded && link.crowded) crowded.push(link)
      sent += 1 + delegates.length
    }
    return sent
  }

  onFrame(peer: string, r: BinaryReader, maxData: number): void {
    const origin = this.origins.read(r)
    const seq = r.u32('seq')
    const cluster = this.clusters.read(r)
    const n = r.u16('delegate count')
    if (n > MAX_DELEGATES) throw new DecodeError(`too many delegates (${n})`)
    let delegates = NO_DELEGATES
    if (n > 0) {
      const d: string[] = []
      for (let i = 0; i < n; i++) d.push(r.str('delegate'))
      delegates = d
    }
    const data = peerPayload(r.bytes('data'), maxData)
    r.end('broadcast')
    // Checked as `broadcast` checks it (senders repeat it: checked when it changes).
    if (cluster !== this.checkedCluster) this.checkedCluster = peerCluster(cluster)
    // Our own broadcast coming back (overlapping views) was delivered here already.
    if (origin === this.host.self) {
      this.host.count('broadcasts.duplicates')
      return
    }
    // Only members forward: anyone else may send only its own broadcasts.
    if (peer !== origin && !this.host.isMember(cluster, peer)) {
      this.host.count('broadcasts.refused.forwarder')
      return
    }
    if (!this.seen.admits(origin, peer)) {
      this.host.count('broadcasts.refused.origins')
      return
    }
    if (!this.seen.check(origin, seq, peer)) {
      this.host.count('broadcasts.duplicates')
      return
    }
    if (delegates.length > 0) {
      // Forward only to peers we also know as proven members.
      const mine = delegates.filter((d) => d !== this.host.self && this.host.isMember(cluster, d)).sort()
      this.fanOut(origin, seq, cluster, mine, data, undefined, peer)
    }
    if (this.served.has(cluster)) this.deliver(cluster, origin, data, peer)
  }

  /**
   * Whether a forward of `bytes` for `peer` may be queued on `link`: the link is under its
   * bound and the peer's forwards still queued stay within its share (else counted).
   */
  private mayForward(peer: string, link: Link, bytes: number): boolean {
    if (link.full) {
      this.host.count('broadcasts.refused.forwardFull')
      return false
    }
    const h = this.held.get(peer)
    if (!h) return true
    if (h.forwardBytes + bytes <= this.forwardShare && h.forwards.length < BROADCAST_FORWARD_ENTRIES)
      return true
    // Near the share: drop what has left since (checked only here, so the common path is free).
    let kept = 0
    let keptBytes = 0
    for (const f of h.forwards) {
      if (f.link.closed || f.link.isFlushed(f.ticket)) continue
      h.forwards[kept++] = f
      keptBytes += f.bytes
    }
    h.forwards.length = kept
    h.forwardBytes = keptBytes
    if (keptBytes + bytes <= this.forwardShare && kept < BROADCAST_FORWARD_ENTRIES) return true
    this.host.count('broadcasts.refused.forwardQueue')
    return false
  }

  private forwarded(peer: string, link: Link, ticket: number, bytes: number): void {
    let h = this.held.get(peer)
    if (!h) {
      h = { forwards: [], forwardBytes: 0 }
      this.held.set(peer, h)
    }
    h.forwards.push({ link, ticket, bytes })
    h.forwardBytes += bytes
  }

  private deliver(cluster: string, from: string, data: Uint8Array, peer?: string): void {
    const s = this.served.get(cluster)!
    if (!s.handler) return
    if (s.running >= s.limit) {
      this.host.count('broadcasts.dropped')
      return
    }
    const mine = peer === undefined ? 0 : (s.byPeer.get(peer) ?? 0)
    if (peer !== undefined && mine >= peerShare(s.limit)) {
      this.host.count('broadcasts.refused.peerLimit')
      return
    }
    s.running++
    if (peer !== undefined) s.byPeer.set(peer, mine + 1)
    this.host.count('broadcasts.delivered')
    const done = () => {
      s.running--
      if (peer === undefined) return
      const n = (s.byPeer.get(peer) ?? 1) - 1
      if (n > 0) s.byPeer.set(peer, n)
      else s.byPeer.delete(peer)
    }
    try {
      const r = s.handler(data, { from, cluster })
      if (r instanceof Promise) {
        r.then(done, () => {
          done()
          this.host.count('broadcasts.handlerErrors')
        })
      } else done()
    } catch {
      done()
      this.host.count('broadcasts.handlerErrors')
    }
  }
}
