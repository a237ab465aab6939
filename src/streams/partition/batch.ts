/**
 * Encoding of the two things a partition replica writes besides user bytes:
 *
 * - the **batch** carried by one raft data entry: the messages of one or more publish calls,
 *   with their timestamps fixed by the leader so every replica applies identical records;
 * - the **position header** (`px.ri`) on every record of the partition log: the raft index of
 *   the entry the record came from, and its position in that entry's batch. On restart the
 *   last record tells which raft index was applied last and whether its batch is complete.
 *
 * Batch layout (big-endian): `u8 version (1) | u32 count | count × message`, a message being
 * `u8 flags (bit 0: key) | u64 timestamp | [u32 len, key] | u32 len, value | u16 headers |
 * headers × (u16 len, name UTF-8 | u32 len, value)`.
 */
import { InvalidArgumentError } from '../../errors.js'
import type { RecordHeaders } from '../../log/index.js'
import { BinaryReader, BinaryWriter, uninitializedBytes } from '../../util/binary.js'

const BATCH_VERSION = 1
const FLAG_KEY = 1

/** Header names starting with this prefix are reserved for Plexus (refused in publishes). */
export const RESERVED_HEADER_PREFIX = 'px.'
/** Name of the header holding a message's publish id (`msgId`) on partition records. */
export const MSG_ID_HEADER = 'px.id'
/** Name of the header holding a message's topic on partition records. */
export const TOPIC_HEADER = 'px.topic'
/** Name of the position header on partition records. */
export const POSITION_HEADER = 'px.ri'

/** A message as stored in a batch: timestamp fixed, bytes only. */
export interface BatchMessage {
  key?: Uint8Array
  value: Uint8Array
  headers?: RecordHeaders
  timestamp: number
}

/** Where a partition record came from: raft entry `index`, message `pos` of `count`. */
export interface RecordPosition {
  index: number
  pos: number
  count: number
}

/** Encoded size of one message inside a batch (for batching limits). */
export function messageSize(m: BatchMessage): number {
  let n = 1 + 8 + (m.key ? 4 + m.key.length : 0) + 4 + m.value.length + 2
  const hs = m.headers
  if (hs) for (const k in hs) n += 2 + Buffer.byteLength(k) + 4 + hs[k]!.length
  return n
}

/** Encodes messages (at least one) as one raft entry payload. */
export function encodeBatch(messages: readonly BatchMessage[]): Uint8Array {
  if (messages.length === 0) throw new InvalidArgumentError('a batch holds at least one message')
  let size = 5
  for (const m of messages) size += messageSize(m)
  // Exactly `size` bytes are written; kept as the raft entry's data (hence a buffer of its own).
  const w = new BinaryWriter(0, uninitializedBytes(size, true))
  w.u8(BATCH_VERSION).u32(messages.length)
  for (const m of messages) {
    w.u8(m.key ? FLAG_KEY : 0).u64(m.timestamp)
    if (m.key) w.bytes(m.key)
    w.bytes(m.value)
    const hs = m.headers
    if (hs === undefined) w.u16(0)
    else {
      let n = 0
      for (const _ in hs) n++
      w.u16(n)
      for (const k in hs) w.str(k).bytes(hs[k]!)
    }
  }
  return w.finish()
}

/**
 * Decodes a raft entry payload. The returned bytes are views into `data`. Throws
 * `DecodeError` (from util/binary) on malformed input.
 */
export function decodeBatch(data: Uint8Array): BatchMessage[] {
  const r = new BinaryReader(data)
  const version = r.u8('batch version')
  if (version !== BATCH_VERSION) throw new InvalidArgumentError(`unknown batch version ${version}`)
  const count = r.u32('batch count')
  if (count === 0 || count > r.remaining) throw new InvalidArgumentError(`implausible batch count ${count}`)
  const out: BatchMessage[] = new Array(count)
  for (let i = 0; i < count; i++) {
    const flags = r.u8('flags')
    const timestamp = r.u64('timestamp')
    const key = flags & FLAG_KEY ? r.bytes('key') : undefined
    const value = r.bytes('value')
    const nh = r.u16('header count')
    let headers: RecordHeaders | undefined
    if (nh > 0) {
      headers = {}
      for (let h = 0; h < nh; h++) {
        const name = r.str('header name')
        headers[name] = r.bytes('header value')
      }
    }
    const m: BatchMessage = { value, timestamp }
    if (key) m.key = key
    if (headers) m.headers = headers
    out[i] = m
  }
  r.end('batch')
  return out
}

/** The 16-byte value of the position header. */
export function encodePosition(p: RecordPosition): Uint8Array {
  // One per stored message: written directly (a 16-byte array lives on the JS heap).
  const b = new Uint8Array(16)
  const hi = Math.floor(p.index / 0x100000000)
  const lo = p.index >>> 0
  b[0] = hi >>> 24
  b[1] = hi >>> 16
  b[2] = hi >>> 8
  b[3] = hi
  b[4] = lo >>> 24
  b[5] = lo >>> 16
  b[6] = lo >>> 8
  b[7] = lo
  b[8] = p.pos >>> 24
  b[9] = p.pos >>> 16
  b[10] = p.pos >>> 8
  b[11] = p.pos
  b[12] = p.count >>> 24
  b[13] = p.count >>> 16
  b[14] = p.count >>> 8
  b[15] = p.count
  return b
}

/** Decodes a position header value; undefined when absent or malformed. */
export function decodePosition(v: Uint8Array | undefined): RecordPosition | undefined {
  if (v === undefined || v.length !== 16) return undefined
  const r = new BinaryReader(v)
  const p = { index: r.u64(), pos: r.u32(), count: r.u32() }
  return p.index > 0 && p.pos < p.count ? p : undefined
}
