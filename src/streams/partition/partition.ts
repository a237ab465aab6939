/**
 * `PartitionReplica`: one member's replica of one stream partition.
 *
 *   <dir>/raft/   the partition's Raft group (ReplicaDriver + RaftLogStorage, fsync 'always'):
 *                 the write-ahead log; a data entry carries a batch of messages (batch.ts)
 *   <dir>/data/   the partition log consumers read (commit log, fsync 'never'): committed
 *                 messages at dense offsets from 0, each with the `px.ri` position header
 *
 * The state machine applies committed raft entries in index order: the k messages of entry
 * `e` get offsets `next .. next + k - 1`, identical on every replica (same entries, same
 * order, same timestamps fixed by the leader). The partition log needs no fsync: after a
 * crash its tail may be missing or torn, and the last intact record says which raft index
 * was applied last, so the rest is replayed from the raft log (entries at or below it are
 * skipped: re-delivery is idempotent). A partition log that is missing or unreadable is
 * rebuilt from the raft log, and from other replicas for what the raft log no longer holds.
 *
 * The raft log is compacted (partition-snapshot.ts) once enough was applied, after an
 * fdatasync of the partition log: it stays a short window, not a second copy of the data. A
 * replica behind the compaction point installs a snapshot and copies the records it lacks
 * from another replica (partition-copy.ts). See docs/replication.md, "Partition replicas"
 * and "Compaction and snapshot catch-up".
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import {
  DEFAULT_KEY_INDEX_MAX_KEYS,
  DEFAULT_PURGED_KEYS_MAX,
  DEFAULT_RAFT_LOG_BYTES,
} from '../../constants.js'
import { AbortedError, InvalidArgumentError, OverloadedError } from '../../errors.js'
import type { Log } from '../../log/index.js'
import { type Entry, type NodeId, RaftInvariantError, type Role, type Snapshot } from '../../raft/index.js'
import {
  CorruptReplicaStateError,
  LeadershipLostError,
  NotLeaderError,
  ReplicaDriver,
} from '../../replication/index.js'
import { encodePurgeEntry, encodePurgeKeyEntry } from '../host/purge.js'
import { DEFAULT_DUPLICATE_WINDOW } from '../meta/metadata-codec.js'
import { type BatchMessage, encodeBatch, MSG_ID_HEADER, messageSize } from './batch.js'
import { DedupeWindow } from './dedupe.js'
import { KeyIndex, keyText, rebuildKeyIndex } from './key-index.js'
import {
  dataMessages,
  entriesToRecords,
  MAINTENANCE_MS,
  openPartitionLog,
  rebuildDedupe,
} from './partition-apply.js'
import { CasGate } from './partition-cas.js'
import { type CopyChunk, copyRange } from './partition-copy.js'
import { TopicCache, toBatchMessages, toMessage } from './partition-messages.js'
import { CompactionPlanner, decodePartitionSnapshot, encodePartitionSnapshot } from './partition-snapshot.js'
import { PurgedKeys } from './purged-keys.js'
import type {
  PartitionMessage,
  PartitionRecovery,
  PartitionReplicaOptions,
  PublishMessage,
  PublishOptions,
  PublishResult,
} from './types.js'

interface Publish {
  messages: BatchMessage[]
  bytes: number
  ack: PublishOptions['ack']
  /** Keys written (partition-cas.ts: in flight until applied), when any. */
  keys: string[] | undefined
  resolve: (r: PublishResult) => void
  reject: (err: unknown) => void
}

const DEFAULTS = { maxPendingMessages: 65_536, maxBatchMessages: 4096, maxBatchBytes: 1 << 20 }

/**
 * One replica of one stream partition. Ordering: total order per partition, offsets dense
 * from 0, identical on every replica; the messages of one `publish` call are consecutive.
 * Durability: a `publish` with `ack: 'all'` resolves only after its entry is fsynced on a
 * majority (Raft commit) and applied here, so it survives the loss of any minority and a
 * restart of every replica; with `ack: 'leader'` it resolves once the entry is fsynced in
 * the leader's raft log, with the offsets it will get if committed (see `PublishOptions`).
 * Visibility: `read`/`waitForNew` see committed messages only.
 */
