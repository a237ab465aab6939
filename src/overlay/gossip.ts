/**
 * Membership by gossip on a node: the digest exchange (anti-entropy.ts) and the failure
 * detector (swim.ts) wired to links, internal calls and the record holders.
 *
 * - `overlay.digest`: see anti-entropy.ts.
 * - `overlay.probe` (body: the target's peer id; answer: u8 1 alive, 0 not): asked by a
 *   neighbour whose link to the target failed. Answered from our own link (heard within
 *   `LINK.suspectAfter`) or, without one, by dialling the target for at most
 *   `SWIM.dialTimeout` ms (only a peer we know the addresses or membership of).
 * - `overlay.suspect` (body: `u8 version | str target | u64 incarnation | str accuser`): a
 *   suspicion, passed on once over the neighbours; the target refutes it by re-signing its
 *   interest record (and its announcements), whose newer counter clears it everywhere.
 *
 * A peer declared dead leaves the member directory (requests and tunnels stop going to it
 * at once, network-wide) and the interest records (publishes stop); a newer record of it
 * (it was alive after all, or restarted) brings it back. Links to neighbours that the
 * overlay closes itself, and peers that sent a leave, are not probed.
 */

import type { MemberDirectory } from '../cluster/membership.js'
import { LINK, SWIM } from '../constants.js'
import { encodeBytesFrame, FrameType } from '../link/frames.js'
import type { Link } from '../link/link.js'
import type { PeerRpc } from '../rpc/rpc.js'
import { BinaryReader, BinaryWriter, DecodeError } from '../util/binary.js'
import { AntiEntropy, OVERLAY_DIGEST } from './anti-entropy.js'
import { type InterestRecords, OVERLAY_INTEREST } from './interest.js'
import type { Overlay } from './overlay.js'
import { type Suspicion, Swim } from './swim.js'

/** Internal call: "is this peer alive?" (see the module doc). */
export const OVERLAY_PROBE = 'overlay.probe'
/** Internal call without reply: a suspicion (see the module doc). */
export const OVERLAY_SUSPECT = 'overlay.suspect'

const ALIVE = new Uint8Array([1])
const NOT_ALIVE = new Uint8Array([0])
const EMPTY = new Uint8Array(0)
const VERSION = 1
/** How often (ms) the detector's timers run. */
const TICK = 250

/** What the gossip of a node uses (the node's parts). */
export interface GossipDeps {
  self: string
  now(): number
  rpc: PeerRpc
  link(peer: string): Link | undefined
  links(): Link[]
  overlay: Overlay
  directory: MemberDirectory
  records: InterestRecords
  /** False: only our own announcements are listed and sent (tests; node.relaysAnnouncements). */
  relays(): boolean
  /** Dials `peer` at its known addresses; true when linked (never rejects). */
  dial(peer: string): Promise<boolean>
  /** `peer` was declared dead or came back (the node's waiters look again). */
  changed(): void
}

/** Digests, anti-entropy and failure detection of one node (see the module doc). */
export class OverlayGossip {
  readonly antiEntropy: AntiEntropy
  readonly swim: Swim
  private timer: NodeJS.Timeout | undefined
  private stopped = false

  constructor(private readonly d: GossipDeps) {
    const neighbours = () =>
      d
        .links()
        .filter((l) => d.overlay.isNeighbour(l.peer))
        .map((l) => l.peer)
    this.antiEntropy = new AntiEntropy({
      announcements: () => d.directory.versioned(!d.relays()),
      interest: () => d.records.versioned(),
      neighbours,
      sendAnnouncement: (p, bytes) => this.sendAnnouncement(p, bytes),
      sendInterest: (p, bytes) => d.rpc.notify(p, OVERLAY_INTEREST, bytes),
      notify: (p, method, body) => d.rpc.notify(p, method, body),
      call: (p, method, body, timeout) => d.rpc.call(p, method, body, { timeout }),
      random: Math.random,
    })
    this.swim = new Swim({
      self: d.self,
      now: d.now,
      random: Math.random,
      neighbours,
      size: () => d.records.size + 1,
      incarnation: (p) => d.records.version(p),
      askProbe: (via, target) => {
        const body = new BinaryWriter(64).str(target).finish()
        d.rpc.call(via, OVERLAY_PROBE, body, { timeout: SWIM.probeTimeout }).then(
          (answer) => this.swim.probeAnswer(target, via, answer[0] === 1),
          () => {},
        )
      },
      tell: (p, s) => d.rpc.notify(p, OVERLAY_SUSPECT, encodeSuspicion(s)),
      spread: (s, except) => {
        const body = encodeSuspicion(s)
        for (const p of neighbours()) if (p !== except) d.rpc.notify(p, OVERLAY_SUSPECT, body)
      },
      refute: () => {
        d.records.changed()
        d.directory.refresh()
      },
      dead: (p) => {
        d.directory.declareDead(p)
        d.records.markDead(p)
        d.changed()
      },
      alive: () => d.changed(),
    })
    d.rpc.handle(OVERLAY_DIGEST, (b, ctx) => this.antiEntropy.onDigest(b, ctx.from))
    d.rpc.handle(OVERLAY_PROBE, (b) => this.onProbe(b))
    d.rpc.handle(OVERLAY_SUSPECT, (b, ctx) => {
      this.swim.onSuspect(decodeSuspicion(b), ctx.from)
      return EMPTY
    })
  }

