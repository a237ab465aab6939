/**
 * A deterministic simulated network for Raft tests: seeded PRNG, message loss, delay,
 * reordering, duplication, partitions, crash/restart (persisted state survives, unstable
 * state is lost), and an invariant checker run after every event.
 */

import {
  decodeConfChange,
  decodeMessage,
  type Entry,
  encodeMessage,
  MemoryStorage,
  type Message,
  RawNode,
} from '../../src/raft/index.js'
import { mulberry32 } from '../helpers/rng.js'
import { checkElectable, checkPromise, checkRound } from './invariants.js'

/** mulberry32: a tiny seeded PRNG returning floats in [0, 1). */
export { mulberry32 }

export interface Faults {
  drop: number
  dup: number
  maxDelay: number
  partition: number
  heal: number
  crash: number
  restart: number
  /** Probability that a crash fault hits the current leader rather than a random node. */
  leaderCrash: number
  crashMidReady: number
  skipReady: number
  /** Per round: a random live node snapshots its applied state and compacts its log. */
  compact: number
}

export const NO_FAULTS: Faults = {
  drop: 0,
  dup: 0,
  maxDelay: 0,
  partition: 0,
  heal: 0,
  crash: 0,
  restart: 0,
  leaderCrash: 0,
  crashMidReady: 0,
  skipReady: 0,
  compact: 0,
}

export interface SimOptions {
  ids: string[]
  seed: number
  electionTick?: number
  heartbeatTick?: number
  maxSizePerMsg?: number
  maxInflightMsgs?: number
  preVote?: boolean
  checkQuorum?: boolean
  faults?: Faults
  /** Deliver due messages in send order (scripted tests); default: random order. */
  fifo?: boolean
  /** Members to be added later: they start with the bootstrap configuration (not including them). */
  joiners?: string[]
}

export const key = (e: Entry): string =>
  `${e.type === 'confChange' ? 'cc:' : ''}${new TextDecoder().decode(e.data)}`

/** One simulated member: durable storage and app state, and a volatile RawNode. */
export class SimNode {
  rn: RawNode | null = null
  appliedIndex = 0
  /** The application's durable state: applied entry keys, by index - 1. */
  applied: string[] = []

  constructor(
    readonly id: string,
    readonly storage: MemoryStorage,
    private readonly make: (n: SimNode) => RawNode,
  ) {}

  get alive(): boolean {
    return this.rn !== null
  }

  start(): void {
    this.rn = this.make(this)
  }

  crash(): void {
    this.rn = null
  }

  node(): RawNode {
    if (this.rn === null) throw new Error(`${this.id} is down`)
    return this.rn
  }
}

interface InFlight {
  at: number
  seq: number
  bytes: Uint8Array
  to: string
  from: string
}

/** Thrown when a safety invariant breaks; the message says which and where. */
export class InvariantError extends Error {
  override name = 'InvariantError'
}

export class Sim {
  readonly rng: () => number
  readonly nodes = new Map<string, SimNode>()
  readonly order: string[]
  faults: Faults
  now = 0
  private seq = 0
  private queue: InFlight[] = []
  /** Partition group per node; nodes in different groups cannot talk. null: fully connected. */
  groups: Map<string, number> | null = null
  /** Links cut by scripted tests, as "a>b". */
  readonly cut = new Set<string>()
  /** Observer of every delivered message (scripted tests count them). */
  onDeliver: ((m: Message) => void) | null = null
  /** Scripted drop rule: return false to drop a message at delivery. */
  filter: ((m: Message) => boolean) | null = null
  // invariant state
  readonly leaders = new Map<number, string>()
  private readonly entryMap = new Map<string, string>()
  readonly committed: { term: number; key: string; commitTerm: number }[] = []
  private readonly appliedMap: string[] = []
  private readonly seenCommit = new Map<string, number>()
  events = 0

  constructor(readonly opts: SimOptions) {
    this.rng = mulberry32(opts.seed)
    this.faults = opts.faults ?? NO_FAULTS
    this.order = [...opts.ids, ...(opts.joiners ?? [])]
    for (const id of this.order) {
      const voters = opts.ids
      const nodeRand = mulberry32((opts.seed * 31 + this.order.indexOf(id) * 7919 + 1) >>> 0)
      const sn = new SimNode(
        id,
        new MemoryStorage({ voters }),
        (n) =>
          new RawNode({
            id: n.id,
            storage: n.storage,
            applied: n.appliedIndex,
            electionTick: opts.electionTick ?? 10,
            heartbeatTick: opts.heartbeatTick ?? 1,
            maxSizePerMsg: opts.maxSizePerMsg ?? 1024,
            maxInflightMsgs: opts.maxInflightMsgs ?? 4,
            preVote: opts.preVote ?? true,
            checkQuorum: opts.checkQuorum ?? true,
            rand: nodeRand,
          }),
      )
      this.nodes.set(id, sn)
      sn.start()
      this.seenCommit.set(id, 0)
    }
  }

  n(id: string): SimNode {
    return this.nodes.get(id)!
  }

