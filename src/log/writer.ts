/**
 * The single writer of a log: a queue of appends and exclusive tasks run strictly in call
 * order. Appends waiting while a write+fsync is in flight are gathered into the next round:
 * one buffer, one synced write for all of them (group commit). Offsets are assigned in queue
 * order, so they follow the order of the `append` calls.
 *
 * Under fsync 'always' a round is one `pwrite` through the segment's O_DSYNC handle (durable
 * when it returns: the same guarantee as write + fdatasync, one thread-pool round trip
 * instead of two). Index files are not written per round (see `Segment.flushIndexes`).
 */
import { InvalidArgumentError } from '../errors.js'
import { INLINE_WRITE_BYTES, MAX_RELATIVE_OFFSET } from './constants.js'
import type { LogCore } from './core.js'
import { LogClosedError } from './errors.js'
import { writeFully, writeFullySync } from './fsutil.js'
import { type LogObserver, logObserverFor } from './observers.js'
import { encodeRecord } from './record.js'
import { type Segment, SYNC_WRITES } from './segment.js'
import type { AppendRecord, ReplicaRecord } from './types.js'

/** Offsets given to one append call: every offset from first to last (dense for `append`). */
export interface AppendResult {
  firstOffset: number
  lastOffset: number
}

interface AppendReq {
  kind: 'append'
  records: readonly AppendRecord[]
  sizes: number[]
  bytes: number
  explicit: boolean
  resolve: (r: AppendResult) => void
  reject: (e: unknown) => void
  result?: AppendResult
}

interface TaskReq {
  kind: 'task'
  run: () => Promise<unknown>
  resolve: (v: unknown) => void
  reject: (e: unknown) => void
}

type Req = AppendReq | TaskReq

/** Group-commit writer bound to one log core. */
export class Writer {
  private queue: Req[] = []
  private head = 0
  private running = false
  private scratch: Buffer
  /** Second buffer: holds the write in flight while the next round encodes into `scratch`. */
  private spare: Buffer
  /** The pipelined write of the previous round (fsync 'never'/'interval'), until it completes. */
  private inflight: Promise<void> | undefined
  /** Bytes written but not yet fdatasync'ed (fsync 'interval' / 'never'). */
  dirty = false
  private readonly always: boolean

  /** Told the duration of each synced write (metrics, stall logs; observers.ts). */
  private readonly observer: LogObserver | undefined

  constructor(private readonly core: LogCore) {
    this.always = core.opts.fsync === 'always'
    this.observer = logObserverFor(core.opts.dir)
    this.scratch = Buffer.allocUnsafe(64 * 1024)
    this.spare = Buffer.allocUnsafe(64 * 1024)
  }

  /** Waits for the pipelined write in flight, if any. */
  private async drain(): Promise<void> {
    while (this.inflight) await this.inflight
  }