  start(): void {
    this.antiEntropy.start()
    let last = this.d.now()
    this.timer = setInterval(() => {
      const now = this.d.now()
      this.swim.late(now - last - TICK)
      last = now
      this.swim.tick()
    }, TICK)
    this.timer.unref()
  }

  stop(): void {
    this.stopped = true
    this.antiEntropy.stop()
    if (this.timer) clearInterval(this.timer)
  }

  /** A link came up (before the overlay hears of it): it gets our announcements and our digest. */
  linkUp(peer: string): void {
    // Our own announcements go at once (one per joined cluster: the peer learns us without
    // the digest's round trip); the others by digest.
    for (const r of this.d.directory.versioned(true)) this.sendAnnouncement(peer, r.bytes)
    this.antiEntropy.linkUp(peer)
    this.swim.linkUp(peer)
  }

  /** A link went down (call before the overlay forgets whether it was a neighbour's). */
  linkDown(peer: string): void {
    if (this.stopped || !this.d.overlay.isNeighbour(peer) || this.d.records.gone(peer)) return
    this.swim.linkFailed(peer)
  }

  /** A neighbour link was agreed: it gets the digest of our interest records. */
  neighbourAdded(peer: string): void {
    this.antiEntropy.neighbourAdded(peer)
  }

  private sendAnnouncement(peer: string, bytes: Uint8Array): void {
    this.d.link(peer)?.writeControl((w) => encodeBytesFrame(w, FrameType.Announce, bytes))
  }

  /** Counters for `status()`. */
  counters(): Record<string, number> {
    const s = this.swim.stats
    const c = this.swim.counts()
    const out: Record<string, number> = { 'interest.records': this.d.records.size }
    for (const [reason, n] of Object.entries(this.d.records.refused)) out[`interest.refused.${reason}`] = n
    return {
      ...out,
      'overlay.suspects': c.suspects,
      'overlay.deadKnown': c.dead,
      'overlay.probes': s.probes,
      'overlay.probedAlive': s.probedAlive,
      'overlay.suspected': s.suspected,
      'overlay.refuted': s.refuted,
      'overlay.declaredDead': s.dead,
      'overlay.refutations': s.refutations,
      'overlay.localHealth': this.swim.health,
      'overlay.digestsSent': this.antiEntropy.stats.digestsSent,
      'overlay.recordsRepaired': this.antiEntropy.stats.recordsSent,
    }
  }

  private async onProbe(body: Uint8Array): Promise<Uint8Array> {
    const r = new BinaryReader(body)
    const target = r.str('probe target')
    r.end('probe')
    const l = this.d.link(target)
    if (l && !l.closed && this.d.now() - l.lastSeen < LINK.suspectAfter) return ALIVE
    if (this.swim.isDead(target) || target === this.d.self) return target === this.d.self ? ALIVE : NOT_ALIVE
    const known =
      this.d.overlay.addresses(target).length > 0 ||
      this.d.directory.clusterNames().some((c) => this.d.directory.isMember(c, target))
    if (!known) return NOT_ALIVE
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), SWIM.dialTimeout)
    })
    const ok = await Promise.race([this.d.dial(target), timeout])
    clearTimeout(timer)
    return ok ? ALIVE : NOT_ALIVE
  }
}

/** Encodes a suspicion for `overlay.suspect`. */
export function encodeSuspicion(s: Suspicion): Uint8Array {
  return new BinaryWriter(128).u8(VERSION).str(s.target).u64(s.incarnation).str(s.accuser).finish()
}

/** Decodes a suspicion (throws `DecodeError` when malformed). */
export function decodeSuspicion(bytes: Uint8Array): Suspicion {
  const r = new BinaryReader(bytes)
  if (r.u8('suspicion version') !== VERSION) throw new DecodeError('unknown suspicion version')
  const target = r.str('suspicion target')
  const incarnation = r.u64('suspicion incarnation')
  const accuser = r.str('suspicion accuser')
  r.end('suspicion')
  return { target, incarnation, accuser }
}
