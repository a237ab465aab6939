/**
 * Encoding, verification and decoding of single records (layout in constants.ts). The hot
 * path writes straight into a caller-provided buffer: no per-record allocation besides the
 * CRC input view.
 */
import { crc32 } from 'node:zlib'
import { InvalidArgumentError } from '../errors.js'
import { DecodeError } from '../util/binary.js'
import {
  FLAG_HAS_KEY,
  HEADER_NAME_LENGTH_SIZE,
  HEADER_VALUE_LENGTH_SIZE,
  MAX_HEADERS,
  REC,
  RECORD_MAGIC,
} from './constants.js'
import type { AppendRecord, LogRecord, RecordHeaders } from './types.js'

const TWO_32 = 0x1_0000_0000

/** Writes a non-negative safe integer as u64 big-endian. */
export function writeU64(buf: Buffer, pos: number, v: number): void {
  buf.writeUInt32BE(Math.floor(v / TWO_32), pos)
  buf.writeUInt32BE(v >>> 0, pos + 4)
}

/** Reads a u64 big-endian; returns -1 when it is not a safe integer. */
export function readU64(buf: Buffer, pos: number): number {
  const hi = buf.readUInt32BE(pos)
  if (hi > 0x1fffff) return -1
  return hi * TWO_32 + buf.readUInt32BE(pos + 4)
}

