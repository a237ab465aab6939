/**
 * The Raft log: a `Storage` of stable (persisted) entries plus an in-memory tail of unstable
 * entries that the driver has not yet persisted. The log tracks `committed` (known durable on
 * a quorum) and `applied` (handed to the application and confirmed by `advance`).
 */
import {
  CompactedError,
  type ConfState,
  type Entry,
  entrySize,
  type HardState,
  RaftInvariantError,
  type Snapshot,
} from './types.js'

/**
 * Read access to the persisted log, as the Raft core needs it. The driver owns writes (it
 * persists `Ready.entries` and `Ready.hardState`); the core only reads, and only indexes in
 * `[firstIndex() - 1, lastIndex()]`. Implementations must reflect every write the driver
 * completed before calling `advance`.
 */
export interface Storage {
  /** The persisted hard state and configuration, read once when a node starts. */
  initialState(): { hardState: HardState; confState: ConfState }
  /** Index of the first available entry (1 on a log that was never compacted). */
  firstIndex(): number
  /** Index of the last persisted entry (`firstIndex() - 1` when there is none). */
  lastIndex(): number
  /** Term of entry `i`, for `firstIndex() - 1 <= i <= lastIndex()`; throws `CompactedError` below. */
  term(i: number): number
  /**
   * Entries `[lo, hi)` in order, stopping once their total size would exceed `maxBytes` but
   * always returning at least one entry. Throws `CompactedError` if `lo < firstIndex()`. A
   * storage that keeps only recent entries in memory may, for entries at or below the applied
   * index, return a shorter prefix or throw `EntriesUnavailableError` while it fetches them.
   */
  entries(lo: number, hi: number, maxBytes: number): Entry[]
  /**
   * The latest snapshot (covering at least everything before `firstIndex()`), sent to a
   * follower whose next entry was compacted away. Optional: without it, never compact
   * below the slowest member.
   */
  snapshot?(): Snapshot
}

/**
 * In-memory `Storage` for tests and simulations. Writes are "durable" the moment the call
 * returns; `append` discards persisted entries at and after the first appended index.
 */
export class MemoryStorage implements Storage {
  /** ents[0] is a dummy holding the index and term of the compaction point. */
  private ents: Entry[] = [{ index: 0, term: 0, type: 'normal', data: new Uint8Array(0) }]
  hardState: HardState = { term: 0, vote: null, commit: 0 }
  confState: ConfState
  private snap: Snapshot = { index: 0, term: 0, confState: { voters: [] }, data: new Uint8Array(0) }

  constructor(confState: ConfState = { voters: [] }) {
    this.confState = { voters: [...confState.voters] }
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.hardState }, confState: { voters: [...this.confState.voters] } }
  }

  firstIndex(): number {
    return this.ents[0]!.index + 1
  }

  lastIndex(): number {
    return this.ents[0]!.index + this.ents.length - 1
  }

  term(i: number): number {
    const off = this.ents[0]!.index
    if (i < off) throw new CompactedError(`entry ${i} is compacted (first is ${off + 1})`)
    const e = this.ents[i - off]
    if (e === undefined)
      throw new RaftInvariantError(`entry ${i} is beyond the last index ${this.lastIndex()}`)
    return e.term
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const off = this.ents[0]!.index
    if (lo <= off) throw new CompactedError(`entry ${lo} is compacted (first is ${off + 1})`)
    if (hi > this.lastIndex() + 1)
      throw new RaftInvariantError(`entries up to ${hi - 1} requested, last is ${this.lastIndex()}`)
    return limitSize(this.ents.slice(lo - off, hi - off), maxBytes)
  }

  /** Persists entries, replacing any persisted entries at or after `entries[0].index`. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return
    const first = entries[0]!.index
    const off = this.ents[0]!.index
    if (first <= off) throw new RaftInvariantError(`append at ${first} overlaps the compacted prefix ${off}`)
    if (first > this.lastIndex() + 1)
      throw new RaftInvariantError(`append at ${first} leaves a gap after ${this.lastIndex()}`)
    this.ents.length = first - off
    for (const e of entries) this.ents.push(e)
  }

  /** Persists the hard state. */
  setHardState(hs: HardState): void {
    this.hardState = { ...hs }
  }

  /** Persists the configuration (the driver does this when it applies a conf change). */
  setConfState(cs: ConfState): void {
    this.confState = { voters: [...cs.voters] }
  }

  /**
   * Records a snapshot of the applied state at `index` (with the configuration and data as
   * of that index) and discards the entries up to it.
   */
  compact(index: number, confState: ConfState, data: Uint8Array): void {
    const off = this.ents[0]!.index
    if (index <= off) return
    if (index > this.lastIndex()) throw new RaftInvariantError(`compact ${index} is beyond the last index`)
    const dummy = { ...this.ents[index - off]!, data: new Uint8Array(0) }
    this.snap = { index, term: dummy.term, confState: { voters: [...confState.voters] }, data }
    this.ents = [dummy, ...this.ents.slice(index - off + 1)]
  }

  /** The snapshot recorded by the last `compact` or `applySnapshot`. */
  snapshot(): Snapshot {
    return this.snap
  }

  /** Installs a received snapshot: the log restarts after it, the configuration is its. */
  applySnapshot(s: Snapshot): void {
    this.snap = s
    this.ents = [{ index: s.index, term: s.term, type: 'normal', data: new Uint8Array(0) }]
    this.confState = { voters: [...s.confState.voters] }
    if (this.hardState.commit < s.index) this.hardState = { ...this.hardState, commit: s.index }
  }
}

