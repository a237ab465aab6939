/**
 * Partition catch-up by copy: a replica whose Raft group was compacted past what its partition
 * log holds (it installed a snapshot, or its partition log was lost) copies the missing
 * records, byte for byte with their offsets, timestamps, terms and headers, from another
 * replica of the same partition. Committed records are identical on every replica, so any
 * replica that has them is a good source. See docs/replication.md, "Compaction and
 * snapshot catch-up".
 *
 * `s.copy` call: `str stream | u64 createdIndex | u16 partition | u64 fromOffset | u32 maxBytes`;
 * reply `u8 status` — 0 ok: `u64 earliest | u64 end | u32 n | n × (u64 offset | u64 timestamp |
 * u64 term | u8 has key | [bytes key] | u16 n | n × (str, bytes) header | bytes value)`;
 * 3 not here (the peer hosts no replica of that partition incarnation).
 */
import { setTimeout as delay } from 'node:timers/promises'
import { AbortedError } from '../../errors.js'
import type { Log, LogRecord, ReplicaRecord } from '../../log/index.js'
import type { NodeId } from '../../raft/index.js'
import { BinaryReader, BinaryWriter, DecodeError } from '../../util/binary.js'
import {
  type PartitionRef,
  readRecordBody,
  readRef,
  recordBodySize,
  Status,
  writeRecordBody,
} from '../wire.js'

/** Bytes asked for per copy call. */
export const COPY_CHUNK_BYTES = 4 * 1024 * 1024
/** Most bytes a replica serves per copy call. */
export const COPY_MAX_BYTES = 8 * 1024 * 1024

/** A request for records of one partition from `fromOffset`. */
export interface CopyCall extends PartitionRef {
  fromOffset: number
  maxBytes: number
}

/** What a source replica holds, and records from the asked offset. */
export interface CopyChunk {
  /** Lowest offset the source may still hold (retention moves it forward). */
  earliest: number
  /** Every committed record below this offset is readable on the source. */
  end: number
  /** Records from the asked offset, in offset order (gaps: compaction or retention). */
  records: LogRecord[]
}

/**
 * Fetches one chunk from `peer` (undefined: the peer holds no replica of the partition).
 * Rejects on transport errors; `signal` aborts.
 */
export type CopySource = (
  peer: NodeId,
  fromOffset: number,
  maxBytes: number,
  signal: AbortSignal,
) => Promise<CopyChunk | undefined>

/** Encodes an `s.copy` call. */
export function encodeCopyCall(c: CopyCall): Uint8Array {
  const b = new BinaryWriter(64 + c.stream.length * 3)
  b.str(c.stream).u64(c.createdIndex).u16(c.partition).u64(c.fromOffset).u32(c.maxBytes)
  return b.finish().slice()
}

/** Decodes an `s.copy` call; throws `DecodeError` on malformed bytes. */
export function decodeCopyCall(bytes: Uint8Array): CopyCall {
  const r = new BinaryReader(bytes)
  const c = {
    ...readRef(r),
    fromOffset: r.u64('fromOffset'),
    maxBytes: r.u32('maxBytes'),
  }
  r.end('copy call')
  return c
}

/**
 * Keeps the longest prefix of `chunk`'s records whose encoded reply fits `maxBytes` (at
 * least one record): the records were read by their size on disk, and the caller sized
 * `maxBytes` to what one of its link frames can carry.
 */
export function fitCopyChunk(chunk: CopyChunk, maxBytes: number): CopyChunk {
  let size = COPY_REPLY_HEADER_BYTES
  let n = 0
  for (const m of chunk.records) {
    size += COPY_RECORD_OVERHEAD + recordBodySize(m)
    if (n > 0 && size > maxBytes) break
    n++
  }
  return n === chunk.records.length ? chunk : { ...chunk, records: chunk.records.slice(0, n) }
}

/** Bytes of an `s.copy` reply before its records, and per record besides its body. */
const COPY_REPLY_HEADER_BYTES = 32
const COPY_RECORD_OVERHEAD = 24

