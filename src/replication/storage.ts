/**
 * `RaftLogStorage`: the Raft core's `Storage`, persisted in one replica directory:
 *
 *   <dir>/log/        commit log (fsync 'always'): entry index i is record offset i - 1, the
 *                     entry term is the record term, the data is the record value, and a
 *                     `confChange` entry carries the header `rt` = [1]
 *   <dir>/hardstate   term, vote, commit          (atomic, checksummed: statefile.ts)
 *   <dir>/confstate   voters + index they were applied at
 *   <dir>/snapshot    index, term, configuration and data of the last compaction / install
 *   <dir>/recovering  present while a replica rebuilt by `resetReplicaLog` has not yet been
 *                     caught up by a leader (the core then neither votes nor campaigns)
 *
 * The core reads storage synchronously. Terms of every entry after the snapshot point are kept
 * in memory (as runs: one item per term change); entry data only for a recent window: every
 * entry not yet applied, plus older ones up to `memoryBytes`. An older entry asked for (a
 * leader catching up a follower far behind) is read back from the commit log in the
 * background while `entries` throws `EntriesUnavailableError`; `onLoaded` then tells the
 * driver to send again. Every write goes to disk first and is reflected in memory only once
 * durable.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fsyncDir, unlinkIfExists } from '../log/fsutil.js'
import type { Log, RecoveryReport, ReplicaRecord } from '../log/index.js'
import { openLog } from '../log/index.js'
import {
  CompactedError,
  type ConfState,
  decodeConfState,
  decodeHardState,
  EntriesUnavailableError,
  type Entry,
  encodeConfState,
  encodeHardState,
  type HardState,
  type NodeId,
  RaftInvariantError,
  type Snapshot,
  type Storage,
} from '../raft/index.js'
import { BinaryReader, BinaryWriter } from '../util/binary.js'
import { CorruptReplicaStateError } from './errors.js'
import { readStateFile, removeTemp, StateKind, writeStateFile } from './statefile.js'

/** Header marking a `confChange` entry in the commit log (absent on `normal` entries). */
const TYPE_HEADER = 'rt'
const CONF_HEADERS = { [TYPE_HEADER]: new Uint8Array([1]) }
const LOAD_CHUNK_BYTES = 4 * 1024 * 1024
/** Default byte budget of applied entries kept in memory (see `RaftLogStorageOptions.memoryBytes`). */
export const DEFAULT_RAFT_MEMORY_BYTES = 16 * 1024 * 1024
/**
 * Segment size of the raft commit log: compaction deletes whole segments, so smaller ones
 * give the disk back sooner (a raft log is a short window once its state machine compacts).
 */
export const DEFAULT_RAFT_SEGMENT_BYTES = 16 * 1024 * 1024
/** Bytes of old entries read back from disk at a time. */
const WINDOW_BYTES = 4 * 1024 * 1024
/** Per-entry overhead counted against the memory budget besides its data. */
const ENTRY_OVERHEAD = 64

/** Options of `RaftLogStorage.open`. */
export interface RaftLogStorageOptions {
  /** Replica directory (created if missing). One process per directory. */
  dir: string
  /**
   * Bootstrap voters, used only when the directory holds no configuration yet (a new
   * group: every initial member lists all of them). Persisted on first open.
   */
  voters?: NodeId[]
  /** Clock for record timestamps (default `Date.now`). */
  now?: () => number
  /** Segment size of the raft commit log (default `DEFAULT_RAFT_SEGMENT_BYTES`). */
  segmentBytes?: number
  /**
   * Index the state machine has applied (entries after it stay in memory from the start: the
   * core replays them). Default 0.
   */
  applied?: number
  /**
   * Bytes of applied entries kept in memory for followers that lag (default 16 MiB); older ones
   * are read back from disk when needed. Entries not yet applied are always in memory.
   */
  memoryBytes?: number
}

/** Configuration as persisted: the voters and the index of the entry that produced them. */
export interface PersistedConfState extends ConfState {
  index: number
}

