/**
 * Liveness and readiness of a node (`GET /healthz`, `GET /readyz`; docs/metrics.md).
 *
 * Live: the node runs (not stopped). Ready, every condition below at once:
 * - `listening`: libp2p listens on at least one address;
 * - `linked`: linked to at least one peer, when peers are known (bootstrap addresses given,
 *   or another member of a cluster seen);
 * - `metadata`: every joined cluster whose members include a storage member has its metadata
 *   reachable: this node's metadata replica knows a leader it is linked to (or is it), or,
 *   on a node without a metadata replica, a signed stream table of the cluster arrived within
 *   `READY_TABLE_MAX_AGE_MS` from a leader it is linked to;
 * - `partitions`: no partition replica hosted here has been without a known leader for longer
 *   than `READY_LEADERLESS_MS` (about two election timeouts).
 */
import { READY_LEADERLESS_MS, READY_TABLE_MAX_AGE_MS } from '../constants.js'

/** What readiness reads from the node. */
export interface HealthSource {
  self: string
  running(): boolean
  addresses(): string[]
  /** Peers linked now. */
  linkCount(): number
  linked(peer: string): boolean
  /** True when the node knows of peers it should link to. */
  peersKnown(): boolean
  /** Clusters this node joined. */
  joined(): string[]
  /** Storage members of a cluster (peer ids). */
  storageMembers(cluster: string): string[]
  /** This node's metadata replica's leader (null: none), undefined without a replica. */
  metaLeader(cluster: string): string | null | undefined
  /** Leader named by the newest stream table of the cluster and when it arrived (ms). */
  table(cluster: string): { leader: string; receivedAt: number } | undefined
  /** Partition replicas hosted here, with whether a leader is known. */
  partitions(): Array<{ stream: string; partition: number; key: string; hasLeader: boolean }>
  now(): number
}

/** One failing readiness condition. */
export interface ReadyFailure {
  check: 'running' | 'listening' | 'linked' | 'metadata' | 'partitions'
  detail: string
}

/** How often leaderless partitions are looked for (ms). */
const WATCH_MS = 100

/** Readiness checks of one node; `start` begins watching partitions for missing leaders. */
export class Health {
  /** Partition key → since when no leader was known (ms). */
  private readonly leaderless = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly src: HealthSource) {}

  /** Starts the partition watch (an unref'd timer). */
  start(): void {
    this.watch()
    this.timer = setInterval(() => this.watch(), WATCH_MS)
    this.timer.unref()
  }

  /** Stops the partition watch. */
  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** True while the node runs. */
  live(): boolean {
    return this.src.running()
  }

  /** The failing readiness conditions; empty when ready. */
  check(): ReadyFailure[] {
    const s = this.src
    if (!s.running()) return [{ check: 'running', detail: 'node is stopped' }]
    const out: ReadyFailure[] = []
    if (s.addresses().length === 0) out.push({ check: 'listening', detail: 'no listen address' })
    if (s.peersKnown() && s.linkCount() === 0)
      out.push({ check: 'linked', detail: 'peers are known but none is linked' })
    const reachable = (p: string) => p === s.self || s.linked(p)
    for (const cluster of s.joined()) {
      if (s.storageMembers(cluster).length === 0) continue // no durable streams: no metadata
      const leader = s.metaLeader(cluster)
      if (leader !== undefined) {
        if (leader === null)
          out.push({ check: 'metadata', detail: `${cluster}: metadata group has no leader` })
        else if (!reachable(leader))
          out.push({ check: 'metadata', detail: `${cluster}: metadata leader ${leader} is not linked` })
        continue
      }
      const t = s.table(cluster)
      if (t === undefined || s.now() - t.receivedAt > READY_TABLE_MAX_AGE_MS)
        out.push({ check: 'metadata', detail: `${cluster}: no recent stream table from its metadata leader` })
      else if (!reachable(t.leader))
        out.push({ check: 'metadata', detail: `${cluster}: metadata leader ${t.leader} is not linked` })
    }
    this.watch()
    const now = s.now()
    for (const p of s.partitions()) {
      const since = this.leaderless.get(p.key)
      if (since !== undefined && now - since > READY_LEADERLESS_MS)
        out.push({
          check: 'partitions',
          detail: `${p.stream}/${p.partition}: no leader for ${Math.round(now - since)} ms`,
        })
    }
    return out
  }

  /** Records since when each hosted partition has had no leader. */
  private watch(): void {
    const now = this.src.now()
    const seen = new Set<string>()
    for (const p of this.src.partitions()) {
      seen.add(p.key)
      if (p.hasLeader) this.leaderless.delete(p.key)
      else if (!this.leaderless.has(p.key)) this.leaderless.set(p.key, now)
    }
    for (const k of this.leaderless.keys()) if (!seen.has(k)) this.leaderless.delete(k)
  }
}