  /** Queues an append; resolves after it is written (and synced under 'always'). */
  append(
    records: readonly AppendRecord[],
    sizes: number[],
    bytes: number,
    explicit: boolean,
  ): Promise<AppendResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ kind: 'append', records, sizes, bytes, explicit, resolve, reject })
      this.kick()
    })
  }

  /** Queues `run` to execute alone, after everything queued before it. */
  task<T>(run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ kind: 'task', run, resolve: resolve as (v: unknown) => void, reject })
      this.kick()
    })
  }

  private kick(): void {
    if (this.running) return
    this.running = true
    // Start on the next macrotask, so appenders woken by the previous round (their
    // continuations are microtasks) join this round instead of splitting it; with
    // `eagerWrites` (one appender awaiting each append) as soon as the caller's turn ends.
    if (this.core.opts.eagerWrites) queueMicrotask(() => void this.loop())
    else setImmediate(() => void this.loop())
  }

  private async loop(): Promise<void> {
    const max = this.core.opts.maxWriteBytes
    while (this.head < this.queue.length) {
      const first = this.queue[this.head]!
      if (first.kind === 'task') {
        this.head++
        await this.drain()
        try {
          first.resolve(await first.run())
        } catch (err) {
          first.reject(err)
        }
        this.compactQueue()
        continue
      }
      const batch: AppendReq[] = []
      let bytes = 0
      while (this.head < this.queue.length) {
        const r = this.queue[this.head]!
        if (r.kind !== 'append' || (batch.length > 0 && bytes + r.bytes > max)) break
        batch.push(r)
        bytes += r.bytes
        this.head++
      }
      this.compactQueue()
      if (this.core.failure || this.core.closed) {
        const err = this.core.failure ?? new LogClosedError('the log is closed')
        for (const r of batch) r.reject(err)
        continue
      }
      try {
        await this.writeBatch(batch, bytes)
      } catch (err) {
        // A failed write or fsync leaves the file in an unknown state: refuse further appends.
        this.core.failure = new Error(`commit log write failed: ${(err as Error).message}`, { cause: err })
        for (const r of batch) r.reject(this.core.failure)
      }
    }
    this.running = false
  }

  private compactQueue(): void {
    if (this.head === this.queue.length) {
      this.queue = []
      this.head = 0
    } else if (this.head > 1024) {
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
  }

  /**
   * Encodes a round into one buffer and writes it. Under 'always' it writes durably (O_DSYNC,
   * or write + fdatasync) and resolves before returning. Otherwise the write is left in
   * flight (pipelined) and the next round encodes into the other buffer meanwhile; writes
   * still happen one at a time, in order, and each round resolves when its own write
   * completes.
   */
  private async writeBatch(batch: AppendReq[], bytes: number): Promise<void> {
    const core = this.core
    const { segmentBytes, segmentMs, now: clock } = core.opts
    let seg = core.active
    const now = clock()
    if (segmentMs > 0 && seg.size > 0 && seg.firstAppendAt >= 0 && now - seg.firstAppendAt >= segmentMs) {
      await this.drain()
      await core.roll()
      seg = core.active
    }
    if (this.scratch.length < bytes) {
      this.scratch = Buffer.allocUnsafe(
        Math.max(bytes, Math.min(this.scratch.length * 2, core.opts.maxWriteBytes)),
      )
    }
    const buf = this.scratch
    let p = 0
    let segPos = seg.size
    const done: AppendReq[] = []
    for (const req of batch) {
      const recs = req.records
      const n = recs.length
      if (req.explicit) {
        const reason = checkExplicit(recs as readonly ReplicaRecord[], core.nextOffset, seg)
        if (reason) {
          req.reject(new InvalidArgumentError(reason))
          continue
        }
      }
      let ix = seg.indexer!
      const firstOffset = req.explicit ? (recs[0] as ReplicaRecord).offset : core.nextOffset
      for (let i = 0; i < n; i++) {
        const r = recs[i]!
        const size = req.sizes[i]!
        const off = req.explicit ? (r as ReplicaRecord).offset : core.nextOffset
        if (segPos > 0 && (segPos + size > segmentBytes || off - seg.baseOffset > MAX_RELATIVE_OFFSET)) {
          // Roll between records: what is encoded so far goes to the old segment first.
          await this.drain()
          if (p > 0) await this.write(seg, buf, p)
          p = 0
          await core.roll()
          seg = core.active
          segPos = 0
          ix = seg.indexer!
        }
        if (seg.firstAppendAt < 0) seg.firstAppendAt = now
        const ts = r.timestamp ?? now
        const term = r.term ?? 0
        encodeRecord(buf, p, size, r, off, ts, term)
        ix.track(off, ts, term, segPos, size)
        segPos += size
        p += size
        core.nextOffset = off + 1
        core.lastTerm = term
      }
      req.result = { firstOffset, lastOffset: core.nextOffset - 1 }
      done.push(req)
    }
    if (done.length === 0) return
    const last = core.nextOffset - 1
    if (this.always) {
      // One synced write (O_DSYNC): durable when it returns. Without O_DSYNC: write, fdatasync.
      const t0 = this.observer ? performance.now() : 0
      if (p > 0) await this.write(seg, buf, p)
      if (!SYNC_WRITES) await (await seg.handle()).datasync()
      core.stats.fsyncs++
      this.observer?.synced((performance.now() - t0) / 1000)
      seg.visibleSize = seg.size
      this.finish(done, last, true)
      return
    }
    await this.drain()
    if (core.failure) {
      for (const r of done) r.reject(core.failure)
      return
    }
    // Hand `buf` to the write in flight; the next round encodes into the other buffer.
    this.scratch = this.spare
    this.spare = buf
    const flight = this.writeInFlight(seg, buf, p, done, last)
    this.inflight = flight
    void flight.then(() => {
      if (this.inflight === flight) this.inflight = undefined
    })
  }

  /** The pipelined part of a round: write, then resolve. Never rejects (failures are recorded). */
  private async writeInFlight(
    seg: Segment,
    buf: Buffer,
    len: number,
    done: AppendReq[],
    last: number,
  ): Promise<void> {
    const core = this.core
    try {
      if (len > 0) await this.write(seg, buf, len)
      this.dirty = true
      this.finish(done, last, false)
    } catch (err) {
      core.failure ??= new Error(`commit log write failed: ${(err as Error).message}`, { cause: err })
      for (const r of done) r.reject(core.failure)
    }
  }

  /** Publishes up to `last` and resolves a round's appends. */
  private finish(done: AppendReq[], last: number, durable: boolean): void {
    const core = this.core
    core.publish(last, durable)
    for (const r of done) {
      core.stats.appends++
      core.stats.records += r.records.length
      core.stats.bytes += r.bytes
      r.resolve(r.result!)
    }
  }

  /**
   * Writes `buf[0, len)` at the end of `seg` (under 'always' through its O_DSYNC handle: durable
   * when this resolves; otherwise up to `INLINE_WRITE_BYTES` with a blocking `pwrite`, no
   * thread-pool round trip). The position is reserved before the first await, so the caller
   * may encode the next round meanwhile.
   */
  private async write(seg: Segment, buf: Buffer, len: number): Promise<void> {
    const pos = seg.size
    seg.size += len
    const fh = this.always && SYNC_WRITES ? await seg.syncHandle() : await seg.handle()
    if (!this.always && len <= INLINE_WRITE_BYTES) writeFullySync(fh.fd, buf, 0, len, pos)
    else await writeFully(fh, buf, 0, len, pos)
    if (!this.always) seg.visibleSize = pos + len
    this.core.stats.writes++
  }

  /** fdatasyncs the active segment if anything is unsynced (interval policy, close). */
  async sync(): Promise<void> {
    await this.drain()
    await this.core.pendingSeal
    const seg = this.core.active
    await seg.flushIndexes()
    if (!this.dirty) return
    this.dirty = false
    await (await seg.handle()).datasync()
    this.core.stats.fsyncs++
    this.core.publish(this.core.nextOffset - 1, true)
  }
}

/** Why explicit offsets cannot be appended now, if they cannot. */
function checkExplicit(recs: readonly ReplicaRecord[], next: number, seg: Segment): string | undefined {
  let prev = next - 1
  for (let i = 0; i < recs.length; i++) {
    const o = recs[i]!.offset
    if (!Number.isSafeInteger(o) || o <= prev) {
      return `records[${i}].offset ${o} must exceed ${prev} (offsets strictly increase from the log's next offset ${next})`
    }
    prev = o
  }
  if (seg.size === 0 && prev - seg.baseOffset > MAX_RELATIVE_OFFSET) {
    return `records jump more than ${MAX_RELATIVE_OFFSET} offsets past the segment base`
  }
  return undefined
}
