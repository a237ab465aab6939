/**
 * Redialling: every known peer whose link is down is dialled again with exponential backoff
 * and jitter until it is linked or no longer wanted.
 *
 * A peer is wanted while it is a member of a cluster we know (until its announcement expires
 * or it leaves), and for `REDIAL.forgetAfter` ms after it was last found (same host, mDNS)
 * or last linked. The first dial of a newly found peer goes at once; after a link drops or a
 * dial fails the next waits `minDelay`, doubling at each failure up to `maxDelay`, each wait
 * shortened by a random share of up to `jitter` so peers that lost each other do not dial in
 * step (after a link drops, the end with the higher peer id waits `yieldDelay` more, so
 * usually one end redials). When any link comes up (the network may be back after a partition), peers in a long
 * wait are dialled within `minDelay`, at most once per `kickInterval` (their backoff is kept);
 * so is a member whose fresh announcement reaches us while we have no link to it. One dial per peer is in
 * flight at a time; at most `maxPeers` peers are remembered. With bounded links, a peer the
 * link policy does not want now (`shouldDial`) is remembered but not dialled.
 */
import { REDIAL } from '../constants.js'

/** What the redialler needs from its host. */
export interface RedialHost {
  /** True when a link to `peer` is open. */
  linked(peer: string): boolean
  /** Dials `peer` (adding `addrs` to what is known of it) and opens the link; true when linked. */
  dial(peer: string, addrs: string[]): Promise<boolean>
  /**
   * False when the link policy does not want a link to `peer` now (bounded links,
   * src/overlay/): it is remembered but not dialled; default: every wanted peer is dialled.
   */
  shouldDial?(peer: string): boolean
  now?(): number
  /** Uniform in [0, 1) (tests pass a seeded one). */
  random?(): number
  /** This node's peer id: after a link drops, the higher id of the two dials second. */
  self?: string
}

/** One peer we want a link to. */
interface Wanted {
  addrs: string[]
  /** A member of a cluster we know: wanted until `notMember`. */
  member: boolean
  /** Wanted until then (ms) because it was found or linked (besides `member`). */
  until: number
  /** Failed dials since the last link (the backoff exponent). */
  failures: number
  timer: NodeJS.Timeout | undefined
  /** When the pending timer fires (ms). */
  due: number
  dialing: boolean
}

/** Redials known peers whose link is down (see the module doc). */
export class Redialer {
  private readonly peers = new Map<string, Wanted>()
  private readonly now: () => number
  private readonly random: () => number
  private lastKick = Number.NEGATIVE_INFINITY
  private stopped = false
  /** Dials started (status counter `redials`). */
  dials = 0

  constructor(private readonly host: RedialHost) {
    this.now = host.now ?? Date.now
    this.random = host.random ?? Math.random
  }

  /** Peers remembered. */
  get size(): number {
    return this.peers.size
  }

  /** True when `peer` has no link and its last dial failed. */
  unreachable(peer: string): boolean {
    const w = this.peers.get(peer)
    return w !== undefined && w.failures > 0 && !this.host.linked(peer)
  }

  /** `peer` is a member of a cluster we know (an accepted announcement listed `addrs`). */
  member(peer: string, addrs: string[]): void {
    const w = this.entry(peer, addrs)
    w.member = true
    this.wake(peer, w)
  }

  /** `peer` is no longer a member of any cluster we know (left or expired). */
  notMember(peer: string): void {
    const w = this.peers.get(peer)
    if (!w) return
    w.member = false
    if (!this.wanted(w)) this.forget(peer, w)
  }

  /** `peer` was found (on this host, by mDNS) with `addrs`: wanted for `forgetAfter` more. */
  found(peer: string, addrs: string[]): void {
    const w = this.entry(peer, addrs)
    w.until = Math.max(w.until, this.now() + REDIAL.forgetAfter)
    this.wake(peer, w)
  }

  /**
   * `peer` was heard of just now (a fresh announcement of a member we have no link to): it is
   * likely back, so a peer waiting out a backoff is dialled within `minDelay`.
   */
  heard(peer: string, addrs: string[]): void {
    const w = this.peers.get(peer)
    if (!w || this.stopped) return
    // New addresses (say, a relayed one) are kept for the next dial even while one is in flight.
    if (addrs.length > 0) w.addrs = addrs
    if (w.dialing || this.host.linked(peer)) return
    if (w.timer === undefined) void this.attempt(peer, w)
    else if (w.due - this.now() > REDIAL.minDelay) this.schedule(peer, w, true)
  }

