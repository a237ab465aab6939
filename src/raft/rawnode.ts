/**
 * `RawNode`: the driver-facing API of one Raft member. The driver owns the loop:
 *
 *   feed inputs:   node.tick() on a timer, node.step(msg) for each received message,
 *                  node.propose(data) / node.proposeConfChange(cc) for local requests;
 *   then:          while (node.hasReady()) { const rd = node.ready()
 *                    persist rd.snapshot, rd.hardState, rd.entries (fsync if rd.mustSync)
 *                    send rd.messages                    // only after the persist completes
 *                    apply rd.committedEntries in order  // confChange: node.applyConfChange
 *                    node.advance(rd) }
 *
 * Everything is synchronous and deterministic; the node never performs I/O itself.
 */
import { decodeConfChange, encodeConfChange } from './codec.js'
import type { RaftConfig } from './config.js'
import type { ProgressState } from './progress.js'
import { Raft } from './raft.js'
import { maybeSendAppend } from './replication.js'
import {
  type ConfChange,
  type ConfState,
  type HardState,
  isResponse,
  type Message,
  message,
  type NodeId,
  ProposalDroppedError,
  type Ready,
  type Role,
  type SoftState,
} from './types.js'

/** Where a locally appended proposal landed. It is durable only once committed with this term. */
export interface ProposalResult {
  index: number
  term: number
}

/** A read-only snapshot of a member's state, for monitoring and tests. */
export interface Status {
  id: NodeId
  term: number
  vote: NodeId | null
  commit: number
  applied: number
  lastIndex: number
  leader: NodeId | null
  role: Role
  voters: NodeId[]
  /** A rebuilt member not yet caught up by a leader: it neither votes nor campaigns. */
  recovering: boolean
  /** Leader only: per-member replication progress. */
  progress: Record<NodeId, { match: number; next: number; state: ProgressState; inflight: number }>
}

/** One Raft member, driven through the Ready/advance loop (see the module doc). */
export class RawNode {
  /** The state machine itself; exposed for tests and diagnostics, not for mutation. */
  readonly raft: Raft
  private prevSoft: SoftState
  private prevHard: HardState

  /**
   * Starts (or restarts) a member from `config.storage`: its persisted hard state, entries
   * and configuration. A brand-new group is bootstrapped by giving every initial member a
   * storage whose `initialState().confState.voters` lists them all. A member added later
   * starts with that same bootstrap configuration (it does not list the member itself) and
   * an empty log: replaying the leader's log applies every change since, including its own
   * `addNode`, after which it may campaign.
   */
  constructor(config: RaftConfig) {
    this.raft = new Raft(config)
    this.prevSoft = this.raft.softState()
    this.prevHard = this.raft.hardState()
  }

  /** Advances logical time by one tick (elections and heartbeats are counted in ticks). */
  tick(): void {
    this.raft.tick()
  }

  /** Starts an election now (pre-vote first when enabled). Ignored on leaders and non-voters. */
  campaign(): void {
    this.raft.hup(false)
  }

  /**
   * Proposes `data` for the log. On the leader it is appended at once and the result says
   * where; on a follower it is forwarded to the leader (result `null`). Either way it is
   * durable only when it appears in `committedEntries` — a proposal can be lost if leadership
   * changes first, so callers retry. Throws `ProposalDroppedError` when no leader is known.
   */
  propose(data: Uint8Array): ProposalResult | null {
    return this.proposeEntries([{ type: 'normal', data }])
  }

  /**
   * Proposes several payloads as consecutive entries in one append (one MsgApp per
   * follower instead of one per payload: the batching path for group commit). On the leader
   * the result names the first entry; the i-th payload lands at `index + i`, same term.
   * Same durability and errors as `propose`.
   */
  proposeBatch(data: readonly Uint8Array[]): ProposalResult | null {
    if (data.length === 0) return null
    return this.proposeEntries(data.map((d) => ({ type: 'normal' as const, data: d })))
  }

  /**
   * Proposes adding or removing one voter. Only one change may be pending: the leader throws
   * `ProposalDroppedError` while an earlier change is not yet applied. The change takes effect
   * on each member when the driver applies the committed entry with `applyConfChange`.
   */
  proposeConfChange(cc: ConfChange): ProposalResult | null {
    return this.proposeEntries([{ type: 'confChange', data: encodeConfChange(cc) }])
  }

  private proposeEntries(es: { type: 'normal' | 'confChange'; data: Uint8Array }[]): ProposalResult | null {
    const wasLeader = this.raft.role === 'leader'
    const before = this.raft.log.lastIndex()
    const entries = es.map((e) => ({ index: 0, term: 0, ...e }))
    this.raft.step(message({ type: 'MsgProp', from: this.raft.id, to: this.raft.id, entries }))
    if (wasLeader && this.raft.log.lastIndex() > before) return { index: before + 1, term: this.raft.term }
    return null
  }

