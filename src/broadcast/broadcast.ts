/**
 * Cluster broadcast with tree fan-out. The sender splits the proven members it can reach
 * into at most `BROADCAST_FANOUT` groups and sends the message once to the first linked
 * member of each group, naming the rest of the group as that member's delegates; each
 * receiver delivers locally (if it is a member) and forwards the same way to its
 * delegates. A broadcaster therefore writes O(fan-out) frames whatever the cluster size,
 * and the message reaches N members in O(log N) hops.
 *
 * At most once: every message carries (origin, sequence) and receivers remember, per
 * origin, the last `BROADCAST_DEDUPE` sequence numbers (`seen.ts`), so overlapping views
 * during churn never deliver twice; a node drops its own broadcasts coming back (it
 * delivered them locally when it sent them).
 * Non-members never receive it: only proven members are ever chosen as recipients.
 * Handlers run under the member's `broadcasts` limit; over it the message is dropped for
 * that member and counted (`broadcasts.dropped`).
 *
 * Frame body: str origin | u32 seq | str cluster | u16 n | n × str delegate | bytes data
 */
import { randomInt } from 'node:crypto'
import { FrameType, writeFrame } from '../link/frames.js'
import { type Link, SENDER_WAIT_BYTES } from '../link/link.js'
import type { BroadcastContext } from '../types.js'
import { type BinaryReader, BinaryWriter, DecodeError, RepeatedString } from '../util/binary.js'
import { peerCluster, peerPayload } from '../util/peer-input.js'
import { SeenWindows } from './seen.js'

/** Groups a sender splits recipients into. */
export const BROADCAST_FANOUT = 8
/** Broadcasts remembered per origin for de-duplication (a power of two). */
export const BROADCAST_DEDUPE = 16_384
/** Origins whose recent broadcasts are remembered (2 KiB each). */
export const BROADCAST_ORIGINS = 1024
/** Most delegates one frame may name. */
export const MAX_DELEGATES = 4096

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
}

/** What broadcast needs from the node. */
export interface BroadcastHost {
  self: string
  /** Proven members of a cluster. */
  members(cluster: string): string[]
  link(peer: string): Link | undefined
  count(counter: string): void
}

/** Broadcast engine of one node. */
export class Broadcaster {
  /** Starts at a random point, so receivers tell a restarted origin from old copies. */
  private seq = randomInt(0, 0xffffffff)
  private readonly served = new Map<string, Served>()
  private readonly seen = new SeenWindows(BROADCAST_DEDUPE, BROADCAST_ORIGINS)
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

  constructor(private readonly host: BroadcastHost) {}

  serve(cluster: string, handler: BroadcastHandler | undefined, limit: number): void {
    this.served.set(cluster, { handler, limit, running: 0 })
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
    const sent = this.fanOut(this.host.self, this.seq, cluster, targets, data, crowded)
    if (crowded.length > 0)
      await Promise.all(crowded.map((l) => l.writable(SENDER_WAIT_BYTES).catch(() => {})))
    return local + sent
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
  ): number {
    const n = targets.length
    const groups = Math.min(BROADCAST_FANOUT, n)
    if (groups === n) {
      let frame: Uint8Array | undefined
      let sent = 0
      for (const peer of targets) {
        const link = this.host.link(peer)
        if (!link) {
          this.host.count('broadcasts.unreachable')
          continue
        }
        if (!frame) {
          this.scratch.reset()
          writeBroadcast(this.scratch, origin, seq, cluster, NO_DELEGATES, data)
          frame = this.scratch.finish()
        }
        this.out = frame
        link.write(this.writeOut)
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
        link = this.host.link(targets[i]!)
        if (link) head = i
      }
      if (!link) {
        this.host.count('broadcasts.unreachable')
        continue
      }
      const delegates: string[] = []
      for (let i = start; i < end; i++) if (i !== head) delegates.push(targets[i]!)
      link.write((w) => writeBroadcast(w, origin, seq, cluster, delegates, data))
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
    if (origin === this.host.self || !this.seen.check(origin, seq)) {
      this.host.count('broadcasts.duplicates')
      return
    }
    if (delegates.length > 0) {
      // Forward only to peers we also know as proven members.
      const known = new Set(this.host.members(cluster))
      const mine = delegates.filter((d) => known.has(d) && d !== this.host.self).sort()
      this.fanOut(origin, seq, cluster, mine, data)
    }
    if (this.served.has(cluster)) this.deliver(cluster, peer === origin ? origin : origin, data)
  }

  private deliver(cluster: string, from: string, data: Uint8Array): void {
    const s = this.served.get(cluster)!
    if (!s.handler) return
    if (s.running >= s.limit) {
      this.host.count('broadcasts.dropped')
      return
    }
    s.running++
    this.host.count('broadcasts.delivered')
    const done = () => {
      s.running--
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