/** Keeps a prefix of `ents` whose total size fits `maxBytes`, but at least one entry. */
export function limitSize(ents: Entry[], maxBytes: number): Entry[] {
  if (ents.length === 0) return ents
  let size = entrySize(ents[0]!)
  let n = 1
  while (n < ents.length) {
    size += entrySize(ents[n]!)
    if (size > maxBytes) break
    n++
  }
  return n === ents.length ? ents : ents.slice(0, n)
}

/**
 * The log as one sequence: stable entries from `storage`, then `unstable` entries starting at
 * `offset`. Entries at or below `committed` never change; `applied <= applying <= committed`.
 */
export class RaftLog {
  private unstable: Entry[] = []
  private offset: number
  /** A received snapshot not yet persisted; while set, the log starts right after it. */
  pendingSnapshot: Snapshot | undefined
  committed: number
  applied: number
  /** Highest index handed out in a Ready's committedEntries (not yet confirmed applied). */
  applying: number

  constructor(
    readonly storage: Storage,
    committed: number,
    applied: number,
  ) {
    this.offset = storage.lastIndex() + 1
    const first = storage.firstIndex() - 1
    if (committed > storage.lastIndex()) {
      throw new RaftInvariantError(
        `commit ${committed} is beyond the persisted last index ${storage.lastIndex()}`,
      )
    }
    this.committed = Math.max(committed, first)
    this.applied = Math.min(Math.max(applied, first), this.committed)
    this.applying = this.applied
  }

  firstIndex(): number {
    return this.pendingSnapshot !== undefined ? this.pendingSnapshot.index + 1 : this.storage.firstIndex()
  }

  lastIndex(): number {
    if (this.unstable.length > 0) return this.offset + this.unstable.length - 1
    return this.pendingSnapshot !== undefined ? this.pendingSnapshot.index : this.storage.lastIndex()
  }

  /** Term of entry `i`, or `undefined` if it is compacted or beyond the last index. */
  term(i: number): number | undefined {
    if (i < this.firstIndex() - 1 || i > this.lastIndex()) return undefined
    if (i >= this.offset) return this.unstable[i - this.offset]!.term
    if (this.pendingSnapshot !== undefined) return this.pendingSnapshot.term // i is its index
    return this.storage.term(i)
  }

  lastTerm(): number {
    return this.term(this.lastIndex()) ?? 0
  }

  matchTerm(i: number, t: number): boolean {
    return this.term(i) === t
  }

  /** Raft §5.4.1: a candidate's log is at least as up-to-date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm()
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex())
  }

  /** Index of the first entry of `ents` that conflicts with or extends the log; 0 if all match. */
  findConflict(ents: readonly Entry[]): number {
    for (const e of ents) if (!this.matchTerm(e.index, e.term)) return e.index
    return 0
  }

  /**
   * The largest index `j <= index` whose term is `<= term` (with that term; 0 if compacted).
   * Used on both sides of a rejected append to skip a whole divergent term per round trip.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (let i = Math.min(index, this.lastIndex()); i >= 0; i--) {
      const t = this.term(i)
      if (t === undefined) return { index: i, term: 0 }
      if (t <= term) return { index: i, term: t }
    }
    return { index: 0, term: 0 }
  }

  /**
   * Follower side of MsgApp: if our entry at `index` has term `logTerm`, appends `ents`
   * (truncating a divergent tail), advances commit to min(`commit`, last new index), and
   * returns the last new index; otherwise returns `undefined`.
   */
  maybeAppend(index: number, logTerm: number, commit: number, ents: readonly Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined
    const lastNew = index + ents.length
    const ci = this.findConflict(ents)
    if (ci !== 0) {
      if (ci <= this.committed)
        throw new RaftInvariantError(`entry ${ci} conflicts with committed ${this.committed}`)
      this.append(ents.slice(ci - index - 1))
    }
    this.commitTo(Math.min(commit, lastNew))
    return lastNew
  }

