/**
 * Bounded links: which links a node keeps, and why.
 *
 * - **Neighbour links**, at most `maxLinks`: a node proposes itself to the peers it prefers
 *   (`select.ts`: ring neighbours, then random ones) until it has `maxLinks` neighbours; a
 *   peer accepts while it has fewer than `maxLinks`, and always accepts a ring neighbour (then
 *   drops one of its own non-ring neighbours, the newest first, so older links are kept). A
 *   refused or dropped peer is not proposed to again for `declineFor`. Only the end that drops
 *   a neighbour closes the link (when two ends drop each other at once, the higher peer id lets
 *   the lower one close it). Announcements and other upkeep flood over every link.
 * - **On-demand links** to the peers a node exchanges data with (requests, tunnels, internal
 *   calls, publishes to their subscriptions): opened on first use (`open`), closed after
 *   `idleAfter` ms without a data frame either way (the lower peer id closes first; the other
 *   end after half as long again), at most `maxLinks × onDemandFactor` (the least recently
 *   used closes first).
 *
 * A network no larger than `maxLinks + 1` nodes is a full mesh: every peer is preferred and
 * every proposal accepted. The neighbour state is local: links are what either end says.
 */
import { OVERLAY } from '../constants.js'
import type { Link } from '../link/link.js'
import type { Logger } from '../types.js'
import { SILENT_LOGGER } from '../util/logger.js'
import { type Placed, preferenceOrder, randomRank, ringPosition } from './select.js'

/** Internal call: "take me as a neighbour" (body: empty; answer: u8 1 accepted, 0 refused). */
export const OVERLAY_PROPOSE = 'overlay.propose'
/** Internal call: "I dropped you as a neighbour" (body and answer empty). */
export const OVERLAY_DROP = 'overlay.drop'

const ACCEPTED = new Uint8Array([1])
const REFUSED = new Uint8Array([0])
const EMPTY = new Uint8Array(0)

/** What the overlay needs from the node. */
export interface OverlayHost {
  self: string
  maxLinks: number
  now(): number
  /** The open link to `peer`. */
  link(peer: string): Link | undefined
  /** Every open link. */
  links(): Link[]
  /** See `LinkManager.takeUse`. */
  takeUse(peer: string): boolean
  /** Closes the link and connections to `peer`. */
  hangUp(peer: string): void
  /** Dials `peer` (adding `addrs`) and opens the link; true when linked (never rejects). */
  dial(peer: string, addrs: string[]): Promise<boolean>
  /** An internal call to `peer` (rpc). */
  call(peer: string, method: string, body: Uint8Array, timeoutMs: number): Promise<Uint8Array>
  count(counter: string): void
  /** Neighbours changed (waiters look again). */
  changed(): void
  /** `peer` became a neighbour (it gets what gossip we hold). */
  neighbourAdded?(peer: string): void
  logger?: Logger
}

interface Known extends Placed {
  addrs: string[]
  /** When we first heard of it (ms). */
  since: number
  /** Failed neighbour dials since it was last linked. */
  failures: number
}

/** A peer whose neighbour dials failed this many times in a row is forgotten (until heard of again). */
const MAX_DIAL_FAILURES = 6
/** Longest wait before a peer whose neighbour dials fail is tried again (ms). */
const MAX_DIAL_BACKOFF = 5 * 60_000

/**
 * An unlinked peer with a lower peer id than ours is dialled only once we have known it this
 * long (ms): the lower id dials first, so two nodes that find each other do not cross dials.
 */
const CROSS_DIAL_DELAY = 1500
/**
 * A link that is not a neighbour's and carried no data at all since it opened closes after
 * this long (ms), not `idleAfter`: a dial from discovery before the network's size was known.
 */
const UNUSED_GRACE = 5000

