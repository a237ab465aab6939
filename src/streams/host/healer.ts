/**
 * Self-healing replication factor, in two halves that never need to talk to each other:
 *
 * - `Healer` runs on the cluster's metadata leader. A placed replica whose member has been
 *   down for `replaceAfterMs` (neither linked to the leader nor answering its probes over an
 *   on-demand link, `liveness.ts`) is replaced in the placement by the least loaded
 *   live member able to host that does not hold the partition (an `updatePlacement` command,
 *   one partition at a time). With no such member the partition stays as it is (counted
 *   `streams.underReplicated`) and is healed as soon as one appears.
 *   The healer also moves placements toward the stream's `replicas` after `streams.update`
 *   changed it: a partition with fewer replicas gets the least loaded live member that does
 *   not hold it; one with more loses a replica, an unreachable one first, else the last
 *   placed (the first is the preferred leader). One change per tick, like replacements.
 * - `reconfigureStep` runs on each partition leader: it moves the raft group's voters toward
 *   the placement one single-server change at a time — first removing a voter the placement
 *   dropped (a dead member: the group keeps a live majority), then adding the new one, which
 *   catches up from the leader's log. A leader that is itself no longer placed hands
 *   leadership to a placed replica first.
 *
 * Ordering: each change is committed before the next is proposed (the raft core refuses a
 * second pending change). Durability: placements live in the metadata group, voters in each
 * partition's raft log; both survive restarts, and the steps resume from whatever state they
 * find.
 */

import { LOG_RATE_INTERVAL } from '../../constants.js'
import type { Logger } from '../../types.js'
import { errFields, RateLimitedLog } from '../../util/logger.js'
import type { MetaGroup } from '../meta/meta-group.js'
import { encodeCommand, type StreamCatalog, type StreamMeta } from '../meta/metadata.js'
import type { HostedPartition } from './host.js'

/** What the healer needs from its cluster host. */
export interface HealerDeps {
  id: string
  catalog: StreamCatalog
  meta: MetaGroup
  /** Proven members of the cluster. */
  members(): string[]
  /** True while `peer` is linked or answered a probe lately (`liveness.ts`; itself: always). */
  isUp(peer: string): boolean
  loads(members: string[]): Promise<Map<string, number>>
  now(): number
  replaceAfterMs: number
  newRequestId(): string
  count(name: string): void
  /** Replacements (warn) and partitions left under-replicated (rate-limited) are logged here. */
  logger: Logger
}

/** The metadata leader's side; see the module doc. Call `tick` about every second. */
export class Healer {
  private readonly downSince = new Map<string, number>()
  private busy = false
  private readonly limited: RateLimitedLog

  constructor(private readonly d: HealerDeps) {
    this.limited = new RateLimitedLog(d.logger, LOG_RATE_INTERVAL, () => d.now())
  }

  /** Replaces at most one long-dead replica. Never throws. */
  async tick(): Promise<void> {
    if (this.busy || this.d.meta.role !== 'leader') {
      if (this.d.meta.role !== 'leader') this.downSince.clear()
      return
    }
    this.busy = true
    try {
      await this.step()
    } catch (err) {
      // retried on the next tick (leadership lost, member unreachable, ...)
      this.limited.log('debug', 'step', errFields(err), 'replica replacement step failed; retrying')
    } finally {
      this.busy = false
    }
  }

