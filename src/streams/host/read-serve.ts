/**
 * The partition leader's reads that must see every acknowledged write: `s.seek`'s end (the
 * consumer start positions) and `s.get` (read-wire.ts: one message at an offset, or the
 * latest live message of a key, from the key index). Both are answered only by a leader
 * whose view is current (`leaderEnd`), so a message acknowledged with `ack: 'all'` before the
 * call is seen, whichever replica the caller asked first; a follower sends the caller on.
 */
import type { PartitionReplica } from '../partition/partition.js'
import type { GetCall, GetResult } from '../read-wire.js'
import type { Routed } from '../wire.js'
import type { HostedPartition } from './host.js'

/** Serves `s.get` on a hosted partition (the caller's access was checked). */
export async function serveGet(
  h: HostedPartition,
  call: GetCall,
  signal: AbortSignal,
): Promise<Routed<GetResult>> {
  const end = await leaderEnd(h, signal)
  if (typeof end !== 'number') return end
  if (call.op === 'key') return { status: 'ok', value: await h.replica.last(call.key) }
  let message: GetResult['message']
  if (call.offset < end) {
    const [m] = await h.replica.read(call.offset, { maxRecords: 1 })
    if (m?.offset === call.offset) message = m
  }
  return { status: 'ok', value: { message, dropped: false } }
}

/** Longest a new leader makes a seek wait for its commit index to be current (ms). */
const LEADER_READY_MS = 2000

/**
 * The committed end of a hosted partition (its next offset) if this replica leads it and its
 * view is current: it has committed an entry of its own term (a new leader learns the commit
 * index of earlier terms only then, as Raft requires before serving reads) and applied every
 * committed entry. A leader just elected gets up to `LEADER_READY_MS` for that; a follower,
 * or a leader still not ready then, gives a `notLeader` reply to send instead.
 */
export async function leaderEnd(
  h: HostedPartition,
  signal: AbortSignal,
): Promise<number | { status: 'notLeader'; hint: string | null } | { status: 'notHere' }> {
  const deadline = Date.now() + LEADER_READY_MS
  for (;;) {
    const driver = h.replica.raft
    if (driver === undefined) return { status: 'notHere' }
    if (driver.role !== 'leader') return { status: 'notLeader', hint: driver.leader }
    let s: ReturnType<PartitionReplica['status']>
    try {
      s = h.replica.status()
    } catch {
      return { status: 'notHere' }
    }
    let own = false
    try {
      own = driver.storage?.term(s.raft.commit) === s.raft.term
    } catch {
      // commit index past this leader's persisted log, or compacted: not ready yet
    }
    if (own && s.appliedIndex >= s.raft.commit) return s.nextOffset
    if (signal.aborted || Date.now() >= deadline) return { status: 'notLeader', hint: null }
    await new Promise((r) => setTimeout(r, 10))
  }
}
