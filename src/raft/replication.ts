/**
 * Log replication, both sides: the follower's handling of appends, snapshots and heartbeats,
 * and the leader's choice of what to send each follower (entries within the flow-control
 * window, or a snapshot when the entries it needs were compacted). Everything queues
 * messages on the `Raft`; nothing is sent until the driver has persisted the Ready.
 */
import type { Raft } from './raft.js'
import { EntriesUnavailableError, type Message, message, type NodeId } from './types.js'

/** Follower: applies an append if it matches our log, else rejects it with a backtracking hint. */
export function handleAppend(r: Raft, m: Message): void {
  const log = r.log
  if (m.index < log.committed) {
    r.send(message({ type: 'MsgAppResp', to: m.from, index: log.committed }))
    return
  }
  if (log.matchTerm(m.index, m.logTerm)) {
    const ci = log.findConflict(m.entries)
    if (ci !== 0 && ci <= log.committed) return // would rewrite committed history: not a real leader
  }
  const lastNew = log.maybeAppend(m.index, m.logTerm, m.commit, m.entries)
  if (lastNew !== undefined) {
    // Our log matches the leader's through lastNew, and it had committed up to m.commit.
    if (r.recovering && lastNew >= m.commit) r.recovering = false
    r.send(message({ type: 'MsgAppResp', to: m.from, index: lastNew }))
    return
  }
  // Reject with a hint: our last index whose term is <= the leader's logTerm at m.index, so
  // the leader can skip a whole divergent term per round trip.
  const hint = log.findConflictByTerm(Math.min(m.index, log.lastIndex()), m.logTerm)
  r.send(
    message({
      type: 'MsgAppResp',
      to: m.from,
      index: m.index,
      reject: true,
      rejectHint: hint.index,
      logTerm: hint.term,
      recovering: r.recovering,
    }),
  )
}

/**
 * Follower: installs a snapshot beyond our commit (replacing the log and the configuration)
 * unless we already hold its last entry, in which case it only advances the commit index.
 */
export function handleSnapshot(r: Raft, m: Message): void {
  const s = m.snapshot
  if (s === undefined) return
  if (s.index > r.log.committed) {
    if (r.log.matchTerm(s.index, s.term)) {
      r.log.commitTo(s.index) // we hold its last entry, hence all of it: just commit
    } else {
      r.log.restore(s)
      for (const id of [...r.tracker.voters]) r.tracker.remove(id)
      for (const id of s.confState.voters) r.tracker.add(id, r.log.lastIndex() + 1)
    }
  }
  r.send(message({ type: 'MsgAppResp', to: m.from, index: r.log.committed }))
}

/** Follower: advances commit as far as the leader vouches for (never beyond our log). */
export function handleHeartbeat(r: Raft, m: Message): void {
  r.log.commitTo(Math.min(m.commit, r.log.lastIndex()))
  r.send(message({ type: 'MsgHeartbeatResp', to: m.from }))
}

/**
 * Leader: sends `to` the next batch of entries (up to `maxSizePerMsg` bytes) unless its flow
 * control is paused, or without `sendIfEmpty` there is nothing new. Returns true if sent.
 */
export function maybeSendAppend(r: Raft, to: NodeId, sendIfEmpty: boolean): boolean {
  const pr = r.tracker.progress.get(to)
  if (pr === undefined || pr.isPaused()) return false
  const log = r.log
  const prevIndex = pr.next - 1
  const prevTerm = log.term(prevIndex)
  if (prevTerm === undefined || pr.next < log.firstIndex()) return sendSnapshot(r, to)
  const last = log.lastIndex()
  let entries: Message['entries'] = []
  if (pr.next <= last) {
    try {
      entries = log.slice(pr.next, last + 1, r.maxSizePerMsg)
    } catch (err) {
      // Old entries being fetched from disk: nothing is sent now (flow control untouched);
      // the driver calls `sendAppends` once they are in memory (heartbeats retry meanwhile).
      if (err instanceof EntriesUnavailableError) return false
      throw err
    }
  }
  if (entries.length === 0 && !sendIfEmpty) return false
  r.send(message({ type: 'MsgApp', to, index: prevIndex, logTerm: prevTerm, entries, commit: log.committed }))
  pr.sentEntries(entries.length)
  return true
}

/** Leader: the entries `to` needs were compacted, so send the storage's snapshot instead. */
function sendSnapshot(r: Raft, to: NodeId): boolean {
  const pr = r.tracker.progress.get(to)!
  const snapshot = r.log.storage.snapshot?.()
  if (!pr.recentActive || snapshot === undefined || snapshot.index < r.log.firstIndex() - 1) return false
  r.send(message({ type: 'MsgSnap', to, snapshot }))
  pr.becomeSnapshot(snapshot.index)
  return true
}

/** Leader: heartbeats carry commit = min(leader commit, follower match), never more than it holds. */
export function bcastHeartbeat(r: Raft): void {
  for (const [id, pr] of r.tracker.progress) {
    if (id === r.id) continue
    r.send(message({ type: 'MsgHeartbeat', to: id, commit: Math.min(pr.match, r.log.committed) }))
  }
}
