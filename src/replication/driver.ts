/**
 * `ReplicaDriver`: the etcd-style loop around one `RawNode`, persisting to a
 * `RaftLogStorage`. It ticks on the process's shared clock (`ticker.ts`), batches local
 * proposals, and runs the Ready loop in the order the core's contract requires:
 *
 *   1. persist the Ready's snapshot, entries and hard state, awaiting the fsync;
 *   2. only then send its messages (they may promise that step 1 is durable);
 *   3. apply its committed entries through the injected `apply`, in order, awaited;
 *   4. `advance`.
 *
 * Two exceptions to step 2 for a leader: its appends and heartbeats leave while it persists
 * (see `loop`), and an append carrying nothing but a new commit index to a caught-up
 * follower is held for up to `commitDelayMs` and dropped if the next append to that follower
 * carries the commit (see `holdCommitOnly`).
 *
 * No networking inside: the transport is injected as `send(to, bytes)` and feeds
 * `receive(from, bytes)`.
 */
import { RAFT_HEARTBEATS_PER_ELECTION } from '../constants.js'
import { AbortedError, InvalidArgumentError, OverloadedError } from '../errors.js'
import {
  type ConfChange,
  decodeMessage,
  type Entry,
  encodeMessage,
  type Message,
  type NodeId,
  type ProposalResult,
  RawNode,
  type Ready,
  type Role,
  type Status,
} from '../raft/index.js'
import { CommitHold } from './commit-hold.js'
import type { DriverStats, ReplicaDriverOptions } from './driver-options.js'
import { LeadershipLostError, NotLeaderError } from './errors.js'
import { type ProposalStages, ProposalTracker, type Queued, type Waiter } from './proposals.js'
import { RaftLogStorage } from './storage.js'
import { onTick } from './ticker.js'

export type { DriverStats, LeaderChange, ReplicaDriverOptions } from './driver-options.js'
export type { ProposalStages } from './proposals.js'

/**
 * Ticks between a leader's heartbeats when not configured: a third of the election timeout
 * (at least 1), so a follower's shortest election timeout spans three heartbeats. Every
 * heartbeat is a message to each follower and an answer back, the whole cost of an idle
 * group; with the defaults (50 ms ticks, 10 ticks to an election) one every 150 ms.
 */
export function defaultHeartbeatTick(electionTick: number): number {
  return Math.max(1, Math.floor(electionTick / RAFT_HEARTBEATS_PER_ELECTION))
}

/**
 * One Raft member, driven. Ordering: committed entries reach `apply` in index order, each
 * exactly once per process lifetime; `propose` promises resolve in index order, each after
 * its entry is committed on a quorum (fsynced there) and applied here. Durability: a message
 * leaves only after the state it depends on is fsynced (persistence before send).
 */
export class ReplicaDriver {
  readonly id: NodeId
  private readonly opts: ReplicaDriverOptions
  private node: RawNode | undefined
  private store: RaftLogStorage | undefined
  /** Unsubscribes from the process's shared clock (`ticker.ts`). */
  private untick: (() => void) | undefined
  private running: Promise<void> | undefined
  private scheduled = false
  /** Work arrived while the loop was running (see `schedule`). */
  private again = false
  private storageLock: Promise<unknown> = Promise.resolve()
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new'
  private killed = false
  private appliedIndex = 0
  /**
   * The state machine is behind the persisted snapshot (found on start): `restore` runs first,
   * before any Ready is processed (see `start`).
   */
  private restoring: Promise<void> | undefined
  /** Pipelined applies still writing (see `pipelineApply`). */
  private applyChain: Promise<void> = Promise.resolve()
  private readonly counters: DriverStats = {
    received: 0,
    malformed: 0,
    misrouted: 0,
    stepErrors: 0,
    sent: 0,
    sendErrors: 0,
    commitOnlySaved: 0,
    readies: 0,
    proposals: 0,
    batches: 0,
  }
  private readonly proposals: ProposalTracker
  /** Commit-only appends held back, by follower (see `holdCommitOnly`); built in `start`. */
  private held: CommitHold | undefined

