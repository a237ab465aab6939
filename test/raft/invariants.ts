/**
 * Safety invariants of the Raft simulation that look across nodes: persistence before send,
 * electable-implies-complete, leader completeness and durability of committed entries.
 * (Election safety, log matching and state machine safety are checked inside `Sim`.)
 */
import type { Message } from '../../src/raft/index.js'
import { InvariantError, type Sim, type SimNode } from './sim.js'

/** The persistence-before-send contract: what a message claims is on disk already. */
export function checkPromise(sn: SimNode, m: Message): void {
  const st = sn.storage
  const hs = st.hardState
  if (m.type !== 'MsgProp' && m.type !== 'MsgPreVote' && m.type !== 'MsgPreVoteResp' && m.term > hs.term) {
    throw new InvariantError(`${sn.id} sends ${m.type} for term ${m.term} with persisted term ${hs.term}`)
  }
  if (m.type === 'MsgVoteResp' && !m.reject && (hs.vote !== m.to || hs.term !== m.term)) {
    throw new InvariantError(`${sn.id} grants a vote to ${m.to} that is not persisted`)
  }
  if (m.type === 'MsgAppResp' && !m.reject && m.index > st.lastIndex()) {
    throw new InvariantError(`${sn.id} acks ${m.index} but persisted only up to ${st.lastIndex()}`)
  }
  if (m.type === 'MsgApp' && m.entries.length > 0) {
    const last = m.entries[m.entries.length - 1]!
    if (last.index >= st.firstIndex() && (last.index > st.lastIndex() || st.term(last.index) !== last.term)) {
      throw new InvariantError(`${sn.id} sends entry ${last.index} it has not persisted`)
    }
  }
}

/**
 * Electable nodes are complete: any node whose log is at least as up-to-date as a majority's
 * (so it could win an election, whatever the terms and votes) holds the latest committed
 * entry, hence (by Log Matching) every committed entry. This is what Leader Completeness
 * rests on, checked before any such election happens; it catches an unsafe commit (Figure 8)
 * at once instead of waiting for the schedule that exploits it. Fixed membership only.
 */
export function checkElectable(sim: Sim): void {
  const c = sim.committed.length - 1
  if (c < 1 || (sim.opts.joiners?.length ?? 0) > 0) return
  const want = sim.committed[c]!.term
  const views = sim.opts.ids.map((id) => {
    const sn = sim.n(id)
    if (sn.rn !== null) {
      const log = sn.rn.raft.log
      return {
        id,
        li: log.lastIndex(),
        lt: log.lastTerm(),
        has: c < log.firstIndex() || log.term(c) === want,
      }
    }
    const st = sn.storage
    const li = st.lastIndex()
    return { id, li, lt: st.term(li), has: c < st.firstIndex() || (li >= c && st.term(c) === want) }
  })
  const q = Math.floor(sim.opts.ids.length / 2) + 1
  for (const v of views) {
    if (v.has) continue
    const beats = views.filter((o) => v.lt > o.lt || (v.lt === o.lt && v.li >= o.li)).length
    if (beats >= q) {
      throw new InvariantError(`electable node ${v.id} lacks committed entry ${c} (it beats ${beats} logs)`)
    }
  }
}

/** Per-round checks: leader completeness and durability of committed entries. */
export function checkRound(sim: Sim): void {
  for (const sn of sim.alive()) {
    const r = sn.node().raft
    if (r.role !== 'leader') continue
    for (let i = 1; i < sim.committed.length; i++) {
      const c = sim.committed[i]!
      if (c.commitTerm < r.term && i >= r.log.firstIndex() && r.log.term(i) !== c.term) {
        throw new InvariantError(
          `leader completeness: leader ${sn.id} of term ${r.term} lacks committed ${i}`,
        )
      }
    }
  }
  // Every committed entry is persisted on a majority of the initial voters (fixed-membership runs).
  if (sim.opts.joiners !== undefined && sim.opts.joiners.length > 0) return
  const q = Math.floor(sim.opts.ids.length / 2) + 1
  for (let i = 1; i < sim.committed.length; i++) {
    const c = sim.committed[i]!
    let n = 0
    for (const id of sim.opts.ids) {
      const st = sim.n(id).storage
      if (i < st.firstIndex() || (st.lastIndex() >= i && st.term(i) === c.term)) n++ // snapshot or entry
    }
    if (n < q) throw new InvariantError(`durability: committed entry ${i} persisted on ${n} < ${q} nodes`)
  }
}
