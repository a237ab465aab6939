/**
 * Queue groups (`subscribe(pattern, { queue })`): of the subscriptions in one group whose
 * pattern matches a topic, network-wide, exactly one gets each message published to it.
 * A group is named by its queue name alone: subscriptions of group `w` on `jobs.*` and on
 * `jobs.eu` share the messages of `jobs.eu`. Several groups matching a topic get one copy
 * each; plain subscriptions all get theirs, as without groups.
 *
 * Interest in a group travels with the plain interest (the Interest frame's queue tail,
 * `frames.ts`), per node: a publisher knows which peers (and whether itself) hold members of
 * which group for which patterns, and picks one member node per group and message
 * (`pick`): round-robin over the member nodes in peer-id order, skipping nodes whose link is
 * down and, while another one is free, those whose link is crowded (its send queue holds
 * `SENDER_WAIT_BYTES`); this node counts as a member like any other. The chosen node hands
 * the message to one of its own members of the group, round-robin (`pickLocal`). Delivery
 * is at most once, like all pub/sub: a message sent to a member whose link drops before the
 * member read it is lost, as is one reaching a node whose member just unsubscribed.
 *
 * With bounded links (src/overlay/), group members at nodes we have no link to are known from
 * their signed interest records (`FarGroups`): they are picked like the others (taken as
 * free until a dial to them fails), and the chosen one gets the message over an on-demand
 * link (`pubsub.ts`); once linked, its direct Interest takes over.
 *
 * Memory: one index entry per (peer, pattern, queue) announced, bounded with the peer's
 * patterns (`PubSub.onInterest`); route caches of at most `ROUTE_CACHE_SIZE` topics; one
 * round-robin counter per group name seen (at most `MAX_TURNS`, then started over).
 */

import type { QueueEntry } from './frames.js'
import { SubjectIndex } from './subject.js'

/** Topics whose group routes are cached. */
const ROUTE_CACHE_SIZE = 4096
/** Round-robin counters kept (one per group name). */
const MAX_TURNS = 4096
/** Most (pattern, queue) entries one peer may announce. */
export const MAX_PEER_QUEUE_ENTRIES = 10_000

/** The member nodes of one group for one topic: peer ids (this node's own included), sorted. */
export interface GroupRoute {
  readonly queue: string
  readonly members: string[]
  /** Members known only from interest records (no link; reached on demand). */
  readonly far?: Set<string>
}

/** How a member node can take a message now: 0 unreachable, 1 reachable but busy, 2 free. */
export type MemberState = 0 | 1 | 2

const NO_ROUTES: GroupRoute[] = []

/** Group members known from interest records (src/overlay/interest.ts). */
export interface FarGroups {
  /** Changes whenever the records' queue entries change (routes are recomputed). */
  groupVersion(): number
  /** [peer, queue] of every record entry whose pattern matches `topic`. */
  groupRoute(topic: string): Array<[string, string]>
}

function entryKey(pattern: string, queue: string): string {
  return `${queue} ${pattern}` // neither may contain a space
}

/** The queue-group tables of one node: local members, peers' announced entries, picks. */
export class QueueGroups<S extends { readonly queue?: string | undefined }> {
  /** Local group members, by pattern. */
  private readonly local = new SubjectIndex<S>()
  /** Local subscriptions per announced entry. */
  private readonly localCount = new Map<string, { entry: QueueEntry; n: number }>()
  /** Per peer: the queue names it announced, by pattern. */
  private readonly remote = new Map<string, SubjectIndex<string>>()
  private readonly remoteEntries = new Map<string, Set<string>>()
  private routes = new Map<string, GroupRoute[]>()
  private localRoutes = new Map<string, Map<string, S[]>>()
  private turns = new Map<string, number>()
  private farVersion = 0

  constructor(
    private readonly self: string,
    private readonly far?: FarGroups,
  ) {}

  /** True when any group member is known (here, at a peer or in a record): publishes must look. */
  get active(): boolean {
    return this.local.size > 0 || this.remote.size > 0 || (this.far?.groupVersion() ?? 0) > 0
  }

  /** True when this node holds a group member. */
  get hasLocal(): boolean {
    return this.local.size > 0
  }

  /** Entries announced by peers, all together (status). */
  get remoteSize(): number {
    let n = 0
    for (const s of this.remoteEntries.values()) n += s.size
    return n
  }

  /** Adds a local member; returns the entry when it is new (to announce). */
  addLocal(pattern: string, queue: string, sub: S): QueueEntry | undefined {
    this.local.add(pattern, sub)
    this.invalidate()
    const k = entryKey(pattern, queue)
    const c = this.localCount.get(k)
    if (c) {
      c.n++
      return undefined
    }
    const entry = { pattern, queue }
    this.localCount.set(k, { entry, n: 1 })
    return entry
  }

  /** Removes a local member; returns the entry when it was the last (to withdraw). */
  removeLocal(pattern: string, queue: string, sub: S): QueueEntry | undefined {
    this.local.delete(pattern, sub)
    this.invalidate()
    const k = entryKey(pattern, queue)
    const c = this.localCount.get(k)
    if (!c) return undefined
    if (--c.n > 0) return undefined
    this.localCount.delete(k)
    return c.entry
  }

  /** Every entry this node announces (a link came up). */
  localEntries(): QueueEntry[] {
    return [...this.localCount.values()].map((c) => c.entry)
  }

