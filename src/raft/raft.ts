/**
 * The Raft state machine: pure, single-threaded, deterministic. Inputs are `step(message)`,
 * `tick()` and local proposals; outputs are queued messages and log/state changes that the
 * `RawNode` packs into `Ready` batches. No clocks, timers, I/O or ambient randomness: time is
 * `tick()`, randomness is the injected `rand`.
 */
import { decodeConfChange } from './codec.js'
import { type RaftConfig, resolveConfig } from './config.js'
import { RaftLog } from './log.js'
import { ProgressTracker } from './progress.js'
import {
  bcastHeartbeat,
  handleAppend,
  handleHeartbeat,
  handleSnapshot,
  maybeSendAppend,
} from './replication.js'
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type MessageType,
  message,
  type NodeId,
  ProposalDroppedError,
  type Role,
  type SoftState,
  voteRespType,
} from './types.js'

/** The Raft protocol state of one member. Use it through `RawNode`. */
export class Raft {
  readonly id: NodeId
  term = 0
  vote: NodeId | null = null
  leader: NodeId | null = null
  role: Role = 'follower'
  readonly log: RaftLog
  readonly tracker: ProgressTracker
  /** Outgoing messages, sent by the driver after the Ready that carries them is persisted. */
  msgs: Message[] = []
  /** Index of the last conf change proposed by this leader; no new one until it is applied. */
  pendingConfIndex = 0
  leadTransferee: NodeId | null = null
  /** No votes, no campaigns until a leader catches this member up (see `RaftConfig.recovering`). */
  recovering: boolean
  readonly maxSizePerMsg: number
  readonly maxCommittedSize: number
  private readonly electionTimeout: number
  private readonly heartbeatTimeout: number
  private readonly preVote: boolean
  private readonly checkQuorum: boolean
  private readonly rand: () => number
  private electionElapsed = 0
  private heartbeatElapsed = 0
  private randomizedElectionTimeout = 0

