/**
 * Failure detection without a heartbeat on every pair (pure): SWIM's indirect probes and
 * suspicion, with Lifeguard's local health and confirmations, adapted to links.
 *
 * A node heartbeats only its links. When the link to a neighbour fails (`linkFailed`), the
 * node probes it itself (`askProbe` to itself: a short dial), then asks up to
 * `indirectProbes` other neighbours to probe it (each answers from its own link's liveness
 * or a short dial). One "alive" answer ends it; when every answer is
 * "not alive", or `probeTimeout` passes, the node **suspects** the peer: a suspicion (target,
 * incarnation, accuser) spreads over the neighbours, each node passing each (target,
 * incarnation, accuser) on once. The incarnation is the version of the newest signed record
 * the accuser holds from the target; a record newer than that **refutes** it (the target
 * re-signs its records when it hears it is suspected, `refute`). Unrefuted for the suspicion
 * timeout, the peer is declared **dead** by every node that holds the suspicion (`dead`), and
 * stays dead until a newer record of it arrives.
 *
 * Timeouts (`SWIM` in constants.ts): the suspicion timeout starts at
 * `suspicionMaxMult × min` and falls towards `min = suspicionMult × max(1, log10 N) ×
 * interval` as independent accusers confirm it (Lifeguard: `max − (max − min) × log(C + 1) /
 * log(K + 1)` with C confirmations and K = `indirectProbes`). Local health (0 …
 * `maxHealth`) rises when our own probes get no answer at all or our timers fire late
 * (`late`), and falls when a probe round is answered; every timeout is multiplied by
 * `1 + health`, so a slow node waits longer before it accuses or declares anyone dead.
 *
 * Clock, randomness and transport are injected (`SwimIO`); nothing here reads time or does
 * I/O, so the simulation (bench/gossip-sim.ts) and the node (gossip.ts) run the same code.
 */
import { SWIM } from '../constants.js'

/** Least time (ms) between two refutations. */
const REFUTE_EVERY = 1000
/** Timely timer firings in a row (`late`) after which local health improves by one. */
const HEALTHY_TICKS = 20

/** One accusation: `accuser` suspects `target` at `incarnation`. */
export interface Suspicion {
  target: string
  incarnation: number
  accuser: string
}

/** Timeouts and bounds of the detector (defaults in constants.ts, `SWIM`). */
export interface SwimConfig {
  /** Neighbours asked to probe a peer whose link failed (K). */
  indirectProbes: number
  /** How long (ms) to wait for their answers. */
  probeTimeout: number
  /** The link heartbeat interval (ms): the unit of the suspicion timeout. */
  interval: number
  /** min suspicion timeout = suspicionMult × max(1, log10 N) × interval. */
  suspicionMult: number
  /** max suspicion timeout = suspicionMaxMult × min. */
  suspicionMaxMult: number
  /** Highest local-health score. */
  maxHealth: number
  /** How long (ms) a dead peer is remembered. */
  deadFor: number
  /** Most peers suspected or remembered dead at once. */
  maxTracked: number
}

/** What the detector needs from around it. */
export interface SwimIO {
  self: string
  now(): number
  random(): number
  /** Peers with a neighbour link up now. */
  neighbours(): string[]
  /** How many nodes the network has, as far as we know (N). */
  size(): number
  /** Version of the newest signed record we hold from `peer` (0 when none). */
  incarnation(peer: string): number
  /** Ask `via` to probe `target`; its answer comes back through `probeAnswer`. */
  askProbe(via: string, target: string): void
  /** Send a suspicion to `peer` alone (a suspect whose link came back). */
  tell?(peer: string, s: Suspicion): void
  /** Pass a suspicion on to every neighbour but `except`. */
  spread(s: Suspicion, except?: string): void
  /** We are suspected at `incarnation`: sign a newer record of ours and spread it. */
  refute(incarnation: number): void
  /** `peer` is declared dead (stop using it). */
  dead(peer: string): void
  /** `peer`, suspected or dead, is alive after all (a newer record). */
  alive?(peer: string): void
}

interface Probe {
  deadline: number
  /** Our own probe (a dial), before the indirect ones. */
  direct: boolean
  asked: number
  answered: number
}

interface Suspect {
  incarnation: number
  since: number
  accusers: Set<string>
}

/** The failure detector of one node (see the module doc). */
export class Swim {
  private readonly cfg: SwimConfig
  private readonly probes = new Map<string, Probe>()
  private readonly suspects = new Map<string, Suspect>()
  private readonly gone = new Map<string, { incarnation: number; at: number }>()
  private readonly seen = new Set<string>()
  private refutedAt = -1
  private lastRefute = Number.NEGATIVE_INFINITY
  private pendingRefute: number | undefined
  private onTime = 0
  /** Lifeguard's local health: 0 healthy … `maxHealth`; timeouts × (1 + health). */
  health = 0
  /** Counters (status): probes started, answered alive, suspicions, refutations, deaths. */
  readonly stats = { probes: 0, probedAlive: 0, suspected: 0, refuted: 0, dead: 0, refutations: 0 }