export class PartitionReplica {
  readonly id: NodeId
  private readonly opts: PartitionReplicaOptions
  private driver: ReplicaDriver | undefined
  private log: Log | undefined
  private state: 'new' | 'running' | 'stopped' = 'new'
  private appliedIndex = 0
  private nextOffset = 0
  private queue: Publish[] = []
  private flushScheduled = false
  private readonly topics = new TopicCache()
  private pendingMessages = 0
  private inflight = 0
  /** Offsets given to entries applied while proposals were in flight (index → first offset). */
  private readonly spans = new Map<number, number[]>()
  /** Message ids stored within the duplicate window (rebuilt from the partition log on start). */
  private dedupe: DedupeWindow
  /**
   * Offset prediction cache for `ack: 'leader'`: the offset the entry after raft `index` of
   * the leader's log of `term` will start at. Valid only while that log is unchanged up to
   * `index`, i.e. while the same term's leadership lasts.
   */
  private predicted: { term: number; index: number; next: number } | undefined
  private recoveryReport: PartitionRecovery = {
    appliedIndex: 0,
    droppedPartialRecords: 0,
    rebuilt: undefined,
  }
  /** Entries whose payload did not decode (skipped identically on every replica). */
  skippedEntries = 0
  /** Every record below this offset is written to the partition log (readable). */
  private writtenNext = 0
  private readonly planner: CompactionPlanner
  private compacting: Promise<void> | undefined
  /** Aborts a snapshot catch-up (copy from other replicas) on stop. */
  private readonly stopping = new AbortController()
  /** Raft log compactions done since start. */
  compactions = 0
  /** The write of the last purge applied (purge.ts). */
  private purged: Promise<void> = Promise.resolve()
  /** Latest live record per key (key-index.ts): `last`, conditional appends. */
  readonly keyIndex: KeyIndex
  /** Purges by key applied (purged-keys.ts): their messages are hidden from every read. */
  readonly purgedKeys: PurgedKeys
  private readonly hidden = (key: Uint8Array | undefined, offset: number) =>
    this.purgedKeys.hides(key, offset)
  /** Conditional appends, checked and serialized per key on the leader (partition-cas.ts). */
  private readonly cas: CasGate