/** Encodes an `s.copy` reply (`undefined`: not here). */
export function encodeCopyReply(chunk: CopyChunk | undefined): Uint8Array {
  if (chunk === undefined) return new Uint8Array([Status.NotHere])
  let size = COPY_REPLY_HEADER_BYTES
  for (const m of chunk.records) size += COPY_RECORD_OVERHEAD + recordBodySize(m)
  const b = new BinaryWriter(size)
  b.u8(Status.Ok).u64(chunk.earliest).u64(chunk.end).u32(chunk.records.length)
  for (const m of chunk.records) {
    b.u64(m.offset).u64(m.timestamp).u64(m.term)
    writeRecordBody(b, m)
  }
  return b.finish()
}

/** Decodes an `s.copy` reply; throws `DecodeError` on malformed bytes. */
export function decodeCopyReply(bytes: Uint8Array): CopyChunk | undefined {
  const r = new BinaryReader(bytes)
  const status = r.u8('status')
  if (status === Status.NotHere) {
    r.end('copy reply')
    return undefined
  }
  if (status !== Status.Ok) throw new DecodeError(`unknown copy reply status ${status}`)
  const earliest = r.u64('earliest')
  const end = r.u64('end')
  const n = r.u32('record count')
  if (n > r.remaining) throw new DecodeError(`implausible record count ${n}`)
  const records: LogRecord[] = []
  let prev = -1
  for (let i = 0; i < n; i++) {
    const offset = r.u64('offset')
    if (offset <= prev) throw new DecodeError(`record offsets must increase (${offset} after ${prev})`)
    prev = offset
    const timestamp = r.u64('timestamp')
    const term = r.u64('term')
    records.push({ offset, timestamp, term, ...readRecordBody(r) })
  }
  r.end('copy reply')
  return { earliest, end, records }
}

/** Options of `copyRange`. */
export interface CopyRangeOptions {
  /** The partition log to append to (its next offset is `from`). */
  log: Log
  /** First offset missing here. */
  from: number
  /** Offset the partition log must reach (the snapshot's next offset). */
  target: number
  /** Replicas to copy from, best first; asked again on every round. */
  peers: () => NodeId[]
  source: CopySource
  signal: AbortSignal
  /** Pause between rounds in which no peer could help (ms; default 200, doubling to 2 s). */
  retryMs?: number
  /** Told when asking `peer` failed (the next peer is asked); for the log. */
  onSourceError?: (peer: NodeId, err: unknown) => void
}

/**
 * Copies the committed records in [`from`, `target`) into `log`, from whichever peer has them,
 * until done. Gaps a source has (compaction, retention) stay gaps. Retries while no peer can
 * serve (they may be starting, or not caught up yet); rejects only with `AbortedError` on
 * `signal` or with the log's append error. Ordering: records are appended in offset order,
 * each exactly once.
 */
export async function copyRange(o: CopyRangeOptions): Promise<void> {
  let next = o.from
  let pause = o.retryMs ?? 200
  const aborted = () => new AbortedError('partition catch-up stopped')
  while (next < o.target) {
    for (const peer of o.peers()) {
      for (;;) {
        if (o.signal.aborted) throw aborted()
        let chunk: CopyChunk | undefined
        try {
          chunk = await o.source(peer, next, COPY_CHUNK_BYTES, o.signal)
        } catch (err) {
          if (o.signal.aborted) throw aborted()
          o.onSourceError?.(peer, err)
          break // unreachable or failing: the next peer
        }
        if (chunk === undefined || chunk.end <= next) break // it has nothing we lack
        const recs: ReplicaRecord[] = []
        let beyond = false
        for (const r of chunk.records) {
          if (r.offset < next) continue
          if (r.offset >= o.target || r.offset >= chunk.end) {
            beyond = true
            break
          }
          recs.push({
            offset: r.offset,
            timestamp: r.timestamp,
            term: r.term,
            key: r.key,
            value: r.value,
            headers: r.headers,
          })
        }
        if (recs.length > 0) {
          await o.log.appendAt(recs)
          next = recs[recs.length - 1]!.offset + 1
        }
        // The source holds everything below `target` and has nothing more before it.
        if (chunk.end >= o.target && (beyond || recs.length === 0)) next = o.target
        if (next >= o.target) return
        if (recs.length === 0) break // no progress from this peer
      }
    }
    if (o.signal.aborted) throw aborted()
    await delay(pause, undefined, { signal: o.signal }).catch(() => {})
    pause = Math.min(pause * 2, 2000)
  }
}