/** The link policy of one node (see the module doc). */
export class Overlay {
  /** Milliseconds without data after which an on-demand link closes (tests shorten it). */
  idleAfter: number = OVERLAY.idleAfter
  private readonly known = new Map<string, Known>()
  /** Neighbours, with the time each became one. */
  private readonly neighbours = new Map<string, number>()
  private readonly proposing = new Set<string>()
  /** Peers not proposed to until then (they refused or dropped us, or we dropped them). */
  private readonly declined = new Map<string, number>()
  /** Peers whose on-demand dial failed: unreachable until then. */
  private readonly failed = new Map<string, number>()
  /** Last time data crossed each link (either way). */
  private readonly lastUse = new Map<string, number>()
  /** Linked peers whose link has carried no data yet. */
  private readonly unused = new Set<string>()
  private readonly opening = new Map<string, Promise<Link | undefined>>()
  /** Neighbours we dropped whose link we close once they heard it. */
  private readonly dropping = new Set<string>()
  private order: { order: string[]; ring: Set<string> } | undefined
  private readonly selfPos: number
  private timer: NodeJS.Timeout | undefined
  private soon: NodeJS.Immediate | undefined
  private stopped = false
  private readonly log: Logger
  /** Links closed for being idle, neighbours dropped, proposals refused by peers. */
  readonly closed = { idle: 0, lru: 0, trimmed: 0, refused: 0 }