  constructor(
    private readonly io: SwimIO,
    cfg: Partial<SwimConfig> = {},
  ) {
    this.cfg = { ...SWIM, ...cfg }
  }

  /** True while `peer` is declared dead. */
  isDead(peer: string): boolean {
    return this.gone.has(peer)
  }

  /** True while `peer` is suspected (not yet dead). */
  isSuspect(peer: string): boolean {
    return this.suspects.has(peer)
  }

  /** Peers suspected now, and declared dead and remembered. */
  counts(): { suspects: number; dead: number } {
    return { suspects: this.suspects.size, dead: this.gone.size }
  }

  /** The link to neighbour `peer` failed (heartbeat or connection): probe it indirectly. */
  linkFailed(peer: string): void {
    if (peer === this.io.self || this.gone.has(peer) || this.probes.has(peer)) return
    const s = this.suspects.get(peer)
    if (s) {
      // Already suspected: our own failed link confirms it.
      this.onSuspect({ target: peer, incarnation: s.incarnation, accuser: this.io.self }, this.io.self)
      return
    }
    // First ourselves (a short dial: a link also drops for other reasons than the peer's
    // death), then K other neighbours.
    this.stats.probes++
    this.probes.set(peer, { deadline: this.probeDeadline(), direct: true, asked: 1, answered: 0 })
    this.io.askProbe(this.io.self, peer)
  }

  private probeDeadline(): number {
    return this.io.now() + this.cfg.probeTimeout * (1 + this.health)
  }

  /** Our own probe of `peer` failed: ask up to K other neighbours (none: suspect it). */
  private indirect(peer: string): void {
    const helpers = shuffle(
      this.io.neighbours().filter((p) => p !== peer && p !== this.io.self),
      this.io.random,
    ).slice(0, this.cfg.indirectProbes)
    if (helpers.length === 0) {
      this.probes.delete(peer)
      this.suspect(peer)
      return
    }
    this.probes.set(peer, {
      deadline: this.probeDeadline(),
      direct: false,
      asked: helpers.length,
      answered: 0,
    })
    for (const h of helpers) this.io.askProbe(h, peer)
  }

  /**
   * The link to `peer` is up again: a probe in progress ends (it is reachable); when we
   * suspect it, it hears of it (`tell`) so it can refute.
   */
  linkUp(peer: string): void {
    this.probes.delete(peer)
    const s = this.suspects.get(peer)
    if (s) this.io.tell?.(peer, { target: peer, incarnation: s.incarnation, accuser: this.io.self })
  }

  /** `via` answered our probe of `target`. */
  probeAnswer(target: string, via: string, alive: boolean): void {
    const p = this.probes.get(target)
    // An answer from the other phase (late) is not counted in this one.
    if (!p || p.direct !== (via === this.io.self)) return
    p.answered++
    if (alive) {
      this.probes.delete(target)
      this.stats.probedAlive++
      this.health = Math.max(0, this.health - 1)
      return
    }
    if (p.answered < p.asked) return
    if (p.direct) {
      this.indirect(target)
      return
    }
    this.probes.delete(target)
    this.health = Math.max(0, this.health - 1)
    this.suspect(target)
  }

  /**
   * Our periodic timer fired `lagMs` late: more than half an interval (the event loop was
   * blocked) worsens local health; every `HEALTHY_TICKS` timely ones in a row improve it.
   */
  late(lagMs: number): void {
    if (lagMs > this.cfg.interval / 2) {
      this.health = Math.min(this.cfg.maxHealth, this.health + 1)
      this.onTime = 0
    } else if (++this.onTime >= HEALTHY_TICKS) {
      this.health = Math.max(0, this.health - 1)
      this.onTime = 0
    }
  }

  private suspect(peer: string): void {
    this.onSuspect(
      { target: peer, incarnation: this.io.incarnation(peer), accuser: this.io.self },
      this.io.self,
    )
  }