  /**
   * Applies a peer's Interest entries (`replace` drops its earlier ones first). `take` is
   * asked before each new entry and may refuse it (the node-wide bound); `release(n)` gives
   * back what removed entries held. Throws `PeerInputError`-style via `tooMany` when the
   * peer passes `MAX_PEER_QUEUE_ENTRIES`.
   */
  applyRemote(
    peer: string,
    replace: boolean,
    remove: boolean,
    entries: QueueEntry[],
    take: () => boolean,
    release: (n: number) => void,
    tooMany: () => never,
  ): void {
    let idx = this.remote.get(peer)
    let set = this.remoteEntries.get(peer)
    if (replace && set) {
      release(set.size)
      idx = undefined
    }
    if (!idx || !set) {
      if (entries.length === 0 || remove) {
        this.remote.delete(peer)
        this.remoteEntries.delete(peer)
        this.invalidate()
        return
      }
      idx = new SubjectIndex()
      set = new Set()
      this.remote.set(peer, idx)
      this.remoteEntries.set(peer, set)
    }
    for (const e of entries) {
      const k = entryKey(e.pattern, e.queue)
      if (remove) {
        if (set.delete(k)) {
          idx.delete(e.pattern, e.queue)
          release(1)
        }
      } else if (!set.has(k)) {
        if (set.size >= MAX_PEER_QUEUE_ENTRIES) tooMany()
        if (!take()) continue
        idx.add(e.pattern, e.queue)
        set.add(k)
      }
    }
    if (set.size === 0) {
      this.remote.delete(peer)
      this.remoteEntries.delete(peer)
    }
    this.invalidate()
  }

  /** A peer's connection ended: forgets its entries; returns how many there were. */
  forget(peer: string): number {
    const set = this.remoteEntries.get(peer)
    if (!set) return 0
    this.remote.delete(peer)
    this.remoteEntries.delete(peer)
    this.invalidate()
    return set.size
  }

  /** The groups with a member matching `topic`, each with its member nodes (cached). */
  route(topic: string): GroupRoute[] {
    const v = this.far?.groupVersion() ?? 0
    if (v !== this.farVersion) {
      this.farVersion = v
      this.routes = new Map()
    }
    let r = this.routes.get(topic)
    if (r) return r
    const byQueue = new Map<string, string[]>()
    for (const [peer, idx] of this.remote) {
      for (const q of idx.match(topic)) {
        const members = byQueue.get(q)
        if (members) members.push(peer)
        else byQueue.set(q, [peer])
      }
    }
    // A record's entries count only for nodes without direct interest (it is older news).
    const far = new Map<string, Set<string>>()
    for (const [peer, q] of this.far?.groupRoute(topic) ?? []) {
      if (peer === this.self || this.remote.has(peer)) continue
      const members = byQueue.get(q)
      if (!members) byQueue.set(q, [peer])
      else if (!members.includes(peer)) members.push(peer)
      const f = far.get(q)
      if (f) f.add(peer)
      else far.set(q, new Set([peer]))
    }
    for (const q of this.localGroups(topic).keys()) {
      const members = byQueue.get(q)
      if (members) members.push(this.self)
      else byQueue.set(q, [this.self])
    }
    r = byQueue.size === 0 ? NO_ROUTES : []
    for (const [queue, members] of byQueue) r.push({ queue, members: members.sort(), far: far.get(queue) })
    if (this.routes.size >= ROUTE_CACHE_SIZE) this.routes = new Map()
    this.routes.set(topic, r)
    return r
  }

  /**
   * One member node of `g` for the next message: round-robin from the group's turn,
   * the first free node (`state` 2), else the first busy one (1); undefined when none is
   * reachable. A far member without a link is free unless `farState` says otherwise.
   */
  pick(
    g: GroupRoute,
    state: (member: string) => MemberState,
    farState?: (member: string) => MemberState,
  ): string | undefined {
    const n = g.members.length
    const start = this.turn(g.queue)
    let busy: string | undefined
    for (let i = 0; i < n; i++) {
      const m = g.members[(start + i) % n]!
      let s = m === this.self ? 2 : state(m)
      if (s === 0 && g.far?.has(m)) s = farState?.(m) ?? 0
      if (s === 2) {
        this.turns.set(g.queue, start + i + 1)
        return m
      }
      if (s === 1 && busy === undefined) busy = m
    }
    if (busy !== undefined) this.turns.set(g.queue, g.members.indexOf(busy) + 1)
    return busy
  }

  /** One local member of `queue` matching `topic`, round-robin; undefined when none is left. */
  pickLocal(topic: string, queue: string): S | undefined {
    const subs = this.localGroups(topic).get(queue)
    if (!subs) return undefined
    const key = `\0${queue}` // local turns beside the groups' node turns
    const t = this.turn(key)
    this.turns.set(key, t + 1)
    return subs[t % subs.length]
  }

  private turn(key: string): number {
    let t = this.turns.get(key)
    if (t === undefined) {
      if (this.turns.size >= MAX_TURNS) this.turns = new Map()
      t = 0
    }
    // Keep counters small: they only matter modulo a group's size.
    return t > 1_000_000_000 ? 0 : t
  }

  /** Local members matching `topic`, by queue (cached). */
  private localGroups(topic: string): Map<string, S[]> {
    let g = this.localRoutes.get(topic)
    if (g) return g
    g = new Map()
    for (const s of this.local.match(topic)) {
      const q = s.queue!
      const list = g.get(q)
      if (list) list.push(s)
      else g.set(q, [s])
    }
    if (this.localRoutes.size >= ROUTE_CACHE_SIZE) this.localRoutes = new Map()
    this.localRoutes.set(topic, g)
    return g
  }

  private invalidate(): void {
    if (this.routes.size > 0) this.routes = new Map()
    if (this.localRoutes.size > 0) this.localRoutes = new Map()
  }
}