  rn(id: string): RawNode {
    return this.n(id).node()
  }

  int(n: number): number {
    return Math.floor(this.rng() * n)
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!
  }

  alive(): SimNode[] {
    return this.order.map((id) => this.n(id)).filter((n) => n.alive)
  }

  leader(): SimNode | undefined {
    let best: SimNode | undefined
    for (const n of this.alive()) {
      const r = n.node().raft
      if (r.role === 'leader' && (best === undefined || r.term > best.node().raft.term)) best = n
    }
    return best
  }

  connected(a: string, b: string): boolean {
    if (this.cut.has(`${a}>${b}`)) return false
    if (this.groups === null) return true
    return this.groups.get(a) === this.groups.get(b)
  }

  isolate(id: string): void {
    for (const o of this.order) {
      if (o === id) continue
      this.cut.add(`${id}>${o}`)
      this.cut.add(`${o}>${id}`)
    }
  }

  heal(): void {
    this.cut.clear()
    this.groups = null
  }

  private enqueue(m: Message): void {
    if (this.rng() < this.faults.drop) return
    const copies = this.rng() < this.faults.dup ? 2 : 1
    const bytes = encodeMessage(m) // every message crosses the wire codec
    for (let c = 0; c < copies; c++) {
      this.queue.push({
        at: this.now + this.int(this.faults.maxDelay + 1),
        seq: this.seq++,
        bytes,
        to: m.to,
        from: m.from,
      })
    }
  }

  /** Runs one Ready through persist -> send -> apply -> advance for `sn`. */
  processReady(sn: SimNode): void {
    const rn = sn.rn
    if (rn === null || !rn.hasReady()) return
    const rd = rn.ready()
    // 1. persist (a snapshot also replaces the application state)
    if (rd.snapshot) {
      const s = rd.snapshot
      sn.storage.applySnapshot(s)
      const state = JSON.parse(new TextDecoder().decode(s.data)) as string[]
      if (state.length !== s.index)
        throw new InvariantError(`snapshot ${s.index} holds ${state.length} entries`)
      for (let i = 0; i < state.length; i++) this.recordApplied(i + 1, state[i]!)
      sn.applied = state
      sn.appliedIndex = s.index
    }
    if (rd.entries.length > 0) {
      sn.storage.append(rd.entries)
      for (const e of rd.entries) this.checkEntry(sn.storage, e)
    }
    if (rd.hardState) sn.storage.setHardState(rd.hardState)
    if (this.faults.crashMidReady > 0 && this.rng() < this.faults.crashMidReady) {
      this.crash(sn.id) // persisted, but nothing sent or applied
      return
    }
    // 2. send: every promise a message makes must already be durable.
    for (const m of rd.messages) {
      checkPromise(sn, m)
      this.enqueue(m)
    }
    // 3. apply
    for (const e of rd.committedEntries) {
      if (e.index !== sn.appliedIndex + 1) {
        throw new InvariantError(`${sn.id} applies ${e.index} after ${sn.appliedIndex}`)
      }
      const k = key(e)
      this.recordApplied(e.index, k)
      if (e.type === 'confChange') {
        const cs = rn.applyConfChange(decodeConfChange(e.data))
        sn.storage.setConfState(cs)
      }
      sn.applied.push(k)
      sn.appliedIndex = e.index
    }
    rn.advance(rd)
    this.check()
  }

  private recordApplied(index: number, k: string): void {
    const prev = this.appliedMap[index]
    if (prev === undefined) this.appliedMap[index] = k
    else if (prev !== k)
      throw new InvariantError(`state machine safety: index ${index} applied as ${prev} and ${k}`)
  }

  /** Snapshot `id`'s applied state into its storage and drop the log up to it. */
  compact(id: string): void {
    const sn = this.n(id)
    if (sn.appliedIndex < sn.storage.firstIndex()) return
    const data = new TextEncoder().encode(JSON.stringify(sn.applied))
    sn.storage.compact(sn.appliedIndex, sn.storage.confState, data)
  }

  /** Log Matching: (index, term) names one entry, with one predecessor term, everywhere. */
  private checkEntry(st: MemoryStorage, e: Entry): void {
    const k = `${e.index}:${e.term}`
    const v = `${st.term(e.index - 1)}|${key(e)}`
    const prev = this.entryMap.get(k)
    if (prev === undefined) this.entryMap.set(k, v)
    else if (prev !== v) throw new InvariantError(`log matching: entry ${k} is ${prev} and ${v}`)
  }

  crash(id: string): void {
    this.n(id).crash()
  }

  restart(id: string): void {
    const sn = this.n(id)
    if (sn.alive) return
    sn.start()
    const commit = sn.node().raft.log.committed
    // Everything the restarted node believes committed must be the committed history.
    for (let i = sn.node().raft.log.firstIndex(); i <= commit; i++) this.checkCommitted(sn, i)
    this.seenCommit.set(id, commit)
  }