  /**
   * Applies a committed configuration change; call it when applying a `confChange` entry,
   * in log order, and persist the returned `ConfState` atomically with the applied index.
   * Idempotent: adding a present voter or removing an absent one changes nothing.
   */
  applyConfChange(cc: ConfChange | Uint8Array): ConfState {
    return this.raft.applyConfChange(cc instanceof Uint8Array ? decodeConfChange(cc) : cc)
  }

  /**
   * Feeds a message received from a peer. Messages of any age, order or duplication are
   * safe. Proposals forwarded by a peer that cannot be accepted here are dropped silently;
   * responses from non-members and messages addressed to another id are ignored.
   */
  step(m: Message): void {
    if (m.from === this.raft.id || m.to !== this.raft.id) return // looped back or misrouted
    if (isResponse(m.type) && !this.raft.tracker.progress.has(m.from)) return
    try {
      this.raft.step(m)
    } catch (err) {
      if (!(err instanceof ProposalDroppedError)) throw err
    }
  }

  /**
   * Leader: sends every follower whatever entries it is missing, as far as flow control
   * allows (no empty appends). For a storage that just made old entries available again.
   */
  sendAppends(): void {
    const r = this.raft
    if (r.role !== 'leader') return
    for (const id of r.tracker.progress.keys()) {
      if (id === r.id) continue
      while (maybeSendAppend(r, id, false)) {}
    }
  }

  /** Asks the leader to hand leadership to `to` (it campaigns once caught up). Leader only. */
  transferLeader(to: NodeId): void {
    this.raft.transferLeader(to)
  }

  /** True if `ready()` has something to persist, send or apply. */
  hasReady(): boolean {
    const r = this.raft
    if (r.msgs.length > 0 || r.log.hasUnstable() || r.log.hasNextCommittedEnts()) return true
    if (r.log.pendingSnapshot !== undefined) return true
    const s = r.softState()
    if (s.leader !== this.prevSoft.leader || s.role !== this.prevSoft.role) return true
    return !sameHard(r.hardState(), this.prevHard)
  }

  /**
   * Collects the next batch of work (see `Ready` for the processing order). Every message in
   * it may depend on its `hardState` and `entries` being durable, so the driver must persist
   * those before sending any message. Call `advance(ready)` when done with it.
   */
  ready(): Ready {
    const r = this.raft
    const rd: Ready = {
      entries: r.log.unstableEntries(),
      messages: r.msgs,
      committedEntries: r.log.nextCommittedEnts(r.maxCommittedSize),
      mustSync: false,
    }
    r.msgs = []
    if (r.log.pendingSnapshot !== undefined) {
      rd.snapshot = r.log.pendingSnapshot
      rd.mustSync = true
    }
    const s = r.softState()
    if (s.leader !== this.prevSoft.leader || s.role !== this.prevSoft.role) {
      rd.softState = s
      this.prevSoft = s
    }
    const h = r.hardState()
    if (!sameHard(h, this.prevHard)) {
      rd.hardState = h
      rd.mustSync ||= rd.entries.length > 0 || h.term !== this.prevHard.term || h.vote !== this.prevHard.vote
      this.prevHard = h
    }
    if (rd.entries.length > 0) rd.mustSync = true
    return rd
  }

  /**
   * Confirms that `rd` was fully processed: its entries are persisted and its committed
   * entries applied. Entries appended after `ready()` returned stay pending for the next one.
   */
  advance(rd: Ready): void {
    const log = this.raft.log
    if (rd.snapshot !== undefined) log.snapshotPersisted(rd.snapshot.index)
    const last = rd.entries[rd.entries.length - 1]
    if (last !== undefined) log.stableTo(last.index, last.term)
    const applied = rd.committedEntries[rd.committedEntries.length - 1]
    if (applied !== undefined) log.appliedTo(applied.index)
  }

  /** Current state, for monitoring and tests. */
  status(): Status {
    const r = this.raft
    const progress: Status['progress'] = {}
    if (r.role === 'leader') {
      for (const [id, pr] of r.tracker.progress) {
        progress[id] = { match: pr.match, next: pr.next, state: pr.state, inflight: pr.inflights.count }
      }
    }
    return {
      id: r.id,
      term: r.term,
      vote: r.vote,
      commit: r.log.committed,
      applied: r.log.applied,
      lastIndex: r.log.lastIndex(),
      leader: r.leader,
      role: r.role,
      voters: [...r.tracker.voters].sort(),
      recovering: r.recovering,
      progress,
    }
  }
}

function sameHard(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit
}
