/**
 * The leader's view of each member: how much of the log it is known to hold (`match`), what
 * to send next (`next`), and the flow-control state. In `probe` the leader sends one append at
 * a time until it finds where the logs match; in `replicate` it pipelines appends up to a
 * window of `maxInflight` unacknowledged messages; in `snapshot` it has sent a snapshot and
 * waits for the follower to acknowledge it (or for a retry timeout).
 */
import type { NodeId } from './types.js'

/** Flow-control state of one follower, as seen by the leader. */
export type ProgressState = 'probe' | 'replicate' | 'snapshot'

/**
 * The window of appends sent but not yet acknowledged, by the last index each carried.
 * Acknowledgements free a prefix of the window (acks are cumulative).
 */
export class Inflights {
  private readonly last: number[] = []

  constructor(readonly capacity: number) {}

  get count(): number {
    return this.last.length
  }

  full(): boolean {
    return this.last.length >= this.capacity
  }

  /** Records an append whose last entry has `index` (indexes must increase). */
  add(index: number): void {
    this.last.push(index)
  }

  /** Frees every in-flight append whose last index is `<= index`. */
  freeLE(index: number): void {
    let n = 0
    while (n < this.last.length && this.last[n]! <= index) n++
    if (n > 0) this.last.splice(0, n)
  }

  /** Frees the oldest in-flight append (a heartbeat response shows the follower is alive). */
  freeFirst(): void {
    this.last.shift()
  }

  reset(): void {
    this.last.length = 0
  }
}

/** Replication progress of one member. */
export class Progress {
  match = 0
  next: number
  state: ProgressState = 'probe'
  /** In probe state: an append is out; wait for its answer (or a heartbeat response). */
  probeSent = false
  /** Heard from since the last check-quorum round. */
  recentActive = false
  /** In snapshot state: the index of the snapshot sent, and ticks since it was sent. */
  pendingSnapshot = 0
  snapshotAge = 0
  readonly inflights: Inflights

  constructor(next: number, maxInflight: number) {
    this.next = next
    this.inflights = new Inflights(maxInflight)
  }

  private resetState(state: ProgressState): void {
    this.state = state
    this.probeSent = false
    this.inflights.reset()
  }

  becomeProbe(): void {
    const floor = this.state === 'snapshot' ? this.pendingSnapshot : 0
    this.resetState('probe')
    this.next = Math.max(this.match, floor) + 1
  }

  becomeSnapshot(index: number): void {
    this.resetState('snapshot')
    this.pendingSnapshot = index
    this.snapshotAge = 0
  }

  becomeReplicate(): void {
    this.resetState('replicate')
    this.next = this.match + 1
  }

  /**
   * The member's log was rebuilt empty (its rejection says `recovering`) and holds nothing
   * after `last`: what it acknowledged beyond is gone. Forgets it and probes from `last`, so
   * the member is sent entries, or a snapshot, from there. Commits are not affected: they
   * were decided on acknowledgements that were true then, and only new acks raise `match`.
   */
  forgetAfter(last: number): void {
    this.resetState('probe')
    if (this.match > last) this.match = last
    this.next = last + 1
  }

  /** An ack for `n`: raises match (returns true if it grew) and next. */
  maybeUpdate(n: number): boolean {
    let updated = false
    if (this.match < n) {
      this.match = n
      updated = true
      this.probeSent = false
    }
    this.next = Math.max(this.next, n + 1)
    return updated
  }

  /**
   * A rejection of the append at `rejected`, with the follower's hint of the last index that
   * may match. Returns false for stale rejections (already superseded), else moves `next` back.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false
      this.next = this.match + 1
      return true
    }
    if (this.next - 1 !== rejected) return false
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1)
    this.probeSent = false
    return true
  }

  /** True when no append should be sent now. */
  isPaused(): boolean {
    if (this.state === 'snapshot') return true
    return this.state === 'probe' ? this.probeSent : this.inflights.full()
  }

  /** Bookkeeping after sending an append of `n` entries. */
  sentEntries(n: number): void {
    if (this.state === 'replicate') {
      if (n > 0) {
        this.next += n
        this.inflights.add(this.next - 1)
      }
    } else {
      this.probeSent = true
    }
  }
}

/** The voters of the group and the leader's progress for each. */
export class ProgressTracker {
  readonly voters = new Set<NodeId>()
  readonly progress = new Map<NodeId, Progress>()
  private readonly votes = new Map<NodeId, boolean>()

  constructor(readonly maxInflight: number) {}

  /** Adds a voter (no-op if present). */
  add(id: NodeId, next: number): void {
    if (this.voters.has(id)) return
    this.voters.add(id)
    const pr = new Progress(next, this.maxInflight)
    pr.recentActive = true
    this.progress.set(id, pr)
  }

  remove(id: NodeId): void {
    this.voters.delete(id)
    this.progress.delete(id)
    this.votes.delete(id)
  }

  quorum(): number {
    return Math.floor(this.voters.size / 2) + 1
  }

  /** The largest index held by a quorum of voters (0 when there are no voters). */
  committed(): number {
    if (this.voters.size === 0) return 0
    const m = [...this.voters].map((id) => this.progress.get(id)!.match).sort((a, b) => b - a)
    return m[this.quorum() - 1]!
  }

  /** True if a quorum (counting `self`) was recently active. */
  quorumActive(self: NodeId): boolean {
    let n = 0
    for (const id of this.voters) if (id === self || this.progress.get(id)!.recentActive) n++
    return n >= this.quorum()
  }

  resetVotes(): void {
    this.votes.clear()
  }

  /** Records `id`'s vote (the first answer per election counts) and returns the tally. */
  recordVote(id: NodeId, granted: boolean): 'won' | 'lost' | 'pending' {
    if (this.voters.has(id) && !this.votes.has(id)) this.votes.set(id, granted)
    let yes = 0
    let no = 0
    for (const [, v] of this.votes) v ? yes++ : no++
    const q = this.quorum()
    if (yes >= q) return 'won'
    if (no > this.voters.size - q) return 'lost'
    return 'pending'
  }

  confState(): { voters: NodeId[] } {
    return { voters: [...this.voters].sort() }
  }
}
