/**
 * `ReplicaWatch`: what one cluster host logs about its durable streams (docs/logging.md).
 * Nothing here runs per message: tables arrive every few seconds, leader changes per
 * election, and `tick` runs with the host's one-second timer.
 *
 * - Streams created and deleted, on the metadata leader that applied them (`applied`).
 * - Each table of the cluster is compared with the previous one: replicas replaced (the
 *   placement of a partition changed).
 * - Leader changes of every hosted partition and of the metadata group (old → new, term).
 * - Catch-up of a replica that (re)starts with data, or that joins an existing group: it is
 *   logged when it starts and when the partition leader counts it in sync again (asked with
 *   `s.pstat` once a second while catching up; at once when this replica becomes leader).
 * - On a partition leader, followers leaving and re-entering the in-sync set (changes seen
 *   during one leadership; the first look after an election only sets the baseline).
 */
import type { Logger } from '../../types.js'
import type { StreamTable } from '../meta/directory.js'
import type { StreamMeta } from '../meta/metadata.js'
import type { PartitionState } from '../wire.js'
import type { HostedPartition } from './host.js'
import { replicaState } from './replica-state.js'

/** What the watch needs from its cluster host. */
export interface ReplicaWatchDeps {
  self: string
  cluster: string
  logger: Logger
  now(): number
  /** Followers heard within this long (ms) may count as in sync (see replica-state.ts). */
  freshMs: number
  /** Asks `peer` for its view of a hosted partition (`s.pstat`); undefined when it has none. */
  partitionState(peer: string, h: HostedPartition): Promise<PartitionState | undefined>
}

interface Watched {
  leader: string | null
  /** Catching up since (ms), with what it had at the start; undefined when in sync. */
  catchUp?: { since: number; nextOffset: number; asking: boolean }
  /** The in-sync set last seen while leading in `term` (leader only). */
  inSync?: { term: number; peers: Set<string> }
}

/** See the module doc. */
export class ReplicaWatch {
  private streams: Map<string, StreamMeta> | undefined
  private readonly watched = new WeakMap<HostedPartition, Watched>()
  private metaLeader: string | null = null

  constructor(private readonly d: ReplicaWatchDeps) {}

  private fields(h: HostedPartition): Record<string, unknown> {
    return { cluster: this.d.cluster, stream: h.meta.name, partition: h.partition }
  }

  private state(h: HostedPartition): Watched {
    let w = this.watched.get(h)
    if (w === undefined) this.watched.set(h, (w = { leader: null }))
    return w
  }

  /**
   * A create or delete applied by the metadata group, as its leader answered it (logged once
   * per cluster, on the metadata leader; retried calls are not logged again).
   */
  applied(op: 'created' | 'deleted', s: StreamMeta): void {
    const fields = { cluster: this.d.cluster, stream: s.name, subject: s.subject }
    if (op === 'deleted') {
      this.d.logger.info(fields, 'stream deleted')
      return
    }
    this.d.logger.info(
      { ...fields, partitions: s.partitions, replicas: s.replicas, placement: s.placement },
      'stream created',
    )
  }

  /** A newer table of the cluster: logs replicas replaced (a partition's placement changed). */
  table(table: StreamTable): void {
    const next = new Map(table.streams.map((s) => [`${s.name}/${s.createdIndex}`, s]))
    const prev = this.streams
    this.streams = next
    if (prev === undefined) return
    for (const [k, s] of next) {
      const old = prev.get(k)
      if (old === undefined) continue
      s.placement.forEach((replicas, partition) => {
        const before = old.placement[partition] ?? []
        const removed = before.filter((r) => !replicas.includes(r))
        const added = replicas.filter((r) => !before.includes(r))
        if (removed.length > 0 || added.length > 0)
          this.d.logger.info(
            { cluster: this.d.cluster, stream: s.name, partition, removed, added, replicas },
            'replica replaced',
          )
      })
    }
  }

  /**
   * A hosted replica started. `catchingUp`: it restarted with data, or joined an existing
   * group, so it may be behind the others until the leader counts it in sync.
   */
  started(h: HostedPartition, catchingUp: boolean): void {
    const w = this.state(h)
    if (!catchingUp) return
    let nextOffset = 0
    try {
      nextOffset = h.replica.status().nextOffset
    } catch {
      // not running: logged as offset 0
    }
    w.catchUp = { since: this.d.now(), nextOffset, asking: false }
    this.d.logger.info({ ...this.fields(h), nextOffset }, 'replica catching up')
  }

  /** The raft group of a hosted replica saw a leader (or role) change. */
  partitionLeader(h: HostedPartition, leader: string | null, term: number): void {
    const w = this.state(h)
    if (leader === null || leader === w.leader) return
    this.d.logger.info(
      { ...this.fields(h), leader, previous: w.leader, term, self: leader === this.d.self },
      'partition leader changed',
    )
    w.leader = leader
    if (leader === this.d.self && w.catchUp !== undefined) this.caughtUp(h, w, 'became leader')
  }

  /** The metadata group of the cluster saw a leader change. */
  metaLeaderChanged(leader: string | null, term: number): void {
    if (leader === null || leader === this.metaLeader) return
    this.d.logger.info(
      { cluster: this.d.cluster, leader, previous: this.metaLeader, term, self: leader === this.d.self },
      'metadata leader changed',
    )
    this.metaLeader = leader
  }

  /** Once a second: catch-up progress and, on leaders, the in-sync set. Never throws. */
  tick(hosted: Iterable<HostedPartition>): void {
    for (const h of hosted) {
      if (h.health !== 'running') continue
      const w = this.state(h)
      const leader = h.replica.leader
      if (w.catchUp !== undefined && !w.catchUp.asking && leader !== null && leader !== this.d.self)
        this.askLeader(h, w, leader)
      if (h.replica.role === 'leader') this.watchInSync(h, w)
      else w.inSync = undefined
    }
  }

  private askLeader(h: HostedPartition, w: Watched, leader: string): void {
    const c = w.catchUp!
    c.asking = true
    this.d
      .partitionState(leader, h)
      .then(
        (s) => {
          if (s?.inSync?.includes(this.d.self) && w.catchUp === c) this.caughtUp(h, w, 'in sync with leader')
        },
        () => {}, // asked again on the next tick
      )
      .finally(() => {
        c.asking = false
      })
  }

  private caughtUp(h: HostedPartition, w: Watched, how: string): void {
    const c = w.catchUp!
    w.catchUp = undefined
    let nextOffset = 0
    try {
      nextOffset = h.replica.status().nextOffset
    } catch {
      // stopped meanwhile
    }
    this.d.logger.info(
      { ...this.fields(h), how, ms: this.d.now() - c.since, fromOffset: c.nextOffset, nextOffset },
      'replica caught up',
    )
  }

  private watchInSync(h: HostedPartition, w: Watched): void {
    const s = replicaState(h, this.d.self, this.d.freshMs)
    let term = 0
    try {
      term = h.replica.status().raft.term
    } catch {
      return
    }
    const now = new Set(s.inSync ?? [])
    const before = w.inSync
    w.inSync = { term, peers: now }
    if (before === undefined || before.term !== term) return // baseline of this leadership
    const placed = h.meta.placement[h.partition] ?? []
    for (const p of before.peers)
      if (!now.has(p) && placed.includes(p))
        this.d.logger.warn({ ...this.fields(h), replica: p, term }, 'replica out of sync')
    for (const p of now)
      if (!before.peers.has(p))
        this.d.logger.info({ ...this.fields(h), replica: p, term }, 'replica back in sync')
  }
}