  constructor(opts: PartitionReplicaOptions) {
    if (typeof opts.id !== 'string' || opts.id === '')
      throw new InvalidArgumentError('id must be a non-empty string')
    if (typeof opts.dir !== 'string' || opts.dir === '') throw new InvalidArgumentError('dir must be a path')
    if (!Array.isArray(opts.voters) || opts.voters.length === 0)
      throw new InvalidArgumentError('voters must be a non-empty array')
    for (const k of ['maxPendingMessages', 'maxBatchMessages', 'maxBatchBytes'] as const) {
      const v = opts[k]
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 1))
        throw new InvalidArgumentError(`${k} must be a positive integer, got ${v}`)
    }
    this.id = opts.id
    this.opts = opts
    this.dedupe = new DedupeWindow(opts.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW)
    this.planner = new CompactionPlanner(
      opts.raftCompactBytes ?? DEFAULT_RAFT_LOG_BYTES,
      opts.raftRetainBytes ?? DEFAULT_RAFT_LOG_BYTES / 4,
    )
    this.keyIndex = new KeyIndex(opts.keyIndexMaxKeys ?? DEFAULT_KEY_INDEX_MAX_KEYS)
    this.purgedKeys = new PurgedKeys(opts.purgedKeysMax ?? DEFAULT_PURGED_KEYS_MAX)
    this.cas = new CasGate(this.keyIndex, () => this.leaderView())
  }

  /**
   * Opens the partition log (repairing a half-applied tail, or rebuilding it when missing or
   * corrupt), then the raft group, which replays committed entries after the last applied
   * one. Rejects when the raft state cannot be opened (`CorruptReplicaStateError`).
   */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new InvalidArgumentError('a partition replica starts once')
    this.state = 'running'
    await mkdir(this.opts.dir, { recursive: true })
    try {
      const opened = await openPartitionLog(this.opts)
      this.log = opened.log
      await rebuildDedupe(opened.log, this.dedupe)
      this.purgedKeys.loadSync(this.opts.dir)
      await rebuildKeyIndex(opened.log, this.keyIndex, this.hidden)
      this.appliedIndex = opened.appliedIndex
      this.nextOffset = opened.nextOffset
      this.writtenNext = opened.nextOffset
      this.recoveryReport = opened.report
      const o = this.opts
      this.driver = new ReplicaDriver({
        ...o.driver,
        id: o.id,
        dir: join(o.dir, 'raft'),
        voters: o.voters,
        send: o.send,
        applied: this.appliedIndex,
        pipelineApply: true,
        apply: (entries) => this.apply(entries),
        restore: (snap) => this.restore(snap),
      })
      await this.driver.start()
    } catch (err) {
      this.state = 'stopped'
      await this.log?.close().catch(() => {})
      throw err
    }
  }

  /**
   * Stops the replica: queued and uncommitted publishes reject (`AbortedError`: outcome
   * unknown if already proposed). `flush: false` simulates a crash (tests): nothing more is
   * sent or applied; the partition log keeps what was written (the OS has it).
   */
  async stop(options: { flush?: boolean } = {}): Promise<void> {
    if (this.state === 'stopped') return
    this.state = 'stopped'
    const err = new AbortedError('partition replica stopped')
    this.cas.failAll(err)
    for (const p of this.queue.splice(0)) p.reject(err)
    // The driver first (it stops taking work at once), then abort a catch-up copy it may be
    // waiting for: the aborted restore is then a stop, not a failure.
    const driverStopped = this.driver?.stop(options)
    this.stopping.abort()
    await this.compacting
    await driverStopped
    await this.log?.close().catch(() => {})
  }

  /**
   * Appends `messages` (non-empty) on the leader. Resolves with their offsets, consecutive:
   * with `ack: 'all'` once their raft entry is committed and applied here; with `ack:
   * 'leader'` once it is fsynced in this leader's raft log, with the offsets it will be given
   * if it commits (predicted; see `PublishOptions.ack` for what is and is not guaranteed).
   * Concurrent calls are batched into one raft entry (up to `maxBatchMessages` /
   * `maxBatchBytes`). Rejects with `NotLeaderError` (nothing appended; `.leader` is the hint),
   * `OverloadedError` (more than `maxPendingMessages` pending), `InvalidArgumentError`, and,
   * with an unknown outcome (it may still commit: retry only if duplicates are acceptable),
   * `LeadershipLostError` (for `'leader'`: leadership ended before the entry was fsynced)
   * or `AbortedError`. A message with `expectedRevision` (alone in its call) is appended only
   * when its key's latest live record is at that offset (partition-cas.ts), else rejects with
   * `WrongRevisionError`, nothing appended.
   */
  publish(messages: readonly PublishMessage[], options: PublishOptions): Promise<PublishResult> {
    let batch: BatchMessage[]
    let expected: number | undefined
    try {
      if (options?.ack !== 'all' && options?.ack !== 'leader')
        throw new InvalidArgumentError(`ack must be 'leader' or 'all', got ${String(options?.ack)}`)
      batch = toBatchMessages(messages, (this.opts.now ?? Date.now)(), this.topics)
      expected = checkExpected(messages)
    } catch (err) {
      return Promise.reject(err)
    }
    const driver = this.driver
    if (this.state !== 'running' || driver === undefined)
      return Promise.reject(new AbortedError('partition replica is not running'))
    if (driver.role !== 'leader') return Promise.reject(new NotLeaderError(driver.leader))
    const max = this.opts.maxPendingMessages ?? DEFAULTS.maxPendingMessages
    if (this.pendingMessages + batch.length > max)
      return Promise.reject(new OverloadedError(`${max} messages pending on partition replica ${this.id}`))
    let bytes = 0
    let keys: string[] | undefined
    for (const m of batch) {
      bytes += messageSize(m)
      if (m.key !== undefined) (keys ??= []).push(keyText(m.key))
    }
    this.pendingMessages += batch.length
    return new Promise<PublishResult>((resolve, reject) => {
      const p: Publish = { messages: batch, bytes, ack: options.ack, keys, resolve, reject }
      const go = () => {
        if (keys !== undefined) this.cas.begin(keys)
        this.queue.push(p)
        if (!this.flushScheduled) {
          this.flushScheduled = true
          queueMicrotask(() => this.flush())
        }
      }
      if (expected === undefined) return go()
      const fail = (err: unknown) => {
        this.pendingMessages -= batch.length
        reject(err)
      }
      this.cas.submit({ key: batch[0]!.key!, keyText: keys![0]!, expected, go, fail })
    })
  }

  /**
   * The latest live message of `key` (a non-empty value; an empty one is a tombstone), or
   * undefined; from this replica's key index (key-index.ts), so committed messages only.
   * `dropped` tells whether the index dropped keys for its bound (a miss may then be one).
   */
  async last(key: Uint8Array): Promise<{ message: PartitionMessage | undefined; dropped: boolean }> {
    const dropped = this.keyIndex.evicted > 0
    const offset = this.keyIndex.get(key)
    if (offset === undefined) return { message: undefined, dropped }
    // Applied records reach the partition log just after (pipelined apply): wait for it.
    if (offset >= this.writtenNext) await this.openLog().waitForNew(offset - 1, AbortSignal.timeout(5000))
    const [m] = await this.read(offset, { maxRecords: 1 })
    return { message: m?.offset === offset ? m : undefined, dropped }
  }

  /** Whether this replica leads with a current view (partition-cas.ts), or the error to send. */
  private leaderView(): 'ready' | 'wait' | NotLeaderError {
    const d = this.driver
    if (this.state !== 'running' || d === undefined) return new NotLeaderError(null)
    if (d.role !== 'leader') return new NotLeaderError(d.leader)
    const { commit, term } = d.status()
    try {
      if (d.storage?.term(commit) !== term) return 'wait'
    } catch {
      return 'wait' // commit index past the persisted log, or compacted: not current yet
    }
    return this.appliedIndex >= commit ? 'ready' : 'wait'
  }

  /**
   * Committed messages with offset >= `fromOffset`, in offset order, up to `maxBytes`
   * (default 1 MiB; the first message is returned even when larger) or `maxRecords`.
   * Below `earliest()` reading starts at the earliest message; past the end it returns [].
   */
  async read(
    fromOffset: number,
    opts: { maxBytes?: number; maxRecords?: number } = {},
  ): Promise<PartitionMessage[]> {
    return (await this.readVisible(fromOffset, opts)).messages
  }

  /**
   * `read`, leaving out messages purged by key (purged-keys.ts): when a read finds only purged
   * ones it reads on (a few times), so `messages` is empty only near the end; `scanned` is the
   * offset after the last record looked at (`fromOffset` when none), where a reader goes on.
   */
  async readVisible(
    fromOffset: number,
    opts: { maxBytes?: number; maxRecords?: number } = {},
  ): Promise<{ messages: PartitionMessage[]; scanned: number }> {
    const log = this.openLog()
    let recs = await log.read(fromOffset, opts)
    if (recs.length === 0) return { messages: [], scanned: fromOffset }
    if (this.purgedKeys.size === 0) return { messages: recs.map(toMessage), scanned: recs.at(-1)!.offset + 1 }
    for (let round = 1; ; round++) {
      const scanned = recs.at(-1)!.offset + 1
      const kept = recs.filter((r) => !this.purgedKeys.hides(r.key, r.offset))
      if (kept.length > 0 || round >= 8) return { messages: kept.map(toMessage), scanned }
      recs = await log.read(scanned, opts)
      if (recs.length === 0) return { messages: [], scanned }
    }
  }

  /**
   * Resolves with the latest committed offset once it exceeds `afterOffset` (at once if it
   * already does). Rejects with `AbortedError` on `signal`, `LogClosedError` on stop.
   */
  waitForNew(afterOffset: number, signal?: AbortSignal): Promise<number> {
    return this.openLog().waitForNew(afterOffset, signal)
  }

  /** First committed offset whose timestamp is >= `timestamp` (undefined: none yet). */
  offsetForTime(timestamp: number): Promise<number | undefined> {
    return this.openLog().offsetForTime(timestamp)
  }

  /** Applies retention and compaction now (they also run every 10 s when configured). */
  maintain(): Promise<void> {
    return this.openLog().maintain()
  }

  /**
   * Purges the messages below `before` (all of them when it is `PURGE_ALL`) on every replica:
   * proposes a purge entry (purge.ts) on the leader and resolves, once it is committed and
   * applied here, with the partition's first offset. Rejects with `NotLeaderError` (nothing
   * proposed) or, outcome unknown, `AbortedError`/`LeadershipLostError`.
   */
  async purge(before: number): Promise<number> {
    const driver = this.driver
    if (this.state !== 'running' || driver === undefined)
      throw new AbortedError('partition replica is not running')
    if (driver.role !== 'leader') throw new NotLeaderError(driver.leader)
    const { index } = await driver.propose(encodePurgeEntry(before))
    if (this.appliedIndex < index)
      throw new AbortedError(`purge entry ${index} committed but not applied here`)
    await this.purged // the start offset is written by the (pipelined) apply
    return this.openLog().earliestOffset()
  }

  /**
   * Purges the messages of `key` below `before` (`PURGE_ALL`: all of them) on every replica:
   * proposes a purge-by-key entry (purge.ts) on the leader and resolves, once it is committed
   * and applied here (the mark durable), with the partition's first offset. Rejects with
   * `InvalidArgumentError` when the replica already remembers `purgedKeysMax` other keys,
   * `NotLeaderError` (nothing proposed) or, outcome unknown, `AbortedError`.
   */
  async purgeKey(before: number, key: Uint8Array): Promise<number> {
    const driver = this.driver
    if (this.state !== 'running' || driver === undefined)
      throw new AbortedError('partition replica is not running')
    if (driver.role !== 'leader') throw new NotLeaderError(driver.leader)
    const full = () =>
      new InvalidArgumentError(
        `key: partition remembers ${this.purgedKeys.max} purged keys already; ` +
          'a purge before an offset (or retention) past them frees room',
      )
    if (!this.purgedKeys.accepts(key, this.openLog().earliestOffset())) throw full()
    const { index } = await driver.propose(encodePurgeKeyEntry(before, key))
    if (this.appliedIndex < index)
      throw new AbortedError(`purge entry ${index} committed but not applied here`)
    if (!this.purgedKeys.accepts(key, this.openLog().earliestOffset())) throw full()
    return this.openLog().earliestOffset()
  }

  /** Replaces the retention limits (a stream update); enforced from the next maintenance pass. */
  setRetention(retention: { maxAge?: number; maxBytes?: number; maxMessages?: number }): void {
    this.openLog().setRetention(retention, MAINTENANCE_MS)
  }

  /** Lowest offset that may still be present. */
  earliest(): number {
    return this.openLog().earliestOffset()
  }

  /** Highest committed offset applied on this replica; -1 when empty. */
  latest(): number {
    return this.openLog().latestOffset()
  }

  /** Current leader as this member knows it (null: none known). */
  get leader(): NodeId | null {
    return this.driver?.leader ?? null
  }

  /** Current role in the partition's raft group. */
  get role(): Role {
    return this.driver?.role ?? 'follower'
  }

  /** Feeds bytes received from peer `from` to the raft group; never throws. */
  receive(from: NodeId, bytes: Uint8Array): void {
    this.driver?.receive(from, bytes)
  }

  /** What `start` found in the partition log. */
  get recovery(): PartitionRecovery {
    return this.recoveryReport
  }

  /** Last raft index applied to the partition log, next offset, and the driver's status. */
  status(): {
    appliedIndex: number
    nextOffset: number
    pendingMessages: number
    raft: ReturnType<ReplicaDriver['status']>
  } {
    if (this.driver === undefined) throw new AbortedError('partition replica not started')
    return {
      appliedIndex: this.appliedIndex,
      nextOffset: this.nextOffset,
      pendingMessages: this.pendingMessages,
      raft: this.driver.status(),
    }
  }

  /** The driver (campaign, transfer, diagnostics, tests). */
  get raft(): ReplicaDriver | undefined {
    return this.driver
  }

  private openLog(): Log {
    if (this.log === undefined) throw new AbortedError('partition replica not started')
    return this.log
  }

  /** Turns queued publishes into raft proposals, whole publish calls per entry. */
  private flush(): void {
    this.flushScheduled = false
    const driver = this.driver
    const maxMsgs = this.opts.maxBatchMessages ?? DEFAULTS.maxBatchMessages
    const maxBytes = this.opts.maxBatchBytes ?? DEFAULTS.maxBatchBytes
    while (this.queue.length > 0) {
      let n = 1
      let msgs = this.queue[0]!.messages.length
      let bytes = this.queue[0]!.bytes
      while (n < this.queue.length) {
        const q = this.queue[n]!
        if (msgs + q.messages.length > maxMsgs || bytes + q.bytes > maxBytes) break
        msgs += q.messages.length
        bytes += q.bytes
        n++
      }
      const group = this.queue.splice(0, n)
      // queued and uncommitted messages count against maxPendingMessages, whatever the ack
      const release = () => {
        this.pendingMessages -= msgs
        for (const p of group) if (p.keys !== undefined) this.cas.end(p.keys)
      }
      if (driver === undefined || this.state !== 'running') {
        release()
        for (const p of group) p.reject(new AbortedError('partition replica stopped'))
        continue
      }
      const data = encodeBatch(group.flatMap((p) => p.messages))
      this.inflight++
      const { persisted, committed } = driver.proposeWithPersist(data)
      if (group.some((p) => p.ack === 'leader')) {
        persisted
          .then(({ index, term }) => {
            if (index <= this.appliedIndex) return // already applied: `committed` gives the real offsets
            // With message ids in play, duplicates change offsets: resolve at commit instead.
            if (group.some((p) => p.messages.some((m) => m.headers?.[MSG_ID_HEADER] !== undefined))) return
            let off = this.predictOffset(index, term, msgs)
            if (!Number.isFinite(off)) return
            for (const p of group) {
              if (p.ack === 'leader') p.resolve({ firstOffset: off, lastOffset: off + p.messages.length - 1 })
              off += p.messages.length
            }
          })
          .catch((err) => {
            for (const p of group) if (p.ack === 'leader') p.reject(err)
          })
      }
      committed
        .then(({ index }) => {
          const offsets = this.spans.get(index)
          for (const k of this.spans.keys()) {
            if (k > index) break
            this.spans.delete(k)
          }
          if (offsets === undefined) {
            const err = new AbortedError(`entry ${index} committed but was not applied as a batch`)
            for (const p of group) p.reject(err)
            return
          }
          let i = 0
          for (const p of group) {
            const mine = offsets.slice(i, i + p.messages.length)
            i += p.messages.length
            const real = mine.map((o) => (o < 0 ? -1 - o : o))
            const res: PublishResult = { firstOffset: real[0]!, lastOffset: real[real.length - 1]! }
            if (mine.every((o) => o < 0)) res.duplicate = true
            p.resolve(res)
          }
        })
        .catch((err) => {
          for (const p of group) p.reject(err) // no-op for 'leader' publishes already resolved
        })
        .finally(() => {
          release()
          if (--this.inflight === 0) this.spans.clear()
        })
    }
  }

  /**
   * The first offset the messages of entry `index` (proposed by this leader in `term`, just
   * fsynced, holding `count` messages) will get when applied: the applied `nextOffset` plus
   * the messages of every data entry between the applied index and `index` in this leader's
   * raft log (uncommitted ones and earlier terms' alike; no-ops, conf changes and payloads
   * that do not decode count zero, exactly as `apply` treats them). A leader's log is never
   * overwritten while it leads, and every later leader's log extends it if the entry commits,
   * so the prediction is what `apply` will assign. Scans each entry once per term (cached).
   * Throws `LeadershipLostError` if the log no longer holds the entry at `term`.
   */
  private predictOffset(index: number, term: number, count: number): number {
    const store = this.driver?.storage
    const lost = () =>
      new LeadershipLostError(
        `entry ${index} of term ${term} is no longer in ${this.id}'s log; outcome unknown`,
      )
    if (store === undefined) throw lost()
    let termAt: number
    try {
      termAt = store.term(index)
    } catch {
      throw lost()
    }
    if (termAt !== term) throw lost()
    let from = this.appliedIndex + 1
    let next = this.nextOffset
    const c = this.predicted
    if (c !== undefined && c.term === term && c.index >= this.appliedIndex && c.index < index) {
      from = c.index + 1
      next = c.next
    }
    while (from < index) {
      const ents = store.entries(from, index, 4 << 20)
      for (const e of ents) next += dataMessages(e)
      from += ents.length
    }
    this.predicted = Number.isFinite(next) ? { term, index, next: next + count } : undefined
    return next
  }

  /** The state machine: committed entries, in index order, possibly re-delivered. */
  private apply(entries: Entry[]): Promise<void> {
    // Pipelined (driver `pipelineApply`): offsets are assigned and publishes can resolve now;
    // the partition log write follows in order (the raft log is the write-ahead log).
    const log = this.openLog()
    const run = entriesToRecords(entries, this.appliedIndex, this.nextOffset, this.inflight > 0, this.dedupe)
    this.skippedEntries += run.skipped
    this.nextOffset = run.nextOffset
    this.appliedIndex = run.appliedIndex
    for (const [i, first] of run.spans) this.spans.set(i, first)
    for (const r of run.records)
      if (r.key !== undefined) this.keyIndex.record(r.key, r.offset, r.value.length === 0)
    if (run.purgeTo >= 0) this.keyIndex.dropBelow(run.purgeTo)
    if (run.keyPurges.length > 0) this.applyKeyPurges(run.keyPurges, log.earliestOffset())
    let bytes = 0
    for (const e of entries) bytes += e.data.length
    this.planner.applied(run.appliedIndex, run.nextOffset, bytes)
    let written = run.records.length > 0 ? log.appendAt(run.records).then(() => {}) : Promise.resolve()
    if (run.purgeTo >= 0) {
      const to = run.purgeTo
      // After the run's records: the start is durable before the apply completes.
      written = written.then(async () => {
        await log.setStartOffset(to)
      })
      this.purged = written
    }
    const next = run.nextOffset
    void written.then(
      () => {
        if (next > this.writtenNext) this.writtenNext = next
      },
      () => {},
    )
    this.maybeCompact()
    if (this.cas.size > 0) this.cas.run()
    return written
  }

  /**
   * Records purges by key and writes them durably before any later record is queued on the
   * partition log (synchronously: rare admin entries), so a crash either keeps them or
   * restarts below their entries, which are then applied again.
   */
  private applyKeyPurges(purges: Array<{ key: Uint8Array; below: number }>, start: number): void {
    let changed = false
    for (const p of purges) {
      if (!this.purgedKeys.record(p.key, p.below, start)) continue
      this.keyIndex.dropKeyBelow(p.key, p.below)
      changed = true
    }
    if (changed) this.purgedKeys.saveSync(this.opts.dir)
  }

  /**
   * Compacts the raft log when the planner says so: the partition log is fdatasynced first
   * (everything applied so far was queued on it before), so the messages of every entry the
   * snapshot covers are durable in the partition log before the raft log lets them go.
   */
  private maybeCompact(): void {
    const driver = this.driver
    const store = driver?.storage
    if (this.compacting !== undefined || driver === undefined || store === undefined) return
    const p = this.planner.due(store.snapshot().index, store.confState().index)
    if (p === undefined) return
    this.compacting = (async () => {
      try {
        await this.openLog().flush()
        if (this.state !== 'running') return
        await driver.compact(p.index, encodePartitionSnapshot(p.next, this.purgedKeys.entries()))
        this.planner.compacted(p)
        this.compactions++
      } catch (err) {
        if (this.state === 'running') this.opts.driver?.onError?.(err)
      } finally {
        this.compacting = undefined
      }
    })()
  }

  /**
   * Records from `fromOffset` for a replica catching up (`s.copy`): raw, with their offsets,
   * timestamps, terms and headers, up to `maxBytes`; `end` is where this replica's written
   * partition log ends.
   */
  async copyOut(fromOffset: number, maxBytes: number): Promise<CopyChunk> {
    const log = this.openLog()
    const end = this.writtenNext
    const records = fromOffset < end ? await log.read(fromOffset, { maxBytes }) : []
    return { earliest: log.earliestOffset(), end, records }
  }

  /**
   * Brings the partition log to a snapshot (installed from the leader, or found on start
   * ahead of the partition log): copies the records it lacks from other replicas, then
   * rebuilds the de-duplication window from the log. Resolves once the log holds every
   * message the snapshot covers; rejects only when stopped.
   */
  private async restore(snap: Snapshot): Promise<void> {
    if (snap.index <= this.appliedIndex) return
    const { nextOffset: target, purgedKeys } = decodePartitionSnapshot(snap.data)
    const log = this.openLog()
    if (this.nextOffset > target)
      throw new RaftInvariantError(
        `partition log ends at ${this.nextOffset}, past snapshot ${snap.index}'s next offset ${target}`,
      )
    if (this.nextOffset < target) {
      const copy = this.opts.copy
      if (copy === undefined)
        throw new InvalidArgumentError(`snapshot at raft index ${snap.index} needs a copy source`)
      const peers = () => {
        const leader = this.driver?.leader
        const all = [leader, ...snap.confState.voters, ...(this.driver?.storage?.confState().voters ?? [])]
        return [...new Set(all)].filter((p): p is string => typeof p === 'string' && p !== this.id)
      }
      if (peers().length === 0)
        throw new CorruptReplicaStateError(
          join(this.opts.dir, 'data'),
          `offsets ${this.nextOffset}..${target - 1} are missing, the raft log no longer holds them, ` +
            'and the partition has no other replica to copy them from',
        )
      const started = Date.now()
      const span = { fromOffset: this.nextOffset, toOffset: target, snapshotIndex: snap.index }
      this.opts.logger?.info(span, 'catch-up by copy started: records the raft log no longer holds')
      await copyRange({
        log,
        from: this.nextOffset,
        target,
        peers,
        source: copy,
        signal: this.stopping.signal,
        onSourceError: (peer, err) =>
          this.opts.logger?.debug({ ...span, peer, err: String(err) }, 'catch-up by copy: a source failed'),
      })
      this.opts.logger?.info({ ...span, ms: Date.now() - started }, 'catch-up by copy finished')
    }
    this.nextOffset = target
    this.writtenNext = Math.max(this.writtenNext, target)
    this.appliedIndex = snap.index
    this.predicted = undefined
    this.planner.reset(snap.index, target)
    this.dedupe = new DedupeWindow(this.dedupe.windowMs)
    await rebuildDedupe(log, this.dedupe)
    if (purgedKeys.length > 0) {
      for (const [k, below] of purgedKeys) this.purgedKeys.record(k, below, log.earliestOffset())
      this.purgedKeys.saveSync(this.opts.dir)
    }
    await rebuildKeyIndex(log, this.keyIndex, this.hidden)
  }
}

/** The `expectedRevision` of a call (only alone, on a keyed message), or undefined. */
function checkExpected(messages: readonly PublishMessage[]): number | undefined {
  let expected: number | undefined
  messages.forEach((m, i) => {
    const e = m.expectedRevision
    if (e === undefined) return
    if (!Number.isSafeInteger(e) || e < -1)
      throw new InvalidArgumentError(
        `messages[${i}].expectedRevision must be an offset or -1 (absent), got ${e}`,
      )
    if (messages.length !== 1 || m.key === undefined)
      throw new InvalidArgumentError(
        `messages[${i}].expectedRevision needs a keyed message alone in its call`,
      )
    expected = e
  })
  return expected
}