  constructor(config: RaftConfig) {
    const cfg = resolveConfig(config)
    this.id = cfg.id
    this.electionTimeout = cfg.electionTick
    this.heartbeatTimeout = cfg.heartbeatTick
    this.maxSizePerMsg = cfg.maxSizePerMsg
    this.maxCommittedSize = cfg.maxCommittedSizePerReady
    this.preVote = cfg.preVote
    this.checkQuorum = cfg.checkQuorum
    this.rand = cfg.rand
    this.recovering = cfg.recovering
    const { hardState, confState } = cfg.storage.initialState()
    this.log = new RaftLog(cfg.storage, hardState.commit, cfg.applied)
    this.tracker = new ProgressTracker(cfg.maxInflightMsgs)
    for (const v of confState.voters) this.tracker.add(v, this.log.lastIndex() + 1)
    this.term = hardState.term
    this.vote = hardState.vote
    this.becomeFollower(this.term, null)
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed }
  }

  softState(): SoftState {
    return { leader: this.leader, role: this.role }
  }

  /** True if this member is a voter and may campaign. */
  promotable(): boolean {
    return this.tracker.voters.has(this.id)
  }

  /** Queues `m` for the next Ready, stamping sender and term. (Internal: used by replication.ts.) */
  send(m: Message): void {
    m.from = this.id
    // Vote traffic carries its own term; proposals carry none (they are term-less requests).
    if (
      m.type !== 'MsgVote' &&
      m.type !== 'MsgVoteResp' &&
      m.type !== 'MsgPreVote' &&
      m.type !== 'MsgPreVoteResp'
    ) {
      if (m.type !== 'MsgProp') m.term = this.term
    }
    this.msgs.push(m)
  }

  // ---- role transitions ----

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term
      this.vote = null
      // Unsent messages of older terms are useless now, and some would promise state that
      // this Ready will not persist (an ack for entries a new leader is about to truncate).
      // Dropping messages is always safe.
      this.msgs = this.msgs.filter((m) => m.term === 0 || m.term >= term)
    }
    this.leader = null
    this.electionElapsed = 0
    this.heartbeatElapsed = 0
    this.randomizedElectionTimeout = this.electionTimeout + Math.floor(this.rand() * this.electionTimeout)
    this.leadTransferee = null
    this.tracker.resetVotes()
    const last = this.log.lastIndex()
    for (const [id, pr] of this.tracker.progress) {
      pr.match = id === this.id ? last : 0
      pr.becomeProbe()
      pr.next = last + 1
      pr.recentActive = id === this.id
    }
    this.pendingConfIndex = 0
  }

  becomeFollower(term: number, leader: NodeId | null): void {
    this.reset(term)
    this.leader = leader
    this.role = 'follower'
  }

  private becomePreCandidate(): void {
    // The term and vote stay: a pre-vote changes no durable state.
    this.tracker.resetVotes()
    this.leader = null
    this.role = 'preCandidate'
  }

  private becomeCandidate(): void {
    this.reset(this.term + 1)
    this.vote = this.id
    this.role = 'candidate'
  }

  private becomeLeader(): void {
    this.reset(this.term)
    this.leader = this.id
    this.role = 'leader'
    this.tracker.progress.get(this.id)?.becomeReplicate()
    this.appendEntries([{ index: 0, term: 0, type: 'normal', data: new Uint8Array(0) }])
    // No conf change until everything up to this term's first entry is applied.
    this.pendingConfIndex = this.log.lastIndex()
  }

  // ---- time ----

  tick(): void {
    if (this.role === 'leader') this.tickHeartbeat()
    else this.tickElection()
  }

  private tickElection(): void {
    this.electionElapsed++
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0
      this.hup(false)
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++
    this.electionElapsed++
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0
      if (this.checkQuorum) {
        if (!this.tracker.quorumActive(this.id)) {
          this.becomeFollower(this.term, null)
          return
        }
        for (const [id, pr] of this.tracker.progress) if (id !== this.id) pr.recentActive = false
      }
      this.leadTransferee = null // a transfer that did not finish in one election timeout is abandoned
    }
    for (const pr of this.tracker.progress.values()) {
      // A snapshot unacknowledged for an election timeout was probably lost: probe again.
      if (pr.state === 'snapshot' && ++pr.snapshotAge >= this.electionTimeout) pr.becomeProbe()
    }
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0
      bcastHeartbeat(this)
    }
  }

  // ---- elections ----

  /** Starts an election (pre-vote first if enabled) unless leader, not a voter, or conf changes are unapplied. */
  hup(transfer: boolean): void {
    if (this.role === 'leader' || !this.promotable() || this.recovering) return
    if (this.hasUnappliedConfChanges()) return
    if (this.preVote && !transfer) this.campaign('MsgPreVote', false)
    else this.campaign('MsgVote', transfer)
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.committed <= this.log.applied) return false
    // Changes inside a pending snapshot are already in its configuration.
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex())
    const ents = this.log.slice(lo, this.log.committed + 1, Number.POSITIVE_INFINITY)
    return ents.some((e) => e.type === 'confChange')
  }

  private campaign(type: 'MsgVote' | 'MsgPreVote', transfer: boolean): void {
    let term: number
    if (type === 'MsgPreVote') {
      this.becomePreCandidate()
      term = this.term + 1
    } else {
      this.becomeCandidate()
      term = this.term
    }
    if (this.tracker.recordVote(this.id, true) === 'won') {
      // Single-voter group.
      if (type === 'MsgPreVote') this.campaign('MsgVote', transfer)
      else this.becomeLeader()
      return
    }
    for (const id of [...this.tracker.voters].sort()) {
      if (id === this.id) continue
      this.send(
        message({ type, to: id, term, index: this.log.lastIndex(), logTerm: this.log.lastTerm(), transfer }),
      )
    }
  }

  // ---- the message entry point ----

  /** Processes one message (from a peer, or a local `MsgProp` with term 0). */
  step(m: Message): void {
    if (m.term === 0) {
      // Local or forwarded proposals only; other term-less messages are ignored.
      if (m.type !== 'MsgProp') return
    } else if (m.term > this.term) {
      if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
        const inLease =
          this.checkQuorum && this.leader !== null && this.electionElapsed < this.electionTimeout
        // Check-quorum lease: while we hear from a live leader, ignore campaigns (unless forced).
        if (!m.transfer && inLease) return
      }
      if (m.type === 'MsgPreVote' || (m.type === 'MsgPreVoteResp' && !m.reject)) {
        // A pre-vote neither raises our term nor is a granted pre-vote a reason to.
      } else if (m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap') {
        this.becomeFollower(m.term, m.from)
      } else {
        this.becomeFollower(m.term, null)
      }
    } else if (m.term < this.term) {
      if (m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap') {
        // A stale leader (e.g. back from a partition): tell it the current term.
        this.send(message({ type: 'MsgAppResp', to: m.from }))
      } else if (m.type === 'MsgPreVote') {
        this.send(message({ type: 'MsgPreVoteResp', to: m.from, term: this.term, reject: true }))
      }
      return
    }

    if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
      this.handleVote(m as Message & { type: 'MsgVote' | 'MsgPreVote' })
      return
    }
    if (this.role === 'leader') this.stepLeader(m)
    else if (this.role === 'follower') this.stepFollower(m)
    else this.stepCandidate(m)
  }

  private handleVote(m: Message & { type: 'MsgVote' | 'MsgPreVote' }): void {
    const canVote =
      !this.recovering &&
      (this.vote === m.from ||
        (this.vote === null && this.leader === null) ||
        (m.type === 'MsgPreVote' && m.term > this.term))
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      // A granted vote answers with the request's term so a pre-candidate can count it.
      this.send(message({ type: voteRespType(m.type), to: m.from, term: m.term }))
      if (m.type === 'MsgVote') {
        this.electionElapsed = 0
        this.vote = m.from
      }
    } else {
      this.send(message({ type: voteRespType(m.type), to: m.from, term: this.term, reject: true }))
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case 'MsgProp':
        this.propose(m)
        return
      case 'MsgTimeoutNow':
        return
    }
    const pr = this.tracker.progress.get(m.from)
    if (pr === undefined || m.from === this.id) return
    switch (m.type) {
      case 'MsgAppResp': {
        pr.recentActive = true
        if (m.index > this.log.lastIndex()) return // acks for entries we never sent
        if (m.reject) {
          let hint = m.rejectHint
          if (m.logTerm > 0) hint = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index
          if (m.recovering && hint < pr.match) {
            pr.forgetAfter(hint)
            this.sendAppend(m.from)
          } else if (pr.maybeDecrTo(m.index, hint)) {
            if (pr.state === 'replicate') pr.becomeProbe()
            this.sendAppend(m.from)
          }
          return
        }
        const wasPaused = pr.isPaused()
        if (!pr.maybeUpdate(m.index)) return
        if (pr.state === 'probe') pr.becomeReplicate()
        else if (pr.state === 'replicate') pr.inflights.freeLE(m.index)
        else if (pr.match + 1 >= this.log.firstIndex()) {
          pr.becomeProbe() // the snapshot arrived: resume with entries
          pr.becomeReplicate()
        }
        if (this.maybeCommit()) this.bcastAppend()
        else if (wasPaused) this.sendAppend(m.from)
        // Pipelining: fill the window with whatever is left to send.
        while (maybeSendAppend(this, m.from, false)) {}
        if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
          this.send(message({ type: 'MsgTimeoutNow', to: m.from }))
        }
        return
      }
      case 'MsgHeartbeatResp':
        pr.recentActive = true
        pr.probeSent = false
        if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirst()
        if (pr.match < this.log.lastIndex()) this.sendAppend(m.from)
        return
    }
  }

  private stepCandidate(m: Message): void {
    const myResp: MessageType = this.role === 'preCandidate' ? 'MsgPreVoteResp' : 'MsgVoteResp'
    switch (m.type) {
      case 'MsgProp':
        throw new ProposalDroppedError('no leader: an election is in progress')
      case 'MsgApp':
        this.becomeFollower(m.term, m.from)
        handleAppend(this, m)
        return
      case 'MsgHeartbeat':
        this.becomeFollower(m.term, m.from)
        handleHeartbeat(this, m)
        return
      case 'MsgSnap':
        this.becomeFollower(m.term, m.from)
        handleSnapshot(this, m)
        return
    }
    if (m.type !== myResp) return
    const result = this.tracker.recordVote(m.from, !m.reject)
    if (result === 'won') {
      if (this.role === 'preCandidate') this.campaign('MsgVote', false)
      else {
        this.becomeLeader()
        this.bcastAppend()
      }
    } else if (result === 'lost') {
      this.becomeFollower(this.term, null)
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'MsgProp':
        if (this.leader === null) throw new ProposalDroppedError('no leader known')
        this.send({ ...m, to: this.leader, term: 0 })
        return
      case 'MsgApp':
        this.electionElapsed = 0
        this.leader = m.from
        handleAppend(this, m)
        return
      case 'MsgHeartbeat':
        this.electionElapsed = 0
        this.leader = m.from
        handleHeartbeat(this, m)
        return
      case 'MsgSnap':
        this.electionElapsed = 0
        this.leader = m.from
        handleSnapshot(this, m)
        return
      case 'MsgTimeoutNow':
        if (m.from === this.leader) this.hup(true)
        return
    }
  }

  // ---- follower handlers ----

  // ---- leader helpers ----

  private propose(m: Message): void {
    if (m.entries.length === 0) throw new ProposalDroppedError('empty proposal')
    if (!this.tracker.voters.has(this.id))
      throw new ProposalDroppedError('this leader was removed from the group')
    if (this.leadTransferee !== null) throw new ProposalDroppedError('leadership transfer in progress')
    const ents = m.entries.map((e, i): Entry => {
      if (e.type !== 'confChange') return e
      if (this.pendingConfIndex > this.log.applied) {
        if (m.from === this.id || m.from === '') {
          throw new ProposalDroppedError('a configuration change is already pending')
        }
        return { ...e, type: 'normal', data: new Uint8Array(0) } // forwarded: neutralize
      }
      if (this.leavesNoVoter(decodeConfChange(e.data)))
        throw new ProposalDroppedError('removing the last voter would leave the group without members')
      this.pendingConfIndex = this.log.lastIndex() + i + 1
      return e
    })
    this.appendEntries(ents)
    this.bcastAppend()
  }

  /** Appends entries at the leader with this term; returns the index of the last one. */
  appendEntries(ents: readonly Entry[]): number {
    let li = this.log.lastIndex()
    const stamped = ents.map((e) => ({ ...e, index: ++li, term: this.term }))
    this.log.append(stamped)
    this.tracker.progress.get(this.id)?.maybeUpdate(li)
    this.maybeCommit()
    return li
  }

  private maybeCommit(): boolean {
    return this.log.maybeCommit(this.tracker.committed(), this.term)
  }

  bcastAppend(): void {
    for (const id of this.tracker.progress.keys()) if (id !== this.id) this.sendAppend(id)
  }

  /** Sends an append (or a probe, or a snapshot) to `to` unless its flow control is paused. */
  sendAppend(to: NodeId): void {
    maybeSendAppend(this, to, true)
  }

  /**
   * Asks the leader to hand leadership to `to` once it is caught up (abandoned after one
   * election timeout). A transfer to the leader itself cancels a pending one; asking again
   * for the pending target changes nothing (its deadline is not extended).
   */
  transferLeader(to: NodeId): void {
    if (this.role !== 'leader') throw new ProposalDroppedError('not the leader')
    if (to === this.id) {
      this.leadTransferee = null
      return
    }
    if (!this.tracker.voters.has(to) || this.leadTransferee === to) return
    this.leadTransferee = to
    this.electionElapsed = 0
    const pr = this.tracker.progress.get(to)!
    if (pr.match === this.log.lastIndex()) this.send(message({ type: 'MsgTimeoutNow', to }))
    else this.sendAppend(to)
  }

  // ---- membership ----

  /** True when `cc` would remove the only voter left. */
  private leavesNoVoter(cc: ConfChange): boolean {
    const v = this.tracker.voters
    return cc.type === 'removeNode' && v.size === 1 && v.has(cc.nodeId)
  }

  /**
   * Applies a committed single-server change to the voter set; returns the new configuration.
   * A change that would leave no voter (refused when proposed, but a log may hold one) is
   * ignored, identically on every member.
   */
  applyConfChange(cc: ConfChange): ConfState {
    if (this.leavesNoVoter(cc)) return this.tracker.confState()
    if (cc.type === 'addNode') {
      this.tracker.add(cc.nodeId, this.log.lastIndex() + 1)
    } else {
      this.tracker.remove(cc.nodeId)
      if (this.leadTransferee === cc.nodeId) this.leadTransferee = null
    }
    if (this.role === 'leader') {
      if (!this.tracker.voters.has(this.id)) {
        this.becomeFollower(this.term, null) // removed: step down, the rest elect a leader
      } else if (this.maybeCommit()) {
        this.bcastAppend()
      } else if (cc.type === 'addNode') {
        this.sendAppend(cc.nodeId)
      }
    }
    return this.tracker.confState()
  }
}