function isU64(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

/**
 * Validates one record given to `append` and returns its encoded size. Throws
 * `InvalidArgumentError` naming the field (`records[i].value`, ...) on bad input.
 */
export function checkedRecordSize(r: AppendRecord, i: number, maxRecordBytes: number): number {
  if (r === null || typeof r !== 'object') throw new InvalidArgumentError(`records[${i}] must be an object`)
  if (!(r.value instanceof Uint8Array)) {
    throw new InvalidArgumentError(`records[${i}].value must be a Uint8Array`)
  }
  let size = REC.HEADER_SIZE + r.value.length
  if (r.key !== undefined) {
    if (!(r.key instanceof Uint8Array))
      throw new InvalidArgumentError(`records[${i}].key must be a Uint8Array`)
    size += r.key.length
  }
  if (r.timestamp !== undefined && !isU64(r.timestamp)) {
    throw new InvalidArgumentError(`records[${i}].timestamp must be a non-negative integer (ms)`)
  }
  if (r.term !== undefined && !isU64(r.term)) {
    throw new InvalidArgumentError(`records[${i}].term must be a non-negative integer`)
  }
  if (r.headers !== undefined) {
    if (r.headers === null || typeof r.headers !== 'object') {
      throw new InvalidArgumentError(`records[${i}].headers must be an object of Uint8Array values`)
    }
    let n = 0
    for (const name in r.headers) {
      const v = r.headers[name]
      if (!(v instanceof Uint8Array)) {
        throw new InvalidArgumentError(`records[${i}].headers.${name} must be a Uint8Array`)
      }
      const nameBytes = Buffer.byteLength(name, 'utf8')
      if (nameBytes > 0xffff)
        throw new InvalidArgumentError(`records[${i}] header name longer than 65535 bytes`)
      size += HEADER_NAME_LENGTH_SIZE + nameBytes + HEADER_VALUE_LENGTH_SIZE + v.length
      n++
    }
    if (n > MAX_HEADERS) throw new InvalidArgumentError(`records[${i}] has more than ${MAX_HEADERS} headers`)
  }
  if (size > maxRecordBytes) {
    throw new InvalidArgumentError(
      `records[${i}] is ${size} bytes encoded, over maxRecordBytes (${maxRecordBytes})`,
    )
  }
  return size
}

/**
 * Encodes `r` at `pos` of `buf` (which must have room for `size` bytes, as returned by
 * `checkedRecordSize`) with the given offset, timestamp and term, CRC included.
 */
export function encodeRecord(
  buf: Buffer,
  pos: number,
  size: number,
  r: AppendRecord,
  offset: number,
  timestamp: number,
  term: number,
): void {
  buf.writeUInt32BE(size, pos + REC.SIZE)
  buf[pos + REC.MAGIC] = RECORD_MAGIC
  buf[pos + REC.FLAGS] = r.key !== undefined ? FLAG_HAS_KEY : 0
  writeU64(buf, pos + REC.OFFSET, offset)
  writeU64(buf, pos + REC.TIMESTAMP, timestamp)
  writeU64(buf, pos + REC.TERM, term)
  const key = r.key
  const keyLen = key === undefined ? 0 : key.length
  buf.writeUInt32BE(keyLen, pos + REC.KEY_LENGTH)
  buf.writeUInt32BE(r.value.length, pos + REC.VALUE_LENGTH)
  let p = pos + REC.HEADER_SIZE
  if (key !== undefined) {
    buf.set(key, p)
    p += keyLen
  }
  buf.set(r.value, p)
  p += r.value.length
  let count = 0
  const headers = r.headers
  if (headers !== undefined) {
    for (const name in headers) {
      const v = headers[name]!
      const n = buf.write(name, p + HEADER_NAME_LENGTH_SIZE, 'utf8')
      buf.writeUInt16BE(n, p)
      p += HEADER_NAME_LENGTH_SIZE + n
      buf.writeUInt32BE(v.length, p)
      p += HEADER_VALUE_LENGTH_SIZE
      buf.set(v, p)
      p += v.length
      count++
    }
  }
  buf.writeUInt16BE(count, pos + REC.HEADER_COUNT)
  buf.writeUInt32BE(crc32(buf.subarray(pos + REC.CRC_START, pos + size)), pos + REC.CRC)
}

/** `verifyRecord` result: the record continues past the bytes available. */
export const INCOMPLETE = -1

/**
 * Checks the record at `pos` within `buf[pos, end)`: returns its size when complete and
 * valid, `INCOMPLETE` when its bytes run past `end` (the size field itself being plausible,
 * at most `maxSize`), or a string naming what is wrong.
 */
export function verifyRecord(buf: Buffer, pos: number, end: number, maxSize: number): number | string {
  if (end - pos < REC.HEADER_SIZE) return INCOMPLETE
  const size = buf.readUInt32BE(pos + REC.SIZE)
  if (size < REC.HEADER_SIZE) return `record size ${size} below the ${REC.HEADER_SIZE}-byte header`
  if (size > maxSize) return `record size ${size} exceeds ${maxSize}`
  if (pos + size > end) return INCOMPLETE
  if (buf[pos + REC.MAGIC] !== RECORD_MAGIC) return `bad magic byte ${buf[pos + REC.MAGIC]}`
  const crc = crc32(buf.subarray(pos + REC.CRC_START, pos + size))
  if (crc !== buf.readUInt32BE(pos + REC.CRC)) return 'checksum mismatch'
  const keyLen = buf.readUInt32BE(pos + REC.KEY_LENGTH)
  const valueLen = buf.readUInt32BE(pos + REC.VALUE_LENGTH)
  if (REC.HEADER_SIZE + keyLen + valueLen > size) return 'key and value overrun the record'
  if (readU64(buf, pos + REC.OFFSET) < 0 || readU64(buf, pos + REC.TIMESTAMP) < 0) return 'u64 out of range'
  if (readU64(buf, pos + REC.TERM) < 0) return 'u64 out of range'
  return size
}

/** Offset of the (verified) record at `pos`. */
export function recordOffset(buf: Buffer, pos: number): number {
  return readU64(buf, pos + REC.OFFSET)
}

/** Timestamp of the (verified) record at `pos`. */
export function recordTimestamp(buf: Buffer, pos: number): number {
  return readU64(buf, pos + REC.TIMESTAMP)
}

/** Term of the (verified) record at `pos`. */
export function recordTerm(buf: Buffer, pos: number): number {
  return readU64(buf, pos + REC.TERM)
}

/** Key bytes of the (verified) record at `pos`, a view; undefined when it has none. */
export function recordKey(buf: Buffer, pos: number): Buffer | undefined {
  if ((buf[pos + REC.FLAGS]! & FLAG_HAS_KEY) === 0) return undefined
  const start = pos + REC.HEADER_SIZE
  return buf.subarray(start, start + buf.readUInt32BE(pos + REC.KEY_LENGTH))
}

/** Value length of the (verified) record at `pos`. */
export function recordValueLength(buf: Buffer, pos: number): number {
  return buf.readUInt32BE(pos + REC.VALUE_LENGTH)
}

/**
 * Decodes the verified record at `pos`. Key, value and header values are views into `buf`.
 * Throws `DecodeError` when the header section is malformed.
 */
export function decodeRecord(buf: Buffer, pos: number): LogRecord {
  const size = buf.readUInt32BE(pos + REC.SIZE)
  const end = pos + size
  const hasKey = (buf[pos + REC.FLAGS]! & FLAG_HAS_KEY) !== 0
  const keyLen = buf.readUInt32BE(pos + REC.KEY_LENGTH)
  const valueLen = buf.readUInt32BE(pos + REC.VALUE_LENGTH)
  const count = buf.readUInt16BE(pos + REC.HEADER_COUNT)
  let p = pos + REC.HEADER_SIZE
  const key = hasKey ? buf.subarray(p, p + keyLen) : undefined
  p += keyLen
  const value = buf.subarray(p, p + valueLen)
  p += valueLen
  let headers: RecordHeaders | undefined
  if (count > 0) {
    headers = {}
    for (let i = 0; i < count; i++) {
      if (p + HEADER_NAME_LENGTH_SIZE > end) throw new DecodeError('header overruns the record')
      const n = buf.readUInt16BE(p)
      p += HEADER_NAME_LENGTH_SIZE
      if (p + n + HEADER_VALUE_LENGTH_SIZE > end) throw new DecodeError('header overruns the record')
      const name = buf.toString('utf8', p, p + n)
      p += n
      const vl = buf.readUInt32BE(p)
      p += HEADER_VALUE_LENGTH_SIZE
      if (p + vl > end) throw new DecodeError('header overruns the record')
      headers[name] = buf.subarray(p, p + vl)
      p += vl
    }
  }
  return {
    offset: readU64(buf, pos + REC.OFFSET),
    timestamp: readU64(buf, pos + REC.TIMESTAMP),
    term: readU64(buf, pos + REC.TERM),
    key,
    value,
    headers,
  }
}