  /** A link to `peer` came up: its backoff resets; peers in a long wait are tried now. */
  linkUp(peer: string): void {
    const w = this.peers.get(peer)
    if (w) {
      w.failures = 0
      this.clear(w)
    }
    this.kick()
  }

  /**
   * The link to `peer` closed: dial it again after `minDelay` (jittered), plus `yieldDelay`
   * when our peer id is the higher one, so the two ends do not both dial and open two
   * connections when both are up.
   */
  linkDown(peer: string): void {
    if (this.stopped) return
    const w = this.entry(peer, [])
    w.until = Math.max(w.until, this.now() + REDIAL.forgetAfter)
    const self = this.host.self
    if (!w.dialing && w.timer === undefined)
      this.schedule(peer, w, false, self !== undefined && self > peer ? REDIAL.yieldDelay : 0)
  }

  stop(): void {
    this.stopped = true
    for (const w of this.peers.values()) this.clear(w)
    this.peers.clear()
  }

  private entry(peer: string, addrs: string[]): Wanted {
    let w = this.peers.get(peer)
    if (!w) {
      w = { addrs, member: false, until: 0, failures: 0, timer: undefined, due: 0, dialing: false }
      this.peers.set(peer, w)
      if (this.peers.size > REDIAL.maxPeers) this.evict()
    } else if (addrs.length > 0) w.addrs = addrs
    return w
  }

  /** Forgets the oldest non-member (or, when all are members, the oldest). */
  private evict(): void {
    for (const [peer, w] of this.peers) {
      if (!w.member) {
        this.forget(peer, w)
        return
      }
    }
    const [peer, w] = this.peers.entries().next().value!
    this.forget(peer, w)
  }

  private wanted(w: Wanted): boolean {
    return w.member || this.now() < w.until
  }

  private forget(peer: string, w: Wanted): void {
    this.clear(w)
    this.peers.delete(peer)
  }

  private clear(w: Wanted): void {
    if (w.timer !== undefined) clearTimeout(w.timer)
    w.timer = undefined
  }

  /** Dials at once unless linked, already dialling or waiting out a backoff. */
  private wake(peer: string, w: Wanted): void {
    if (this.stopped || w.dialing || w.timer !== undefined || this.host.linked(peer)) return
    void this.attempt(peer, w)
  }

  /**
   * Sets the next dial: after the backoff of `failures`, or after `minDelay` when `soon`
   * (jittered), plus `extra` ms.
   */
  private schedule(peer: string, w: Wanted, soon = false, extra = 0): void {
    this.clear(w)
    if (!this.wanted(w)) {
      this.forget(peer, w)
      return
    }
    const step = soon
      ? REDIAL.minDelay
      : Math.min(REDIAL.maxDelay, REDIAL.minDelay * 2 ** Math.min(w.failures, 20))
    const delay = step * (1 - REDIAL.jitter * this.random()) + extra
    w.due = this.now() + delay
    w.timer = setTimeout(() => {
      w.timer = undefined
      void this.attempt(peer, w)
    }, delay)
    w.timer.unref()
  }

  private async attempt(peer: string, w: Wanted): Promise<void> {
    if (this.stopped || this.peers.get(peer) !== w) return
    if (this.host.linked(peer)) {
      w.failures = 0
      return
    }
    if (!this.wanted(w)) {
      this.forget(peer, w)
      return
    }
    if (this.host.shouldDial?.(peer) === false) return
    w.dialing = true
    this.dials++
    let ok = false
    try {
      ok = await this.host.dial(peer, w.addrs)
    } catch {
      ok = false
    }
    w.dialing = false
    if (this.stopped || this.peers.get(peer) !== w) return
    if (ok || this.host.linked(peer)) {
      w.failures = 0
      return
    }
    w.failures++
    this.schedule(peer, w)
  }

  /** Any link came up: peers in a wait longer than `minDelay` are dialled again now. */
  private kick(): void {
    const now = this.now()
    if (this.stopped || now - this.lastKick < REDIAL.kickInterval) return
    this.lastKick = now
    for (const [peer, w] of this.peers) {
      // The backoff is kept: a peer that is really gone does not get dialled faster for it.
      if (w.timer !== undefined && w.due - now > REDIAL.minDelay && !this.host.linked(peer))
        this.schedule(peer, w, true)
    }
  }
}