  private async step(): Promise<void> {
    const now = this.d.now()
    const streams = this.d.catalog.list()
    const placed = new Set(streams.flatMap((s) => s.placement.flat()))
    for (const m of placed) {
      if (this.d.isUp(m)) this.downSince.delete(m)
      else if (!this.downSince.has(m)) this.downSince.set(m, now)
    }
    for (const m of [...this.downSince.keys()]) if (!placed.has(m)) this.downSince.delete(m)
    const dead = (m: string) => now - (this.downSince.get(m) ?? now) >= this.d.replaceAfterMs
    for (const s of streams) {
      for (let p = 0; p < s.placement.length; p++) {
        const list = s.placement[p]!
        const gone = list.find(dead)
        if (gone === undefined) continue
        const candidates = this.d.members().filter((m) => !list.includes(m) && this.d.isUp(m))
        const load = await this.d.loads(candidates)
        const pick = [...load.entries()].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1))[0]?.[0]
        if (pick === undefined) {
          this.d.count('streams.underReplicated')
          this.limited.log(
            'warn',
            `under/${s.name}/${p}`,
            { stream: s.name, partition: p, unreachable: gone },
            'partition under-replicated: no live member can take the replica of an unreachable one',
          )
          continue
        }
        const replicas = list.map((m) => (m === gone ? pick : m))
        const cmd = encodeCommand({
          type: 'updatePlacement',
          name: s.name,
          partition: p,
          replicas,
          requestId: this.d.newRequestId(),
        })
        this.d.logger.warn(
          {
            stream: s.name,
            partition: p,
            unreachable: gone,
            replacement: pick,
            downMs: now - this.downSince.get(gone)!,
          },
          'replacing the replica of an unreachable member',
        )
        await this.d.meta.propose(cmd)
        this.d.count('streams.replicasReplaced')
        return // one change per tick
      }
    }
    for (const s of streams)
      for (let p = 0; p < s.placement.length; p++)
        if (s.placement[p]!.length !== s.replicas && (await this.resize(s, p))) return
  }

  /** One step of `s`'s partition `p` toward `s.replicas`; true when a change was proposed. */
  private async resize(s: StreamMeta, p: number): Promise<boolean> {
    const list = s.placement[p]!
    let replicas: string[]
    if (list.length > s.replicas) {
      const drop = list.find((m) => !this.d.isUp(m)) ?? list[list.length - 1]!
      replicas = list.filter((m) => m !== drop)
    } else {
      const candidates = this.d.members().filter((m) => !list.includes(m) && this.d.isUp(m))
      const load = await this.d.loads(candidates)
      const pick = [...load.entries()].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1))[0]?.[0]
      if (pick === undefined) {
        this.d.count('streams.underReplicated')
        return false
      }
      replicas = [...list, pick]
    }
    this.d.logger.info(
      { stream: s.name, partition: p, from: list, to: replicas, replicas: s.replicas },
      'moving a partition placement toward the stream replicas',
    )
    const requestId = this.d.newRequestId()
    await this.d.meta.propose(
      encodeCommand({ type: 'updatePlacement', name: s.name, partition: p, replicas, requestId }),
    )
    return true
  }
}

/**
 * The partition leader's side: proposes the next membership change toward the placement,
 * if any and none is in flight. Never throws.
 */
export function reconfigureStep(h: HostedPartition, self: string, logger: Logger): void {
  const driver = h.replica.raft
  if (h.reconfiguring || driver === undefined || driver.role !== 'leader') return
  const target = h.meta.placement[h.partition]!
  const voters = driver.status().voters
  const extra = voters.find((v) => !target.includes(v) && v !== self)
  const missing = target.find((t) => !voters.includes(t))
  if (extra === undefined && missing === undefined) {
    if (!target.includes(self)) driver.transferLeader(target[0]!) // then the new leader removes us
    return
  }
  h.reconfiguring = true
  const cc =
    extra !== undefined
      ? { type: 'removeNode' as const, nodeId: extra }
      : { type: 'addNode' as const, nodeId: missing! }
  const fields = { stream: h.meta.name, partition: h.partition, change: cc.type, replica: cc.nodeId }
  logger.info(
    fields,
    extra !== undefined ? 'removing a voter of the partition' : 'adding a voter to the partition',
  )
  driver
    .proposeConfChange(cc)
    .catch((err) => logger.debug({ ...fields, ...errFields(err) }, 'voter change not done; retried'))
    .finally(() => {
      h.reconfiguring = false
    })
}