  constructor(private readonly host: OverlayHost) {
    this.selfPos = ringPosition(host.self)
    this.log = host.logger ?? SILENT_LOGGER
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), OVERLAY.tickInterval)
    this.timer.unref()
  }

  stop(): void {
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    if (this.soon) clearImmediate(this.soon)
  }

  /** `peer` exists with `addrs` (discovery, announcements, a link): a neighbour candidate. */
  learn(peer: string, addrs: readonly string[]): void {
    if (peer === this.host.self) return
    const k = this.known.get(peer)
    if (k) {
      if (addrs.length > 0) k.addrs = [...addrs]
      return
    }
    this.known.set(peer, {
      peer,
      addrs: [...addrs],
      pos: ringPosition(peer),
      rank: randomRank(this.host.self, peer),
      since: this.host.now(),
      failures: 0,
    })
    if (this.known.size > OVERLAY.maxKnown) {
      for (const p of this.known.keys()) {
        if (!this.host.link(p)) {
          this.known.delete(p)
          break
        }
      }
    }
    this.order = undefined
    this.schedule()
  }

  /** Addresses last heard for `peer`. */
  addresses(peer: string): string[] {
    return this.known.get(peer)?.addrs ?? []
  }

  /** True when the link to `peer` is a neighbour link (else it is on demand). */
  isNeighbour(peer: string): boolean {
    return this.neighbours.has(peer)
  }

  /** Neighbour and on-demand links open now. */
  counts(): { neighbours: number; onDemand: number } {
    let neighbours = 0
    let onDemand = 0
    for (const l of this.host.links()) {
      if (this.neighbours.has(l.peer)) neighbours++
      else onDemand++
    }
    return { neighbours, onDemand }
  }

  /** True when the redialler should restore a dropped link to `peer`: we want it as a neighbour. */
  wantsLink(peer: string): boolean {
    if (this.neighbours.has(peer)) return true
    if (this.isDeclined(peer)) return false
    if (this.known.size <= this.host.maxLinks) return true
    if (this.preference().ring.has(peer)) return true
    return this.neighbours.size < this.host.maxLinks && this.targets().includes(peer)
  }

  /** True while an on-demand dial of `peer` failed recently (requests fail over at once). */
  unreachable(peer: string): boolean {
    const until = this.failed.get(peer)
    return until !== undefined && this.host.now() < until && !this.host.link(peer)
  }

  /** A link came up: a neighbour candidate; proposed to when preferred. */
  linkUp(link: Link): void {
    this.learn(link.peer, [])
    this.lastUse.set(link.peer, this.host.now())
    this.unused.add(link.peer)
    this.failed.delete(link.peer)
    const k = this.known.get(link.peer)
    if (k) k.failures = 0
    this.schedule()
  }

  /** A link closed: no longer a neighbour (another is proposed to). */
  linkDown(peer: string): void {
    this.lastUse.delete(peer)
    this.unused.delete(peer)
    this.dropping.delete(peer)
    if (this.neighbours.delete(peer)) {
      this.host.changed()
      this.schedule()
    }
  }

  /**
   * The link to `peer`, opened on demand when there is none (dialling its known addresses).
   * Resolves undefined when it cannot be opened (then `unreachable(peer)` for `failedFor`).
   */
  open(peer: string): Promise<Link | undefined> {
    const l = this.host.link(peer)
    if (l) return Promise.resolve(l)
    if (this.stopped || peer === this.host.self) return Promise.resolve(undefined)
    let p = this.opening.get(peer)
    if (p) return p
    p = this.dialOnDemand(peer).finally(() => this.opening.delete(peer))
    this.opening.set(peer, p)
    return p
  }

  /** Opens an on-demand link to `peer` in the background (a request or broadcast will want it). */
  want(peer: string): undefined {
    if (!this.host.link(peer) && !this.unreachable(peer)) void this.open(peer)
    return undefined
  }

  private async dialOnDemand(peer: string): Promise<Link | undefined> {
    this.makeRoom()
    const ok = await this.host.dial(peer, this.addresses(peer))
    const link = this.host.link(peer)
    if (!ok || !link) {
      this.failed.set(peer, this.host.now() + OVERLAY.failedFor)
      this.host.count('links.onDemandFailed')
      return undefined
    }
    this.lastUse.set(peer, this.host.now())
    return link
  }

  /** Closes the least recently used on-demand links while there are too many. */
  private makeRoom(): void {
    const max = this.host.maxLinks * OVERLAY.onDemandFactor
    const demand = this.host
      .links()
      .filter((l) => !this.neighbours.has(l.peer) && !this.proposing.has(l.peer))
    if (demand.length < max) return
    demand.sort((a, b) => (this.lastUse.get(a.peer) ?? 0) - (this.lastUse.get(b.peer) ?? 0))
    for (let i = 0; i <= demand.length - max; i++) {
      this.closed.lru++
      this.host.hangUp(demand[i]!.peer)
    }
  }

  /** A peer proposes itself as our neighbour: the answer to send back. */
  onPropose(from: string): Uint8Array {
    if (this.neighbours.has(from)) return ACCEPTED
    this.learn(from, [])
    const ring = this.preference().ring.has(from)
    if (this.neighbours.size >= this.host.maxLinks && !ring) return REFUSED
    this.addNeighbour(from)
    if (this.neighbours.size > this.host.maxLinks) this.trim()
    return ACCEPTED
  }

  /** A neighbour dropped us. */
  onDrop(from: string): Uint8Array {
    this.declined.set(from, this.host.now() + OVERLAY.declineFor)
    // Both ends dropped each other: only the lower peer id closes the link.
    if (this.dropping.has(from) && this.host.self > from) this.dropping.delete(from)
    if (this.neighbours.delete(from)) {
      this.host.changed()
      this.schedule()
    }
    return EMPTY
  }

  private addNeighbour(peer: string): void {
    if (this.neighbours.has(peer)) return
    this.neighbours.set(peer, this.host.now())
    this.declined.delete(peer)
    this.host.neighbourAdded?.(peer)
    this.host.changed()
  }

  private isDeclined(peer: string): boolean {
    const until = this.declined.get(peer)
    return until !== undefined && this.host.now() < until
  }

  private preference(): { order: string[]; ring: Set<string> } {
    this.order ??= preferenceOrder(this.selfPos, [...this.known.values()], this.host.maxLinks)
    return this.order
  }

  /** The `maxLinks` peers we prefer now (neither declined nor failing). */
  private targets(): string[] {
    const out: string[] = []
    for (const p of this.preference().order) {
      if (out.length >= this.host.maxLinks) break
      if (!this.isDeclined(p) && !this.unreachable(p)) out.push(p)
    }
    return out
  }

  /** Runs `tick` at the end of this turn (after learning a peer or losing a neighbour). */
  private schedule(): void {
    if (this.soon || this.stopped) return
    this.soon = setImmediate(() => {
      this.soon = undefined
      this.maintain()
    })
  }

  /** Every `tickInterval`: idle on-demand links close, then neighbours are topped up or trimmed. */
  tick(): void {
    if (this.stopped) return
    const now = this.host.now()
    for (const [p, until] of this.declined) if (now >= until) this.declined.delete(p)
    for (const [p, until] of this.failed) if (now >= until) this.failed.delete(p)
    for (const link of this.host.links()) {
      const peer = link.peer
      if (this.host.takeUse(peer)) {
        this.lastUse.set(peer, now)
        this.unused.delete(peer)
      }
      if (this.neighbours.has(peer) || this.proposing.has(peer)) continue
      if (this.dropping.delete(peer)) {
        this.closed.trimmed++
        this.host.hangUp(peer)
        continue
      }
      const last = this.lastUse.get(peer)
      if (last === undefined) {
        this.lastUse.set(peer, now)
        continue
      }
      const idle = this.unused.has(peer) ? Math.min(UNUSED_GRACE, this.idleAfter) : this.idleAfter
      const limit = this.host.self < peer ? idle : idle * 1.5
      if (now - last > limit && !this.wantsLink(peer)) {
        this.closed.idle++
        this.log.debug({ peer, idleMs: now - last }, 'idle on-demand link closed')
        this.host.hangUp(peer)
      }
    }
    this.maintain()
  }

  /** Proposes to preferred peers while below `maxLinks`; trims above it. */
  private maintain(): void {
    if (this.stopped) return
    const max = this.host.maxLinks
    const ring = this.preference().ring
    let room = max - this.neighbours.size - this.proposing.size
    for (const p of this.targets()) {
      if (this.neighbours.has(p) || this.proposing.has(p)) continue
      // Ring neighbours are proposed to even when full (one of the others is dropped then).
      if (room <= 0 && !ring.has(p)) continue
      if (!this.host.link(p) && p < this.host.self) {
        const k = this.known.get(p)
        if (k && this.host.now() - k.since < CROSS_DIAL_DELAY) continue
      }
      room--
      void this.propose(p)
    }
    if (this.neighbours.size > max) this.trim()
  }

  private async propose(peer: string): Promise<void> {
    this.proposing.add(peer)
    try {
      const link = this.host.link(peer) ?? (await this.dialNeighbour(peer))
      if (!link || this.stopped) return
      let answer: Uint8Array
      try {
        answer = await this.host.call(peer, OVERLAY_PROPOSE, EMPTY, OVERLAY.callTimeout)
      } catch {
        return // link gone or no answer: tried again at a later tick
      }
      if (this.stopped) return
      if (answer[0] === 1) {
        this.addNeighbour(peer)
        if (this.neighbours.size > this.host.maxLinks) this.trim()
        return
      }
      this.closed.refused++
      this.declined.set(peer, this.host.now() + OVERLAY.declineFor)
      // Not a neighbour: an on-demand link now, closed at the next tick unless data flows.
      this.host.takeUse(peer)
      this.lastUse.set(peer, this.host.now() - this.idleAfter * 2)
    } finally {
      this.proposing.delete(peer)
    }
  }

  private async dialNeighbour(peer: string): Promise<Link | undefined> {
    const ok = await this.host.dial(peer, this.addresses(peer))
    const link = this.host.link(peer)
    if (ok && link) return link
    // Not reachable now: tried again later, less often each time (healing redials too); after
    // a few failures forgotten until discovery or gossip tells of it again.
    const k = this.known.get(peer)
    if (k && ++k.failures >= MAX_DIAL_FAILURES) {
      this.known.delete(peer)
      this.order = undefined
    }
    const wait = Math.min(MAX_DIAL_BACKOFF, OVERLAY.failedFor * 2 ** ((k?.failures ?? 1) - 1))
    this.failed.set(peer, this.host.now() + wait)
    return undefined
  }

  /** Drops neighbours above `maxLinks`: not ring neighbours, the newest first. */
  private trim(): void {
    const ring = this.preference().ring
    const byAge = [...this.neighbours].sort((a, b) => b[1] - a[1]).map(([p]) => p)
    const victims = [...byAge.filter((p) => !ring.has(p)), ...byAge.filter((p) => ring.has(p))]
    for (const peer of victims) {
      if (this.neighbours.size <= this.host.maxLinks) break
      this.neighbours.delete(peer)
      this.declined.set(peer, this.host.now() + OVERLAY.declineFor)
      this.dropping.add(peer)
      this.log.debug({ peer }, 'neighbour dropped (over maxLinks)')
      // Closed at the next tick (after the peer heard it, unless it dropped us first).
      this.host.call(peer, OVERLAY_DROP, EMPTY, OVERLAY.callTimeout).catch(() => {})
    }
    this.host.changed()
  }
}
