/**
 * The view of one hosted partition replica that `s.pstat`, `status()` and the replica watch
 * (replica-watch.ts) share: its role, leader, offsets and, on the leader, the in-sync set.
 */

import type { PartitionState } from '../wire.js'
import type { HostedPartition } from './host.js'

/** Followers further behind the leader's log than this (entries) are not in sync. */
export const IN_SYNC_MAX_LAG = 256

/**
 * A hosted replica's view. In sync (known on the leader): the leader, and the followers
 * that are both placed (the partition's current replica list) and voters, were heard from
 * within `freshMs`, have a log the leader has confirmed to match its own (raft progress in
 * the `replicate` state: a follower just added, or not yet probed after an election, is
 * not), and are within `IN_SYNC_MAX_LAG` entries of the leader's log. So a replica being
 * replaced is out of the set as soon as the placement drops it, and a new one enters it only
 * once it acknowledged the leader's log.
 */
export function replicaState(h: HostedPartition, self: string, freshMs: number): PartitionState {
  const r = h.replica
  let role = 'stopped'
  let inSync: string[] | null = null
  let firstOffset = 0
  let nextOffset = 0
  try {
    const s = r.status()
    role = s.raft.role
    nextOffset = s.nextOffset
    firstOffset = r.earliest()
    if (role === 'leader') {
      const now = Date.now()
      const placed = h.meta.placement[h.partition] ?? []
      inSync = [self]
      for (const [id, pr] of Object.entries(s.raft.progress)) {
        if (id === self || !placed.includes(id) || pr.state !== 'replicate') continue
        const heard = h.lastHeard.get(id)
        if (heard !== undefined && now - heard <= freshMs && s.raft.lastIndex - pr.match <= IN_SYNC_MAX_LAG)
          inSync.push(id)
      }
    }
  } catch {
    // not started yet or stopped: reported as such
  }
  return { role, leader: r.leader, firstOffset, nextOffset, inSync }
}
