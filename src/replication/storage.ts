/**
 * `RaftLogStorage`: the Raft core's `Storage`, persisted in one replica directory:
 *
 *   <dir>/log/        commit log (fsync 'always'): entry index i is record offset i - 1, the
 *                     entry term is the record term, the data is the record value, and a
 *                     `confChange` entry carries the header `rt` = [1]
 *   <dir>/hardstate   term, vote, commit          (atomic, checksummed: statefile.ts)
 *   <dir>/confstate   voters + index they were applied at
 *   <dir>/snapshot    index, term, configuration and data of the last compaction / install
 *
 * The core reads storage synchronously, so the entries after the snapshot point are also
 * kept in memory (`compact` bounds that); every write goes to disk first and is reflected in
 * memory only once durable.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Log, RecoveryReport, ReplicaRecord } from '../log/index.js'
import { openLog } from '../log/index.js'
import {
  CompactedError,
  type ConfState,
  decodeConfState,
  decodeHardState,
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
  /** Segment size of the raft commit log (default: the log's default). */
  segmentBytes?: number
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
  /** Entries snap.index + 1 .. lastIndex, in order. */
  private ents: Entry[]

  private constructor(
    readonly dir: string,
    private readonly log: Log,
    private readonly now: () => number,
    state: { hs: HardState; diskHs: HardState; conf: PersistedConfState; snap: Snapshot; ents: Entry[] },
  ) {
    this.hs = state.hs
    this.diskHs = state.diskHs
    this.conf = state.conf
    this.snap = state.snap
    this.ents = state.ents
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
    const files = { hs: join(dir, 'hardstate'), cs: join(dir, 'confstate'), snap: join(dir, 'snapshot') }
    for (const f of Object.values(files)) await removeTemp(f)
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
      segmentBytes: opts.segmentBytes,
      now,
    })
    try {
      const S = snap.index
      if (S > 0) {
        // An install interrupted between writing the snapshot file and cutting the log.
        const t = await log.termAt(S - 1)
        if (t !== undefined && t !== snap.term) await log.truncateAfter(S - 2)
      }
      const ents = await loadEntries(log, snap, files.snap)
      if (conf === undefined || conf.index < S) {
        conf =
          S > 0 ? { index: S, voters: [...snap.confState.voters] } : { index: 0, voters: opts.voters ?? [] }
        await writeStateFile(files.cs, StateKind.confState, encodePersistedConf(conf))
      }
      const last = S + ents.length
      const hs = { ...diskHs, commit: Math.max(S, Math.min(diskHs.commit, last)) }
      return new RaftLogStorage(dir, log, now, { hs, diskHs, conf, snap, ents })
    } catch (err) {
      await log.close().catch(() => {})
      throw err
    }
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
    return this.snap.index + this.ents.length
  }

  term(i: number): number {
    const first = this.firstIndex()
    if (i === first - 1) return this.snap.term
    if (i < first) throw new CompactedError(`entry ${i} is compacted (first is ${first})`)
    const e = this.ents[i - first]
    if (e === undefined)
      throw new RaftInvariantError(`entry ${i} is beyond the last index ${this.lastIndex()}`)
    return e.term
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const first = this.firstIndex()
    if (lo < first) throw new CompactedError(`entry ${lo} is compacted (first is ${first})`)
    if (hi > this.lastIndex() + 1)
      throw new RaftInvariantError(`entries up to ${hi - 1} requested, last is ${this.lastIndex()}`)
    const out: Entry[] = []
    let size = 0
    for (let i = lo; i < hi; i++) {
      const e = this.ents[i - first]!
      size += e.data.length + 24
      if (out.length > 0 && size > maxBytes) break
      out.push(e)
    }
    return out
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
    if (first <= this.lastIndex()) this.ents.length = first - base // truncated on disk already
    await this.log.appendAt(records)
    for (const e of entries) this.ents.push(e)
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
    this.ents = []
    if (this.conf.index < s.index) await this.setConfState(s.confState, s.index)
    if (this.hs.commit < s.index) this.hs = { ...this.hs, commit: s.index }
  }

  /**
   * Compacts the raft log's in-memory view up to `index` (which must be applied): records a
   * snapshot (`index`, its term, `confState` as of `index`, `data`) durably, after which
   * `firstIndex()` is `index + 1` and followers behind it are sent that snapshot. The commit
   * log's segments are not deleted yet (the log has no delete-before-offset operation).
   */
  async compact(index: number, confState: ConfState, data: Uint8Array = new Uint8Array(0)): Promise<void> {
    if (index <= this.snap.index) return
    if (index > this.lastIndex()) throw new RaftInvariantError(`compact ${index} is beyond the last index`)
    const s: Snapshot = { index, term: this.term(index), confState: { voters: [...confState.voters] }, data }
    await this.writeSnapshot(s)
    this.ents = this.ents.slice(index - this.snap.index)
    this.snap = s
    if (this.hs.commit < index) this.hs = { ...this.hs, commit: index } // a snapshot is committed
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

/** Loads the entries after the snapshot point; they must be dense from `snap.index + 1`. */
async function loadEntries(log: Log, snap: Snapshot, file: string): Promise<Entry[]> {
  const ents: Entry[] = []
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
      ents.push({
        index: next + 1,
        term: r.term,
        type: isConf ? 'confChange' : 'normal',
        data: new Uint8Array(r.value), // copy: views die with the read buffer
      })
      prevTerm = r.term
      next++
    }
  }
  return ents
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
