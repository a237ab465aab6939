/**
 * Whether a member is up, for the replica healer (`healer.ts`) and replica rebuilds, when
 * links are bounded (src/overlay/): in a storage cluster larger than `maxLinks + 1` the
 * metadata leader holds no link to some healthy members, so "linked" alone would make it move
 * their replicas away. A peer is up while linked, or while a probe (an internal call over an
 * on-demand link, which any answer proves) succeeded within `upFor` ms. Asking about a peer
 * that is not linked starts a probe when the last one is `probeEvery` ms old, in the
 * background: the answer is for the next ask (the healer asks every second and replaces a
 * replica only after `replaceReplicaAfter`). A probe that gets no answer (a killed member's
 * dial fails at once) makes the peer down at once; one that is not answered yet leaves it up
 * until `upFor` ms after its last answer.
 *
 * Memory: one entry per peer asked about (at most `MAX_PEERS`, the oldest forgotten first);
 * at most one probe in flight per peer.
 */

/** A peer not linked is probed again when its last answer is this old (ms). */
export const PROBE_EVERY = 2000
/** A peer not linked counts as up this long (ms) after its last answer. */
export const UP_FOR = 6000
/** Peers remembered. */
const MAX_PEERS = 4096

/** What liveness needs from the node. */
export interface LivenessHost {
  self: string
  now(): number
  /** True while we have an open link to `peer`. */
  linked(peer: string): boolean
  /** An internal call to `peer` (opening an on-demand link); resolves when answered at all. */
  probe(peer: string): Promise<unknown>
}

/** See the module doc. */
export class PeerLiveness {
  /** Last time each peer was linked or answered a probe (ms). */
  private readonly seen = new Map<string, number>()
  private readonly probing = new Set<string>()

  constructor(
    private readonly host: LivenessHost,
    private readonly opts: { probeEvery?: number; upFor?: number } = {},
  ) {}

  /** True while `peer` is linked or answered a probe recently (itself: always). */
  isUp(peer: string): boolean {
    if (peer === this.host.self) return true
    const now = this.host.now()
    if (this.host.linked(peer)) {
      this.mark(peer, now)
      return true
    }
    const last = this.seen.get(peer)
    if (last === undefined || now - last >= (this.opts.probeEvery ?? PROBE_EVERY)) this.probe(peer)
    return last !== undefined && now - last < (this.opts.upFor ?? UP_FOR)
  }

  private probe(peer: string): void {
    if (this.probing.has(peer)) return
    this.probing.add(peer)
    this.host.probe(peer).then(
      () => {
        this.probing.delete(peer)
        this.mark(peer, this.host.now())
      },
      () => {
        // Not answered (dial refused, link lost, silent): down now, not `upFor` later.
        this.probing.delete(peer)
        if (!this.host.linked(peer)) this.seen.delete(peer)
      },
    )
  }

  private mark(peer: string, now: number): void {
    this.seen.delete(peer) // re-inserted last: the oldest are forgotten first
    this.seen.set(peer, now)
    if (this.seen.size > MAX_PEERS) this.seen.delete(this.seen.keys().next().value!)
  }
}

/**
 * The `isUp(peer)` of the stream service: see the module doc. `link` is the node's open link
 * to a peer; `probe` an internal call any answer of which proves the peer up.
 */
export function peerLiveness(
  self: string,
  link: (peer: string) => unknown,
  probe: (peer: string) => Promise<unknown>,
): (peer: string) => boolean {
  const l = new PeerLiveness({ self, now: Date.now, linked: (p) => link(p) !== undefined, probe })
  return (peer) => l.isUp(peer)
}
