/**
 * Proposal bookkeeping of `ReplicaDriver`: the queue of local proposals not yet handed to
 * the Raft core, their batching into `proposeBatch` calls, and the proposals awaiting commit
 * (by raft index), settled as their entries are persisted and applied.
 */
import type { ConfChange, Entry, NodeId, ProposalResult, RawNode } from '../raft/index.js'
import { EntryOverwrittenError, LeadershipLostError, NotLeaderError } from './errors.js'

/** The callbacks of one proposal's promise(s). */
export interface Waiter {
  resolve: (r: ProposalResult) => void
  reject: (err: unknown) => void
  /** `proposeWithPersist`: settled right after the Ready persisting the entry (then cleared). */
  persisted?: { resolve: (r: ProposalResult) => void; reject: (err: unknown) => void }
}

/** What `proposeWithPersist` returns: two stages of one proposal. */
export interface ProposalStages {
  /**
   * Resolves with `{ index, term }` once the entry is fsynced in this member's raft log while
   * it was still the leader of `term` (before any message carrying the entry is sent).
   * Rejects with the same errors as `committed` when they come first, and with
   * `LeadershipLostError` (outcome unknown) when leadership of `term` ended before the fsync
   * completed. Never resolves after `committed` rejects.
   */
  persisted: Promise<ProposalResult>
  /** Exactly what `propose` returns. */
  committed: Promise<ProposalResult>
}

/** A local proposal not yet handed to the core: data or a membership change. */
export type Queued = Waiter & ({ kind: 'data'; data: Uint8Array } | { kind: 'conf'; cc: ConfChange })

/**
 * The proposals of one driver: `queue` (not yet proposed to the core) and `pending` (proposed,
 * awaiting commit, keyed by raft index). Counts accepted proposals and batches in `counters`.
 */
export class ProposalTracker {
  /** Proposals not yet handed to the core, in arrival order. */
  queue: Queued[] = []
  /** Proposals appended to the leader's log, by raft index, with the term they were proposed in. */
  readonly pending = new Map<number, Waiter & { term: number }>()

  constructor(
    private readonly id: NodeId,
    private readonly counters: { proposals: number; batches: number },
  ) {}

  /** Queued plus awaiting commit. */
  get size(): number {
    return this.queue.length + this.pending.size
  }

  /** Hands queued proposals to the core: consecutive data proposals as one batch (at most `max`). */
  flush(node: RawNode, max: number): void {
    while (this.queue.length > 0) {
      if (node.raft.role !== 'leader') {
        const err = new NotLeaderError(node.raft.leader)
        for (const q of this.queue.splice(0)) q.reject(err)
        return
      }
      const head = this.queue[0]!
      let batch: Queued[]
      if (head.kind === 'conf') batch = this.queue.splice(0, 1)
      else {
        let n = 1
        while (n < this.queue.length && n < max && this.queue[n]!.kind === 'data') n++
        batch = this.queue.splice(0, n)
      }
      let r: ProposalResult | null
      try {
        r =
          head.kind === 'conf'
            ? node.proposeConfChange(head.cc)
            : node.proposeBatch(batch.map((q) => (q as { data: Uint8Array }).data))
      } catch (err) {
        for (const q of batch) q.reject(err)
        continue
      }
      if (r === null) {
        const err = new NotLeaderError(node.raft.leader)
        for (const q of batch) q.reject(err)
        continue
      }
      this.counters.batches++
      this.counters.proposals += batch.length
      for (let i = 0; i < batch.length; i++) {
        const q = batch[i]!
        this.pending.set(r.index + i, {
          term: r.term,
          resolve: q.resolve,
          reject: q.reject,
          persisted: q.persisted,
        })
      }
    }
  }

  /**
   * Settles the `persisted` stage of proposals whose entries were just fsynced: resolved if
   * this member still leads the proposal's term (its log is then never overwritten while it
   * leads), else rejected with `LeadershipLostError` (outcome unknown).
   */
  settlePersisted(node: RawNode, ents: Entry[]): void {
    for (const e of ents) {
      const w = this.pending.get(e.index)
      const stage = w?.persisted
      if (w === undefined || stage === undefined) continue
      w.persisted = undefined
      if (w.term === e.term && node.raft.role === 'leader' && node.raft.term === w.term)
        stage.resolve({ index: e.index, term: e.term })
      else
        stage.reject(
          new LeadershipLostError(
            `${this.id} lost leadership of term ${w.term} before entry ${e.index} was persisted; the outcome is unknown`,
          ),
        )
    }
  }

  /**
   * Resolves or rejects the proposals waiting on applied entries; `onApplied` is told each
   * entry's index, in order, before its proposal is settled.
   */
  settle(run: Entry[], onApplied: (index: number) => void): void {
    for (const e of run) {
      onApplied(e.index)
      const w = this.pending.get(e.index)
      if (w === undefined) continue
      this.pending.delete(e.index)
      if (w.term === e.term) {
        w.persisted?.resolve({ index: e.index, term: e.term }) // applied here, so durable here
        w.resolve({ index: e.index, term: e.term })
      } else
        w.reject(
          new EntryOverwrittenError(`entry ${e.index} was committed with term ${e.term}, not ${w.term}`),
        )
    }
  }

  /** Rejects every proposal awaiting commit with `err`. */
  rejectPending(err: unknown): void {
    for (const w of this.pending.values()) w.reject(err)
    this.pending.clear()
  }

  /** Rejects every queued and pending proposal with `err`. */
  rejectAll(err: unknown): void {
    for (const q of this.queue.splice(0)) q.reject(err)
    this.rejectPending(err)
  }
}