  /** A suspicion from `from` (or our own): recorded, passed on once, or refuted when about us. */
  onSuspect(suspicion: Suspicion, from: string): void {
    const known = this.io.incarnation(suspicion.target)
    if (suspicion.target === this.io.self) {
      this.refuteIfNeeded(suspicion.incarnation, known)
      return
    }
    if (known === 0) return // a peer we hold no record of: not passed on (no amplification)
    if (known > suspicion.incarnation) return // refuted already
    // Never above the version we hold: a suspicion naming a future version could not be refuted.
    const s = { ...suspicion, incarnation: Math.min(suspicion.incarnation, known) }
    const dead = this.gone.get(s.target)
    if (dead && dead.incarnation >= s.incarnation) return
    const key = `${s.target}/${s.incarnation}/${s.accuser}`
    if (this.seen.has(key)) return
    this.remember(key)
    const had = this.suspects.get(s.target)
    if (had && had.incarnation > s.incarnation) return
    if (had && had.incarnation === s.incarnation) {
      // K + 1 accusers are all the timeout counts (and all that travel): no more are kept.
      if (had.accusers.has(s.accuser) || had.accusers.size > this.cfg.indirectProbes) return
      had.accusers.add(s.accuser)
      // Confirmations travel too (up to K), so everyone's timeout shrinks alike.
      if (had.accusers.size <= this.cfg.indirectProbes + 1) this.io.spread(s, from)
      return
    }
    if (!had && this.suspects.size >= this.cfg.maxTracked) return
    this.suspects.set(s.target, {
      incarnation: s.incarnation,
      since: this.io.now(),
      accusers: new Set([s.accuser]),
    })
    this.probes.delete(s.target)
    this.stats.suspected++
    this.io.spread(s, from === this.io.self ? undefined : from)
  }

  /**
   * We are suspected at `incarnation` (our record version is `mine`): refute once per version
   * of ours when our current one is suspected, and otherwise (an accuser that has not seen
   * our newest record yet) too; at most once a second either way.
   */
  private refuteIfNeeded(incarnation: number, mine: number): void {
    const current = incarnation >= mine && this.refutedAt !== mine
    if (this.io.now() - this.lastRefute < REFUTE_EVERY) {
      // Refuted within the last second: a suspicion of our current version waits for the
      // next tick past it (so a node suspecting us in a loop gets one record a second).
      if (current) this.pendingRefute = incarnation
      return
    }
    this.refuteNow(incarnation, mine)
  }

  private refuteNow(incarnation: number, mine: number): void {
    this.pendingRefute = undefined
    this.refutedAt = mine
    this.lastRefute = this.io.now()
    this.stats.refutations++
    this.io.refute(incarnation)
  }

  /** A signed record of `peer` at `version` was accepted: newer than a suspicion, it refutes it. */
  onRecord(peer: string, version: number): void {
    const s = this.suspects.get(peer)
    if (s && version > s.incarnation) {
      this.suspects.delete(peer)
      this.stats.refuted++
      this.io.alive?.(peer)
    }
    const d = this.gone.get(peer)
    if (d && version > d.incarnation) {
      this.gone.delete(peer)
      this.io.alive?.(peer)
    }
  }

  /** The suspicion timeout (ms) for a suspicion with `accusers` accusers (see the module doc). */
  suspicionTimeout(accusers: number): number {
    const n = Math.max(1, this.io.size())
    const min = this.cfg.suspicionMult * Math.max(1, Math.log10(n)) * this.cfg.interval
    const max = this.cfg.suspicionMaxMult * min
    const k = this.cfg.indirectProbes
    const c = Math.min(k, Math.max(0, accusers - 1))
    const t = Math.max(min, max - ((max - min) * Math.log(c + 1)) / Math.log(k + 1))
    return t * (1 + this.health)
  }

  /** Runs the timers: probes without enough answers, suspicions past their timeout, old deaths. */
  tick(): void {
    const now = this.io.now()
    if (this.pendingRefute !== undefined && now - this.lastRefute >= REFUTE_EVERY)
      this.refuteNow(this.pendingRefute, this.io.incarnation(this.io.self))
    for (const [peer, p] of this.probes) {
      if (now < p.deadline) continue
      if (p.direct) {
        this.indirect(peer)
        continue
      }
      this.probes.delete(peer)
      // Nobody answered at all: likely our own messages are slow (Lifeguard's missed nack).
      if (p.answered === 0) this.health = Math.min(this.cfg.maxHealth, this.health + 1)
      this.suspect(peer)
    }
    for (const [peer, s] of this.suspects) {
      if (now - s.since < this.suspicionTimeout(s.accusers.size)) continue
      this.suspects.delete(peer)
      this.gone.set(peer, { incarnation: s.incarnation, at: now })
      if (this.gone.size > this.cfg.maxTracked) {
        const oldest = this.gone.keys().next().value
        if (oldest !== undefined) this.gone.delete(oldest)
      }
      this.stats.dead++
      this.io.dead(peer)
    }
    for (const [peer, d] of this.gone) {
      if (now - d.at < this.cfg.deadFor) break // oldest first
      this.gone.delete(peer)
    }
  }

  private remember(key: string): void {
    this.seen.add(key)
    if (this.seen.size > this.cfg.maxTracked * 4) {
      const oldest = this.seen.values().next().value
      if (oldest !== undefined) this.seen.delete(oldest)
    }
  }
}

/** Fisher–Yates on a copy, with injected randomness. */
function shuffle<T>(items: T[], random: () => number): T[] {
  const a = [...items]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const t = a[i]!
    a[i] = a[j]!
    a[j] = t
  }
  return a
}