/**
 * Durable Raft `Storage` over the commit log. Durability: every mutating method resolves
 * only once its change is fsynced (log appends and truncations through the log's
 * `fsync: 'always'` group commit; state files by temp + fdatasync + rename + dir fsync),
 * except `setHardState` for commit-only changes, which are kept in memory until
 * `flushHardState` (the commit index is recomputed after a restart). Ordering: the caller
 * must not overlap mutating calls (the driver serializes them); reads reflect exactly the
 * writes that completed.
 */
export class RaftLogStorage implements Storage {
  private hs: HardState
  private diskHs: HardState
  private conf: PersistedConfState
  private snap: Snapshot
  /** Index of the last entry (snap.index when there is none after it). */
  private last: number
  /** Term runs over (snap.index, last]: `index` is the first entry of the run, ascending. */
  private runs: Array<{ index: number; term: number }> = []
  /** Entries in memory: tail[head..] are tailFirst .. last, in order (slots before head are dead). */
  private tail: Entry[] = []
  private head = 0
  private tailBytes = 0
  /** Highest index the driver released (applied): entries up to it may leave memory. */
  private released = 0
  private readonly memoryBytes: number
  /** Old entries read back from disk, windowFirst .. windowFirst + window.length - 1. */
  private window: Entry[] = []
  private windowFirst = 0
  private loading: Promise<void> | undefined
  /** Windows of old entries read back from disk so far (diagnostics, tests). */
  windowLoads = 0
  /** Called when old entries asked for were read back from disk (`entries` may now serve them). */
  onLoaded: (() => void) | undefined
  /**
   * The log was rebuilt empty (`resetReplicaLog`) and no leader has caught it up yet: start
   * the core with `recovering` (see `RaftConfig.recovering`), then `clearRecovering`.
   */
  recovering = false

  private constructor(
    readonly dir: string,
    private readonly log: Log,
    private readonly now: () => number,
    state: { hs: HardState; diskHs: HardState; conf: PersistedConfState; snap: Snapshot },
    memoryBytes: number,
  ) {
    this.hs = state.hs
    this.diskHs = state.diskHs
    this.conf = state.conf
    this.snap = state.snap
    this.last = state.snap.index
    this.memoryBytes = memoryBytes
  }

  private get tailFirst(): number {
    return this.last + 1 - (this.tail.length - this.head)
  }