  /** Appends entries to the unstable tail, replacing every entry at or after `ents[0].index`. */
  append(ents: readonly Entry[]): void {
    if (ents.length === 0) return
    const after = ents[0]!.index
    if (after <= this.committed)
      throw new RaftInvariantError(`append at ${after} would overwrite committed ${this.committed}`)
    if (after > this.lastIndex() + 1)
      throw new RaftInvariantError(`append at ${after} leaves a gap after ${this.lastIndex()}`)
    if (after === this.offset + this.unstable.length) {
      for (const e of ents) this.unstable.push(e)
    } else if (after <= this.offset) {
      // The new entries replace part of the stable log too; the driver truncates it on persist.
      this.offset = after
      this.unstable = [...ents]
    } else {
      this.unstable = this.unstable.slice(0, after - this.offset).concat(ents)
    }
  }

  /**
   * Replaces the whole log with a snapshot (whose index is beyond our commit and whose
   * entry we do not have): the driver persists it from the next Ready.
   */
  restore(s: Snapshot): void {
    this.pendingSnapshot = s
    this.unstable = []
    this.offset = s.index + 1
    this.committed = s.index
    this.applying = s.index
  }

  /** The driver persisted the pending snapshot at `index` and applied its data. */
  snapshotPersisted(index: number): void {
    if (this.pendingSnapshot?.index !== index) return
    this.pendingSnapshot = undefined
    if (this.applied < index) this.applied = index
  }

  /** True if some entries are not yet persisted. */
  hasUnstable(): boolean {
    return this.unstable.length > 0
  }

  /** Entries not yet persisted, in order. */
  unstableEntries(): Entry[] {
    return [...this.unstable]
  }

  /** The driver persisted entries up to `index` (with term `term`): drop them from the tail. */
  stableTo(index: number, term: number): void {
    if (index < this.offset || this.term(index) !== term) return
    this.unstable = this.unstable.slice(index + 1 - this.offset)
    this.offset = index + 1
  }

  /** Entries `[lo, hi)` from storage and the unstable tail, limited to `maxBytes` (at least one). */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo >= hi) return []
    if (lo < this.firstIndex()) throw new CompactedError(`entry ${lo} is compacted`)
    if (hi > this.lastIndex() + 1)
      throw new RaftInvariantError(`slice to ${hi - 1} beyond last ${this.lastIndex()}`)
    let out: Entry[] = []
    if (lo < this.offset) {
      out = this.storage.entries(lo, Math.min(hi, this.offset), maxBytes)
      if (out.length < Math.min(hi, this.offset) - lo) return out
    }
    if (hi > this.offset) {
      out = out.concat(this.unstable.slice(Math.max(lo, this.offset) - this.offset, hi - this.offset))
    }
    return limitSize(out, maxBytes)
  }

  /** Committed entries not yet handed to the application. */
  hasNextCommittedEnts(): boolean {
    return this.committed > this.applying
  }

  /** Committed entries after `applying`, up to `maxBytes` (at least one); marks them handed out. */
  nextCommittedEnts(maxBytes: number): Entry[] {
    if (!this.hasNextCommittedEnts()) return []
    const ents = this.slice(this.applying + 1, this.committed + 1, maxBytes)
    if (ents.length > 0) this.applying = ents[ents.length - 1]!.index
    return ents
  }

  commitTo(c: number): void {
    if (c <= this.committed) return
    if (c > this.lastIndex())
      throw new RaftInvariantError(`commit ${c} is beyond last index ${this.lastIndex()}`)
    this.committed = c
  }

  /** Commits `index` if it holds an entry of `term` (Raft §5.4.2: only current-term entries count). */
  maybeCommit(index: number, term: number): boolean {
    if (index > this.committed && this.term(index) === term) {
      this.commitTo(index)
      return true
    }
    return false
  }

  appliedTo(i: number): void {
    if (i <= this.applied) return
    if (i > this.committed) throw new RaftInvariantError(`applied ${i} beyond commit ${this.committed}`)
    this.applied = i
    if (this.applying < i) this.applying = i
  }
}