  constructor(opts: ReplicaDriverOptions) {
    if (typeof opts.send !== 'function') throw new InvalidArgumentError('send must be a function')
    if (typeof opts.apply !== 'function') throw new InvalidArgumentError('apply must be a function')
    for (const k of ['tickMs', 'maxPending', 'maxBatch', 'memoryBytes', 'segmentBytes'] as const) {
      const v = opts[k]
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 1))
        throw new InvalidArgumentError(`${k} must be a positive integer, got ${v}`)
    }
    const cd = opts.commitDelayMs
    if (cd !== undefined && (!Number.isSafeInteger(cd) || cd < 0))
      throw new InvalidArgumentError(`commitDelayMs must be a non-negative integer, got ${cd}`)
    this.id = opts.id
    this.opts = opts
    this.proposals = new ProposalTracker(opts.id, this.counters)
  }

  /**
   * Opens the replica directory (restoring its persisted state), builds the Raft node and
   * starts ticking. Rejects if the storage cannot be opened (see `RaftLogStorage.open`).
   */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new InvalidArgumentError('a driver starts once')
    this.state = 'running'
    const o = this.opts
    let store: RaftLogStorage | undefined
    try {
      store = await RaftLogStorage.open({
        dir: o.dir,
        voters: o.voters,
        now: o.now,
        applied: o.applied,
        memoryBytes: o.memoryBytes,
        segmentBytes: o.segmentBytes,
      })
      if (this.state !== 'running') {
        await store.close() // stopped while opening
        return
      }
      this.node = new RawNode({
        id: o.id,
        storage: store,
        rand: o.rand ?? Math.random,
        applied: o.applied ?? 0,
        electionTick: o.electionTick ?? 10,
        heartbeatTick: o.heartbeatTick ?? defaultHeartbeatTick(o.electionTick ?? 10),
        recovering: store.recovering,
        ...o.raft,
      })
      this.store = store
      store.onLoaded = () => {
        // Old entries a lagging follower needs were read back from disk: send them now.
        if (this.state !== 'running' || this.node === undefined) return
        this.node.sendAppends()
        this.schedule()
      }
    } catch (err) {
      this.state = 'stopped'
      await store?.close().catch(() => {})
      throw err
    }
    this.appliedIndex = this.node.status().applied
    const snap = store.snapshot()
    if (snap.index > (o.applied ?? 0) && o.restore !== undefined) {
      // The state machine lags the snapshot (it was compacted past what the application had
      // made durable, or an install was interrupted): restore it before anything is applied.
      // Start does not wait: messages are received meanwhile, and Readies wait (`loop`).
      const restore = o.restore
      this.restoring = (async () => {
        try {
          await restore(snap)
        } catch (err) {
          this.restoring = undefined
          void this.fail(err)
          return
        }
        this.restoring = undefined
        this.schedule()
      })()
    }
    const delay = o.commitDelayMs ?? 10
    if (delay > 0) this.held = new CommitHold(delay, this.releaseOne)
    this.untick = onTick(o.tickMs ?? 50, () => this.tick())
  }

  /**
   * Stops the driver. Every queued or uncommitted proposal rejects with `AbortedError`.
   * With `flush` (default) the Ready in progress completes (persist, send, apply) and the
   * latest commit index is written; with `flush: false` (a crash, for tests) nothing more is
   * sent or applied and in-memory state is dropped; only what was already fsynced survives.
   */
  async stop(options: { flush?: boolean } = {}): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return
    const flush = options.flush ?? true
    this.state = 'stopping'
    this.killed = !flush
    this.untick?.()
    this.untick = undefined
    this.proposals.rejectAll(new AbortedError('replica stopped'))
    await this.restoring?.catch(() => {}) // the application's restore watches its own stop
    if (flush) await this.running?.catch(() => {})
    if (flush) await this.applyChain
    this.releaseHeld(flush) // a graceful stop still tells followers the last commit
    const store = this.store
    if (store) {
      await this.withStorage(async () => {
        if (flush) await store.flushHardState().catch(() => {})
        await store.close()
      }).catch(() => {})
    }
    this.state = 'stopped'
  }

  /**
   * Proposes `data` (non-empty) for the log. Resolves with `{ index, term }` once the entry
   * is committed (fsynced on a quorum) and applied here. Rejects with `NotLeaderError`
   * (nothing appended; `leader` says where to go), `OverloadedError` (too many pending),
   * `LeadershipLostError` (outcome unknown), `EntryOverwrittenError` (definitely not
   * committed), `AbortedError` (driver stopped; outcome unknown if it was appended).
   * Proposals made in one turn of the event loop go to the core as one `proposeBatch`.
   */
  propose(data: Uint8Array): Promise<ProposalResult> {
    return this.proposeData(data, undefined)
  }

  private proposeData(data: Uint8Array, persisted: Waiter['persisted']): Promise<ProposalResult> {
    if (!(data instanceof Uint8Array) || data.length === 0)
      return Promise.reject(new InvalidArgumentError('data must be a non-empty Uint8Array'))
    return this.enqueue((w) => ({ ...w, kind: 'data', data, persisted }))
  }

  /**
   * `propose` in two stages: `persisted` settles once the entry is durable in this leader's
   * own raft log (a leader crash and restart keeps it; it is not yet on a quorum, so it may
   * still be truncated by a later leader that never received it, or lost with this disk),
   * `committed` is exactly `propose`'s promise. `persisted` always settles no later than
   * `committed`. Both promises are marked handled: ignoring one of them is safe.
   */
  proposeWithPersist(data: Uint8Array): ProposalStages {
    let stage!: NonNullable<Waiter['persisted']>
    const persisted = new Promise<ProposalResult>((resolve, reject) => {
      stage = { resolve, reject }
    })
    const committed = this.proposeData(data, stage)
    committed.catch(stage.reject) // no-op once persisted resolved
    persisted.catch(() => {})
    return { persisted, committed }
  }

  /**
   * Proposes adding or removing one voter; resolves once the change is committed and applied
   * here (membership updated, configuration persisted). Same errors as `propose`, plus the
   * core's `ProposalDroppedError` while an earlier change is pending.
   */
  proposeConfChange(cc: ConfChange): Promise<ProposalResult> {
    return this.enqueue((w) => ({ ...w, kind: 'conf', cc }))
  }

  /**
   * Feeds bytes received from peer `from`. Malformed bytes, messages whose sender is not
   * `from` or not addressed to us, and proposals from peers are dropped and counted; this
   * never throws.
   */
  receive(from: NodeId, bytes: Uint8Array): void {
    const node = this.node
    if (node === undefined || this.state !== 'running') return
    this.counters.received++
    let m: ReturnType<typeof decodeMessage>
    try {
      m = decodeMessage(bytes)
    } catch {
      this.counters.malformed++
      return
    }
    if (m.from !== from || m.to !== this.id || m.type === 'MsgProp') {
      this.counters.misrouted++
      return
    }
    try {
      node.step(m)
    } catch {
      this.counters.stepErrors++
    }
    this.schedule()
  }

  /** Starts an election now (tests, or a preferred leader). */
  campaign(): void {
    this.node?.campaign()
    this.schedule()
  }

  /** Asks the leader to hand leadership to `to`. */
  transferLeader(to: NodeId): void {
    this.node?.transferLeader(to)
    this.schedule()
  }

  /**
   * Compacts the raft log up to `index` (default: everything applied here): records a
   * snapshot (empty data unless given) so memory is bounded; followers behind it are sent
   * the snapshot. Serialized with the Ready loop's writes.
   */
  async compact(index = this.appliedIndex, data?: Uint8Array): Promise<void> {
    const store = this.store
    if (store === undefined) throw new AbortedError('replica not started')
    if (index > this.appliedIndex) throw new InvalidArgumentError(`index ${index} is not applied yet`)
    await this.withStorage(() => store.compact(index, store.confState(), data))
  }

  /** Current leader as this member knows it (null: none known). */
  get leader(): NodeId | null {
    return this.node?.raft.leader ?? null
  }

  /** Current role. */
  get role(): Role {
    return this.node?.raft.role ?? 'follower'
  }

  /** Highest index applied through `apply` in this process (or given as `applied`). */
  get applied(): number {
    return this.appliedIndex
  }

  /** The core's status (term, commit, progress...) plus the driver's counters. */
  status(): Status & { stats: DriverStats; pending: number } {
    if (this.node === undefined) throw new AbortedError('replica not started')
    return {
      ...this.node.status(),
      stats: { ...this.counters },
      pending: this.proposals.size,
    }
  }

  /** The storage, for diagnostics and tests. */
  get storage(): RaftLogStorage | undefined {
    return this.store
  }

  private enqueue(make: (w: Waiter) => Queued): Promise<ProposalResult> {
    const node = this.node
    if (node === undefined || this.state !== 'running')
      return Promise.reject(new AbortedError('replica is not running'))
    const max = this.opts.maxPending ?? 4096
    if (this.proposals.size >= max)
      return Promise.reject(new OverloadedError(`${max} proposals pending on ${this.id}; retry later`))
    if (node.raft.role !== 'leader') return Promise.reject(new NotLeaderError(node.raft.leader))
    return new Promise<ProposalResult>((resolve, reject) => {
      this.proposals.queue.push(make({ resolve, reject }))
      this.schedule()
    })
  }

  private tick(): void {
    if (this.state !== 'running' || this.node === undefined) return
    this.node.tick()
    // Most ticks of an idle member change nothing: no loop round for them.
    if (this.node.hasReady()) this.schedule()
  }

  private schedule(): void {
    if (this.running !== undefined) {
      // The loop looks for work at the top of every round; `again` covers the moment after
      // its last look, before it is gone (a wake-up lost there would wait for the next tick).
      this.again = true
      return
    }
    if (this.scheduled) return
    this.scheduled = true
    queueMicrotask(() => {
      this.scheduled = false
      if (this.running === undefined && this.state === 'running') {
        this.running = this.loop().finally(() => {
          this.running = undefined
          if (this.again) {
            this.again = false
            this.schedule()
          }
        })
      }
    })
  }

  private async loop(): Promise<void> {
    const node = this.node!
    const store = this.store!
    if (this.restoring !== undefined) return // `schedule`d again once the restore is done
    try {
      while (this.state === 'running') {
        this.again = false
        this.proposals.flush(node, this.opts.maxBatch ?? 1024)
        if (!node.hasReady()) break
        const rd = node.ready()
        this.counters.readies++
        if (rd.softState) this.opts.onLeaderChange?.({ ...rd.softState, term: node.raft.term })
        // A leader's appends and heartbeats may leave while its own entries are being
        // persisted (Raft thesis 10.2.1): the leader counts itself only through commits that
        // reach followers in a later Ready, after this persist. Not when the term or vote
        // changes (they must be durable before anyone hears of them), nor with a snapshot.
        const prev = store.initialState().hardState
        const early =
          rd.snapshot === undefined &&
          (rd.hardState === undefined || (rd.hardState.term === prev.term && rd.hardState.vote === prev.vote))
        const late = early ? rd.messages.filter((m) => !this.sendEarly(m)) : rd.messages
        await this.withStorage(() => this.persist(store, rd))
        if (this.killed) return
        this.proposals.settlePersisted(node, rd.entries)
        for (const m of late) this.sendMessage(m)
        await this.applyCommitted(node, store, rd.committedEntries)
        if (this.killed) return
        node.advance(rd)
        store.release(node.raft.log.applied) // applied entries may leave memory (over budget)
        if (store.recovering && !node.raft.recovering) await this.withStorage(() => store.clearRecovering())
        if (node.raft.role !== 'leader' && this.proposals.pending.size > 0)
          this.proposals.rejectPending(
            new LeadershipLostError(`${this.id} lost leadership; the outcome is unknown`),
          )
      }
    } catch (err) {
      if (this.killed) return
      await this.fail(err)
    }
  }

  /** Sends `m` now when it may precede the persist of its Ready (leader appends, heartbeats). */
  private sendEarly(m: Message): boolean {
    if (m.type !== 'MsgApp' && m.type !== 'MsgHeartbeat') return false
    this.sendMessage(m)
    return true
  }

  private sendMessage(m: Message): void {
    if (m.type === 'MsgApp') {
      if (m.entries.length === 0 && this.holdCommitOnly(m)) return
      // Every append carries the leader's commit index: a held commit-only one is superseded.
      if (this.held?.drop(m.to)) this.counters.commitOnlySaved++
    }
    this.transmit(m)
  }

  private transmit(m: Message): void {
    try {
      this.opts.send(m.to, encodeMessage(m))
      this.counters.sent++
    } catch {
      this.counters.sendErrors++
    }
  }

  /**
   * Holds `m`, an append without entries, when all it does is tell a caught-up follower (in
   * the replicate state: everything was sent to it) the new commit index. Delaying or
   * dropping a message is always safe in Raft; holding this one changes no progress
   * bookkeeping of the core (an empty append in the replicate state records nothing).
   * Appends to a probing follower are probes and leave at once.
   */
  private holdCommitOnly(m: Message): boolean {
    const node = this.node
    if (this.held === undefined || node === undefined || node.raft.role !== 'leader') return false
    // Also when idle: the answer to the proposer (who waits on the commit, not on the
    // followers) and the next append go first, and a later append usually carries the
    // commit instead; followers serve no reads, so a commit index up to `commitDelayMs`
    // old costs them nothing but the moment they apply.
    const pr = node.raft.tracker.progress.get(m.to)
    if (pr === undefined || pr.state !== 'replicate') return false
    if (this.held.hold(m)) this.counters.commitOnlySaved++
    return true
  }

  /** Sends a held commit-only append whose hold ended, if its term is still led. */
  private readonly releaseOne = (m: Message): void => {
    const node = this.node
    if (this.state === 'running' && node?.raft.role === 'leader' && node.raft.term === m.term)
      this.transmit(m)
  }

  /**
   * Sends the commit-only appends still held (unless leadership of their term ended, or
   * `send` is false) and stops holding.
   */
  private releaseHeld(send = this.state === 'running'): void {
    const node = this.node
    for (const m of this.held?.takeAll() ?? []) {
      if (send && node !== undefined && node.raft.role === 'leader' && node.raft.term === m.term)
        this.transmit(m)
    }
  }

  private async persist(store: RaftLogStorage, rd: Ready): Promise<void> {
    if (rd.snapshot) {
      await this.applyChain
      await store.applySnapshot(rd.snapshot)
      await this.opts.restore?.(rd.snapshot)
      this.appliedIndex = Math.max(this.appliedIndex, rd.snapshot.index)
    }
    const work: Promise<void>[] = []
    if (rd.entries.length > 0) work.push(store.append(rd.entries)) // one append: one group commit
    if (rd.hardState) work.push(store.setHardState(rd.hardState))
    await Promise.all(work)
  }

  private async applyCommitted(node: RawNode, store: RaftLogStorage, ents: Entry[]): Promise<void> {
    if (ents.length === 0) return
    if (this.opts.pipelineApply && !ents.some((e) => e.type === 'confChange')) {
      let applying: Promise<void>
      try {
        applying = Promise.resolve(this.opts.apply(ents)) // its synchronous part runs now
      } catch (err) {
        applying = Promise.reject(err)
      }
      this.proposals.settle(ents, (index) => {
        this.appliedIndex = index
      })
      const chain = this.applyChain.then(() => applying)
      this.applyChain = chain.catch((err) => this.fail(err))
      return
    }
    await this.applyChain
    for (const e of ents) {
      if (e.type !== 'confChange') continue
      const cs = node.applyConfChange(e.data) // membership first, in log order
      await this.withStorage(() => store.setConfState(cs, e.index))
    }
    if (this.killed) return
    await this.opts.apply(ents)
    if (this.killed) return
    this.proposals.settle(ents, (index) => {
      this.appliedIndex = index
    })
  }

  private async fail(err: unknown): Promise<void> {
    if (this.state !== 'running') return
    this.releaseHeld() // commits decided before the failure still reach the followers
    this.proposals.rejectAll(err)
    this.opts.onError?.(err, true)
    await this.stop({ flush: false })
  }

  /** Serializes storage mutations (Ready persistence, conf state, compaction). */
  private withStorage<T>(f: () => Promise<T>): Promise<T> {
    const p = this.storageLock.then(f)
    this.storageLock = p.catch(() => {})
    return p
  }
}