  /**
   * Opens (or creates) the replica directory and restores exactly what was persisted. The
   * commit log repairs a torn tail itself (see `recovery`). Leftovers of an interrupted
   * snapshot install are cut. Throws `CorruptReplicaStateError` for a damaged state file or
   * a raft log with a hole after the snapshot point, `CorruptLogError` from the log.
   */
  static async open(opts: RaftLogStorageOptions): Promise<RaftLogStorage> {
    const { dir } = opts
    await mkdir(dir, { recursive: true })
    const files = {
      hs: join(dir, 'hardstate'),
      cs: join(dir, 'confstate'),
      snap: join(dir, 'snapshot'),
      rec: join(dir, 'recovering'),
    }
    for (const f of Object.values(files)) await removeTemp(f)
    const recovering =
      (await readStateFile(files.rec, StateKind.recovering).catch(() => new Uint8Array())) !== undefined
    const hsBytes = await readStateFile(files.hs, StateKind.hardState)
    const csBytes = await readStateFile(files.cs, StateKind.confState)
    const snapBytes = await readStateFile(files.snap, StateKind.snapshot)
    const diskHs = hsBytes
      ? decodeOr(files.hs, () => decodeHardState(hsBytes))
      : { term: 0, vote: null, commit: 0 }
    const snap = snapBytes
      ? decodeOr(files.snap, () => decodeSnapshot(snapBytes))
      : { index: 0, term: 0, confState: { voters: [] }, data: new Uint8Array(0) }
    let conf = csBytes ? decodeOr(files.cs, () => decodePersistedConf(csBytes)) : undefined

    const now = opts.now ?? Date.now
    const log = await openLog({
      dir: join(dir, 'log'),
      fsync: 'always',
      segmentBytes: opts.segmentBytes ?? DEFAULT_RAFT_SEGMENT_BYTES,
      eagerWrites: true, // one appender (the Ready loop), awaiting each append
      now,
    })
    try {
      const S = snap.index
      if (S > 0) {
        // An install interrupted between writing the snapshot file and cutting the log.
        const t = await log.termAt(S - 1)
        if (t !== undefined && t !== snap.term) await log.truncateAfter(S - 2)
      }
      const memoryBytes = opts.memoryBytes ?? DEFAULT_RAFT_MEMORY_BYTES
      const st = new RaftLogStorage(
        dir,
        log,
        now,
        { hs: diskHs, diskHs, conf: conf ?? { index: 0, voters: [] }, snap },
        memoryBytes,
      )
      // Commit-only hard state changes are written lazily, so after a crash the commit index
      // on disk can lag what the state machine applied by everything since the last term
      // change. Only committed entries are ever applied: an applied index is a commit index
      // too. Taking it here keeps the core from handing those entries out again (they may
      // have left memory already) and keeps `released` at or below the core's applied index,
      // the invariant that lets `entries` serve every entry the core will apply from memory.
      const applied = opts.applied ?? 0
      st.released = applied // entries up to min(applied, last) may leave memory while loading
      await loadEntries(log, snap, files.snap, (e) => st.push(e))
      if (conf === undefined || conf.index < S) {
        conf =
          S > 0 ? { index: S, voters: [...snap.confState.voters] } : { index: 0, voters: opts.voters ?? [] }
        await writeStateFile(files.cs, StateKind.confState, encodePersistedConf(conf))
      }
      st.conf = conf
      st.recovering = recovering
      const commit = Math.max(S, Math.min(Math.max(diskHs.commit, applied), st.last))
      st.hs = { ...diskHs, commit }
      // Entries the state machine applied beyond the raft log (a log that lost its tail) come
      // again from the leader and must stay until the core hands them out: never above commit.
      st.released = Math.min(applied, commit)
      return st
    } catch (err) {
      await log.close().catch(() => {})
      throw err
    }
  }

  /** A leader caught the rebuilt log up: removes the `recovering` marker (durably). */
  async clearRecovering(): Promise<void> {
    if (!this.recovering) return
    if (await unlinkIfExists(join(this.dir, 'recovering'))) await fsyncDir(this.dir)
    this.recovering = false
  }