  private checkCommitted(sn: SimNode, i: number): void {
    const r = sn.node().raft
    const e = r.log.slice(i, i + 1, Number.POSITIVE_INFINITY)[0]!
    const c = this.committed[i]
    if (c === undefined) {
      // Leaders commit first; a follower cannot see a commit no leader made (commitTerm = its term).
      this.committed[i] = { term: e.term, key: key(e), commitTerm: r.role === 'leader' ? r.term : r.term + 1 }
    } else if (c.term !== e.term || c.key !== key(e)) {
      throw new InvariantError(
        `committed entry ${i} changed: ${c.term}/${c.key} vs ${e.term}/${key(e)} on ${sn.id}`,
      )
    }
  }

  /** Cheap per-event checks: election safety, committed prefix stability. */
  check(): void {
    this.events++
    for (const sn of this.nodes.values()) {
      if (sn.rn === null) continue
      const r = sn.rn.raft
      if (r.role === 'leader') {
        const l = this.leaders.get(r.term)
        if (l === undefined) this.leaders.set(r.term, sn.id)
        else if (l !== sn.id)
          throw new InvariantError(`election safety: ${l} and ${sn.id} both lead term ${r.term}`)
      }
      const seen = this.seenCommit.get(sn.id)!
      if (r.log.committed > seen) {
        // Entries inside a snapshot were checked when some node applied them.
        for (let i = Math.max(seen + 1, r.log.firstIndex()); i <= r.log.committed; i++)
          this.checkCommitted(sn, i)
        this.seenCommit.set(sn.id, r.log.committed)
      }
    }
    checkElectable(this)
  }

  /** Delivers every message due now, in random order. */
  deliverDue(): void {
    const due: InFlight[] = []
    const later: InFlight[] = []
    for (const f of this.queue) (f.at <= this.now ? due : later).push(f)
    this.queue = later
    if (this.opts.fifo) due.sort((x, y) => x.at - y.at || x.seq - y.seq)
    else {
      for (let i = due.length - 1; i > 0; i--) {
        const j = this.int(i + 1)
        ;[due[i], due[j]] = [due[j]!, due[i]!]
      }
    }
    for (const f of due) {
      const sn = this.nodes.get(f.to)
      if (sn?.rn == null || !this.connected(f.from, f.to)) continue
      const m = decodeMessage(f.bytes)
      if (this.filter !== null && !this.filter(m)) continue
      this.onDeliver?.(m)
      sn.rn.step(m)
      this.check()
    }
  }

  /** Applies random faults for one round. */
  private faultStep(): void {
    const f = this.faults
    if (this.groups === null && this.rng() < f.partition) {
      this.groups = new Map()
      const split = this.rng() < 0.5
      const l = this.leader()
      const lone = l !== undefined && this.rng() < f.leaderCrash ? l.id : this.pick(this.order)
      for (const id of this.order) this.groups.set(id, split ? this.int(2) : id === lone ? 1 : 0)
    } else if (this.groups !== null && this.rng() < f.heal) {
      this.groups = null
    }
    if (this.rng() < f.crash) {
      const up = this.alive()
      const l = this.leader()
      if (l !== undefined && this.rng() < f.leaderCrash) this.crash(l.id)
      else if (up.length > 0) this.crash(this.pick(up).id)
    }
    for (const sn of this.nodes.values()) if (!sn.alive && this.rng() < f.restart) this.restart(sn.id)
    if (f.compact > 0 && this.rng() < f.compact) this.compact(this.pick(this.order))
  }

  /** One round = one tick of logical time for every live node, readies, deliveries. */
  round(): void {
    this.faultStep()
    for (const sn of this.alive()) {
      sn.node().tick()
      this.check()
    }
    const ids = [...this.order]
    for (let i = ids.length - 1; i > 0; i--) {
      const j = this.int(i + 1)
      ;[ids[i], ids[j]] = [ids[j]!, ids[i]!]
    }
    for (const id of ids) if (this.rng() >= this.faults.skipReady) this.processReady(this.n(id))
    this.deliverDue()
    checkRound(this)
    this.now++
  }

  /** Without faults: process readies and deliver messages until nothing is left (no ticks). */
  stabilize(maxIters = 1000): void {
    for (let i = 0; i < maxIters; i++) {
      let busy = false
      for (const sn of this.alive()) {
        if (sn.node().hasReady()) {
          busy = true
          this.processReady(sn)
        }
      }
      if (this.queue.length > 0) {
        busy = true
        this.now = Math.max(this.now, ...this.queue.map((f) => f.at))
        this.deliverDue()
      }
      if (!busy) {
        checkRound(this)
        return
      }
    }
    throw new Error('stabilize did not converge')
  }

  /** Drops every message in flight. */
  clearQueue(): void {
    this.queue = []
  }

  /** Proposes `data` at `id`; returns false if it was dropped. */
  propose(id: string, data: string): boolean {
    try {
      this.rn(id).propose(new TextEncoder().encode(data))
      this.check()
      return true
    } catch (err) {
      if ((err as Error).name === 'ProposalDroppedError') return false
      throw err
    }
  }
}