  /** What the commit log found and repaired on open (torn tail, rebuilt indexes). */
  get recovery(): RecoveryReport {
    return this.log.recovery
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.hs }, confState: { voters: [...this.conf.voters] } }
  }

  /** The persisted configuration and the index it was applied at. */
  confState(): PersistedConfState {
    return { index: this.conf.index, voters: [...this.conf.voters] }
  }

  firstIndex(): number {
    return this.snap.index + 1
  }

  lastIndex(): number {
    return this.last
  }

  term(i: number): number {
    const first = this.firstIndex()
    if (i === first - 1) return this.snap.term
    if (i < first) throw new CompactedError(`entry ${i} is compacted (first is ${first})`)
    if (i > this.last) throw new RaftInvariantError(`entry ${i} is beyond the last index ${this.last}`)
    const t = this.tailFirst
    if (i >= t) return this.tail[this.head + i - t]!.term
    const runs = this.runs
    let lo = 0
    let hi = runs.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1
      if (runs[mid]!.index <= i) lo = mid
      else hi = mid - 1
    }
    return runs[lo]!.term
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const first = this.firstIndex()
    if (lo < first) throw new CompactedError(`entry ${lo} is compacted (first is ${first})`)
    if (hi > this.last + 1)
      throw new RaftInvariantError(`entries up to ${hi - 1} requested, last is ${this.last}`)
    let from: Entry[]
    let base: number
    const t = this.tailFirst
    if (lo >= t) {
      from = this.tail
      base = t - this.head
    } else if (lo >= this.windowFirst && lo < this.windowFirst + this.window.length) {
      // Read back from disk: served up to the window's end (a shorter prefix is allowed).
      from = this.window
      base = this.windowFirst
      hi = Math.min(hi, base + from.length)
    } else {
      this.load(lo)
      throw new EntriesUnavailableError(`entries from ${lo} are being read back from disk`)
    }
    const out: Entry[] = []
    let size = 0
    for (let i = lo; i < hi; i++) {
      const e = from[i - base]!
      size += e.data.length + 24
      if (out.length > 0 && size > maxBytes) break
      out.push(e)
    }
    return out
  }

  /** Entries and bytes held in memory (the recent window), for diagnostics and tests. */
  memory(): { entries: number; bytes: number; first: number } {
    return { entries: this.tail.length - this.head, bytes: this.tailBytes, first: this.tailFirst }
  }

  /**
   * Entries up to `index` are applied: they may leave memory (oldest first, beyond
   * `memoryBytes`). Entries after it always stay.
   */
  release(index: number): void {
    if (index <= this.released) return
    this.released = index
    this.evict()
  }

  /** Appends `e` (the next index) to the in-memory view. */
  private push(e: Entry): void {
    const r = this.runs[this.runs.length - 1]
    if (r === undefined || r.term !== e.term) this.runs.push({ index: e.index, term: e.term })
    this.tail.push(e)
    this.tailBytes += e.data.length + ENTRY_OVERHEAD
    this.last = e.index
    this.evict()
  }

  /** Drops applied entries from the front of the tail while it is over budget. */
  private evict(): void {
    const tail = this.tail
    while (this.head < tail.length && this.tailBytes > this.memoryBytes) {
      const e = tail[this.head]!
      if (e.index > this.released) break
      this.tailBytes -= e.data.length + ENTRY_OVERHEAD
      tail[this.head++] = undefined as unknown as Entry // let it go
    }
    if (this.head > 1024 && this.head * 2 > tail.length) this.rebase()
  }

  /** Moves the live entries to the front of the array (amortized: rarely). */
  private rebase(): void {
    this.tail = this.tail.slice(this.head)
    this.head = 0
  }

  /** Forgets in-memory entries at or after `index` (a truncated tail). */
  private cutFrom(index: number): void {
    const t = this.tailFirst
    if (index <= t) {
      this.tail = []
      this.head = 0
      this.tailBytes = 0
    } else {
      const keep = this.head + (index - t)
      for (let i = keep; i < this.tail.length; i++)
        this.tailBytes -= this.tail[i]!.data.length + ENTRY_OVERHEAD
      this.tail.length = keep
    }
    while (this.runs.length > 0 && this.runs[this.runs.length - 1]!.index >= index) this.runs.pop()
    if (this.windowFirst + this.window.length > index) this.window = []
    this.last = index - 1
  }

  /** Reads old entries from `lo` back from disk (one window at a time), then `onLoaded`. */
  private load(lo: number): void {
    if (this.loading !== undefined) return
    const end = this.tailFirst
    this.loading = (async () => {
      const recs = await this.log.read(lo - 1, { maxBytes: WINDOW_BYTES })
      const ents: Entry[] = []
      for (const r of recs) {
        const index = r.offset + 1
        if (index !== lo + ents.length || index >= end) break
        const isConf = r.headers?.[TYPE_HEADER]?.[0] === 1
        ents.push({
          index,
          term: r.term,
          type: isConf ? 'confChange' : 'normal',
          data: new Uint8Array(r.value),
        })
      }
      if (ents.length > 0) {
        this.window = ents
        this.windowFirst = lo
        this.windowLoads++
      }
    })()
      .catch(() => {}) // a failed read is retried on the next request
      .finally(() => {
        this.loading = undefined
        this.onLoaded?.()
      })
  }

  snapshot(): Snapshot {
    return this.snap
  }

  /**
   * Persists `entries` (consecutive, non-empty to have an effect) with one log append, after
   * truncating any persisted entries at or after `entries[0].index` (a divergent tail).
   * Resolves once everything is fsynced; only then do reads see the new entries.
   */
  async append(entries: readonly Entry[]): Promise<void> {
    if (entries.length === 0) return
    const first = entries[0]!.index
    const base = this.firstIndex()
    if (first < base) throw new RaftInvariantError(`append at ${first} overlaps the snapshot at ${base - 1}`)
    if (first > this.lastIndex() + 1)
      throw new RaftInvariantError(`append at ${first} leaves a gap after ${this.lastIndex()}`)
    if (first <= this.lastIndex()) await this.log.truncateAfter(first - 2)
    const ts = this.now()
    const records: ReplicaRecord[] = entries.map((e, i) => {
      if (e.index !== first + i) throw new RaftInvariantError(`entries are not consecutive at ${e.index}`)
      const r: ReplicaRecord = { offset: e.index - 1, timestamp: ts, term: e.term, value: e.data }
      if (e.type === 'confChange') r.headers = CONF_HEADERS
      return r
    })
    if (first <= this.lastIndex()) this.cutFrom(first) // truncated on disk already
    await this.log.appendAt(records)
    for (const e of entries) this.push(e)
  }

  /**
   * Records the hard state. A change of term or vote is written (durably) before this
   * resolves; a commit-only change is kept in memory until `flushHardState` or the next
   * term/vote change (losing it in a crash is safe: the commit index is recomputed).
   */
  async setHardState(hs: HardState): Promise<void> {
    this.hs = { ...hs }
    if (hs.term !== this.diskHs.term || hs.vote !== this.diskHs.vote) await this.flushHardState()
  }

  /** Writes the in-memory hard state (with its commit index) if it differs from the file. */
  async flushHardState(): Promise<void> {
    const hs = { ...this.hs }
    const d = this.diskHs
    if (hs.term === d.term && hs.vote === d.vote && hs.commit === d.commit) return
    await writeStateFile(join(this.dir, 'hardstate'), StateKind.hardState, encodeHardState(hs))
    this.diskHs = hs
  }

  /** Durably records the configuration produced by applying the conf change at `index`. */
  async setConfState(cs: ConfState, index: number): Promise<void> {
    const conf = { index, voters: [...cs.voters] }
    await writeStateFile(join(this.dir, 'confstate'), StateKind.confState, encodePersistedConf(conf))
    this.conf = conf
  }

  /**
   * Installs a snapshot received from the leader: the log restarts after `s.index` (every
   * persisted entry after it is dropped), the configuration becomes the snapshot's. Writes the
   * snapshot file first, then cuts the log; `open` finishes an install interrupted between.
   */
  async applySnapshot(s: Snapshot): Promise<void> {
    await this.writeSnapshot(s)
    const t = await this.log.termAt(s.index - 1)
    await this.log.truncateAfter(t === s.term ? s.index - 1 : s.index - 2)
    this.snap = s
    this.tail = []
    this.head = 0
    this.tailBytes = 0
    this.runs = []
    this.window = []
    this.last = s.index
    if (this.conf.index < s.index) await this.setConfState(s.confState, s.index)
    if (this.hs.commit < s.index) this.hs = { ...this.hs, commit: s.index }
    await this.log.deleteBefore(s.index - 1)
  }

  /**
   * Compacts the raft log's in-memory view up to `index` (which must be applied): records a
   * snapshot (`index`, its term, `confState` as of `index`, `data`) durably, after which
   * `firstIndex()` is `index + 1` and followers behind it are sent that snapshot. Whole
   * segments of the commit log below the snapshot point are then deleted (a crash between
   * leaves them to the next compaction; `open` reads only from the snapshot point on).
   */
  async compact(index: number, confState: ConfState, data: Uint8Array = new Uint8Array(0)): Promise<void> {
    if (index <= this.snap.index) return
    if (index > this.lastIndex()) throw new RaftInvariantError(`compact ${index} is beyond the last index`)
    const s: Snapshot = { index, term: this.term(index), confState: { voters: [...confState.voters] }, data }
    await this.writeSnapshot(s)
    const t = this.tailFirst
    if (index >= t) {
      const drop = this.head + index - t + 1
      for (let i = this.head; i < drop; i++) this.tailBytes -= this.tail[i]!.data.length + ENTRY_OVERHEAD
      this.tail = this.tail.slice(drop)
      this.head = 0
    }
    // Runs: the one covering index + 1 starts there now.
    let k = 0
    while (k + 1 < this.runs.length && this.runs[k + 1]!.index <= index + 1) k++
    this.runs = this.runs.slice(k)
    if (this.runs.length > 0 && this.runs[0]!.index < index + 1)
      this.runs[0] = { ...this.runs[0]!, index: index + 1 }
    if (this.windowFirst <= index) this.window = []
    this.snap = s
    if (this.hs.commit < index) this.hs = { ...this.hs, commit: index } // a snapshot is committed
    await this.log.deleteBefore(index - 1) // keeps the snapshot's own entry (offset index - 1)
  }

  /** Bytes of the raft commit log on disk (every segment, compacted or not). */
  diskBytes(): number {
    let n = 0
    for (const seg of this.log.segments()) n += seg.bytes
    return n
  }

  /** fsync counters of the underlying commit log (group commit shows as appendsPerFsync > 1). */
  logStats(): ReturnType<Log['stats']> {
    return this.log.stats()
  }

  /** Closes the commit log (queued appends finish first). Does not flush the hard state. */
  async close(): Promise<void> {
    await this.log.close()
  }

  private async writeSnapshot(s: Snapshot): Promise<void> {
    await writeStateFile(join(this.dir, 'snapshot'), StateKind.snapshot, encodeSnapshot(s))
  }
}

/**
 * Reads the entries after the snapshot point, in order, into `push`; they must be dense from
 * `snap.index + 1`.
 */
async function loadEntries(log: Log, snap: Snapshot, file: string, push: (e: Entry) => void): Promise<void> {
  let next = snap.index // offset of index snap.index + 1
  let prevTerm = snap.term
  for (;;) {
    const recs = await log.read(next, { maxBytes: LOAD_CHUNK_BYTES })
    if (recs.length === 0) break
    for (const r of recs) {
      if (r.offset !== next)
        throw new CorruptReplicaStateError(
          file,
          `raft log holds offset ${r.offset} where ${next} was expected`,
        )
      if (r.term < prevTerm)
        throw new CorruptReplicaStateError(file, `raft log term goes back at index ${next + 1}`)
      const isConf = r.headers?.[TYPE_HEADER]?.[0] === 1
      push({
        index: next + 1,
        term: r.term,
        type: isConf ? 'confChange' : 'normal',
        data: new Uint8Array(r.value), // copy: views die with the read buffer
      })
      prevTerm = r.term
      next++
    }
  }
}

function decodeOr<T>(file: string, f: () => T): T {
  try {
    return f()
  } catch (err) {
    throw new CorruptReplicaStateError(file, `does not decode: ${(err as Error).message}`)
  }
}

function encodePersistedConf(c: PersistedConfState): Uint8Array {
  return new BinaryWriter(64).u64(c.index).raw(encodeConfState(c)).finish().slice()
}

function decodePersistedConf(buf: Uint8Array): PersistedConfState {
  const r = new BinaryReader(buf)
  const index = r.u64('conf index')
  return { index, ...decodeConfState(r.raw(r.remaining)) }
}

function encodeSnapshot(s: Snapshot): Uint8Array {
  return new BinaryWriter(64 + s.data.length)
    .u64(s.index)
    .u64(s.term)
    .bytes(encodeConfState(s.confState))
    .bytes(s.data)
    .finish()
    .slice()
}

function decodeSnapshot(buf: Uint8Array): Snapshot {
  const r = new BinaryReader(buf)
  const index = r.u64('snapshot index')
  const term = r.u64('snapshot term')
  const confState = decodeConfState(r.bytes('snapshot conf state'))
  const data = new Uint8Array(r.bytes('snapshot data'))
  r.end('snapshot')
  return { index, term, confState, data }
}
