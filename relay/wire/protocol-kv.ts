/**
 * Bodies of the key-value and single-message read frames (0x78–0x7E; docs/relay-protocol.md,
 * "Key-value buckets"). An entry is `str key | u64 revision | u8 operation (0 put, 1 delete) |
 * u64 timestamp | bytes value`.
 *
 * - KV_CALL (0x78) c→s: `u8 op | str bucket | str cluster ('' = the bucket's, when it exists)
 *   | u16 replicas (0 = default) | u32 timeout ms | str key | u64 revision | bytes value |
 *   [credential]`; ops 1 GET, 2 PUT, 3 CREATE, 4 UPDATE, 5 DELETE, 6 KEYS, 7 HISTORY, 8 OPEN (`node.kv`:
 *   creates the bucket's stream when absent).
 *   Answered KV_REPLY or ERROR (`KeyExistsError`, `WrongRevisionError`, …).
 * - KV_REPLY (0x79) s→c: GET `u8 found | [entry]`; PUT, CREATE, UPDATE, DELETE `u64 revision`;
 *   KEYS `u32 n | n × str`; HISTORY `u32 n | n × entry`; OPEN empty.
 * - KV_WATCH (0x7A) c→s: `u32 watch id (chosen by the client, not 0) | str bucket | str cluster
 *   | str pattern | [credential]`; answered OK, then KV_CHANGE frames whose frame id is the
 *   watch id: first the current value of each matching key, then every change, live.
 * - KV_CHANGE (0x7B) s→c, frame id = watch id: `entry`.
 * - KV_WATCH_CLOSE (0x7C) either way, frame id = watch id: `u8 kind (0 closed, 1 error) | [str
 *   name | str message]`.
 * - STREAM_READ (0x7D) c→s: `str stream | u8 kind (1 at an offset, 2 last of a key) | u32
 *   partition | u64 offset | bytes key | u32 timeout ms | [credential]`; answered
 *   STREAM_READ_REPLY (0x7E): `u32 partition | u64 offset | u64 timestamp | str topic | u8 has
 *   key | [bytes key] | u16 n | n × (str, str) header | bytes data`, or ERROR
 *   (`MessageNotFoundError`).
 */
import { type BinaryReader, type BinaryWriter, DecodeError } from '../../src/util/binary.js'
import { type RelayAuth, readRelayAuth, writeRelayAuth } from './protocol-streams.js'

/** KV_CALL operations. */
export const KvOp = { Get: 1, Put: 2, Create: 3, Update: 4, Delete: 5, Keys: 6, History: 7, Open: 8 } as const
/** A KV_CALL operation code. */
export type KvOpCode = (typeof KvOp)[keyof typeof KvOp]

/** A KV_CALL body. */
export interface KvCallBody {
  op: KvOpCode
  bucket: string
  cluster: string
  replicas: number
  timeoutMs: number
  key: string
  revision: number
  value: Uint8Array
  auth?: RelayAuth
}

/** An entry as KV_REPLY and KV_CHANGE carry it. */
export interface WireKvEntry {
  key: string
  revision: number
  operation: 'put' | 'delete'
  timestamp: number
  value: Uint8Array
}

/** Writes a KV_CALL body. */
export function encodeKvCall(w: BinaryWriter, m: KvCallBody): void {
  w.u8(m.op).str(m.bucket).str(m.cluster).u16(m.replicas).u32(m.timeoutMs).str(m.key).u64(m.revision)
  w.bytes(m.value)
  writeRelayAuth(w, m.auth)
}

/** Reads a KV_CALL body; `DecodeError` on an unknown op or a malformed body. */
export function decodeKvCall(r: BinaryReader): KvCallBody {
  const op = r.u8('kv op')
  if (op < 1 || op > 8) throw new DecodeError(`unknown KV_CALL op ${op}`)
  const m: KvCallBody = {
    op: op as KvOpCode,
    bucket: r.str('bucket'),
    cluster: r.str('cluster'),
    replicas: r.u16('replicas'),
    timeoutMs: r.u32('timeout'),
    key: r.str('key'),
    revision: r.u64('revision'),
    value: r.bytes('value'),
  }
  const auth = readRelayAuth(r)
  if (auth !== undefined) m.auth = auth
  r.end('KV_CALL')
  return m
}

/** Writes an entry. */
export function writeKvEntry(w: BinaryWriter, e: WireKvEntry): void {
  w.str(e.key)
    .u64(e.revision)
    .u8(e.operation === 'delete' ? 1 : 0)
    .u64(e.timestamp)
    .bytes(e.value)
}

/** Reads an entry. */
export function readKvEntry(r: BinaryReader): WireKvEntry {
  const key = r.str('key')
  const revision = r.u64('revision')
  const op = r.u8('operation')
  if (op > 1) throw new DecodeError(`unknown kv operation ${op}`)
  return {
    key,
    revision,
    operation: op === 1 ? 'delete' : 'put',
    timestamp: r.u64('timestamp'),
    value: r.bytes('value'),
  }
}

/** A KV_WATCH body. */
export interface KvWatchBody {
  watchId: number
  bucket: string
  cluster: string
  pattern: string
  auth?: RelayAuth
}

/** Writes a KV_WATCH body. */
export function encodeKvWatch(w: BinaryWriter, m: KvWatchBody): void {
  w.u32(m.watchId).str(m.bucket).str(m.cluster).str(m.pattern)
  writeRelayAuth(w, m.auth)
}

/** Reads a KV_WATCH body. */
export function decodeKvWatch(r: BinaryReader): KvWatchBody {
  const watchId = r.u32('watch id')
  if (watchId === 0) throw new DecodeError('watch id must not be 0')
  const m: KvWatchBody = {
    watchId,
    bucket: r.str('bucket'),
    cluster: r.str('cluster'),
    pattern: r.str('pattern'),
  }
  const auth = readRelayAuth(r)
  if (auth !== undefined) m.auth = auth
  r.end('KV_WATCH')
  return m
}

/** A STREAM_READ body. */
export interface StreamReadBody {
  stream: string
  kind: 'offset' | 'last'
  partition: number
  offset: number
  key: Uint8Array
  timeoutMs: number
  auth?: RelayAuth
}

/** Writes a STREAM_READ body. */
export function encodeStreamRead(w: BinaryWriter, m: StreamReadBody): void {
  w.str(m.stream)
    .u8(m.kind === 'offset' ? 1 : 2)
    .u32(m.partition)
    .u64(m.offset)
    .bytes(m.key)
    .u32(m.timeoutMs)
  writeRelayAuth(w, m.auth)
}

/** Reads a STREAM_READ body. */
export function decodeStreamRead(r: BinaryReader): StreamReadBody {
  const stream = r.str('stream')
  const k = r.u8('read kind')
  if (k !== 1 && k !== 2) throw new DecodeError(`unknown STREAM_READ kind ${k}`)
  const m: StreamReadBody = {
    stream,
    kind: k === 1 ? 'offset' : 'last',
    partition: r.u32('partition'),
    offset: r.u64('offset'),
    key: r.bytes('key'),
    timeoutMs: r.u32('timeout'),
  }
  const auth = readRelayAuth(r)
  if (auth !== undefined) m.auth = auth
  r.end('STREAM_READ')
  return m
}

/** A message as STREAM_READ_REPLY carries it. */
export interface ReadMessage {
  partition: number
  offset: number
  timestamp: number
  topic: string
  key: Uint8Array | undefined
  headers: Record<string, string> | undefined
  data: Uint8Array
}

/** Writes a STREAM_READ_REPLY body. */
export function encodeReadReply(w: BinaryWriter, m: ReadMessage): void {
  w.u32(m.partition).u64(m.offset).u64(m.timestamp).str(m.topic)
  if (m.key !== undefined) w.u8(1).bytes(m.key)
  else w.u8(0)
  const h = Object.entries(m.headers ?? {})
  w.u16(h.length)
  for (const [k, v] of h) w.str(k).str(v)
  w.bytes(m.data)
}

/** Reads a STREAM_READ_REPLY body. */
export function decodeReadReply(r: BinaryReader): ReadMessage {
  const partition = r.u32('partition')
  const offset = r.u64('offset')
  const timestamp = r.u64('timestamp')
  const topic = r.str('topic')
  const key = r.u8('has key') === 1 ? r.bytes('key') : undefined
  const n = r.u16('header count')
  let headers: Record<string, string> | undefined
  for (let i = 0; i < n; i++) (headers ??= {})[r.str('header name')] = r.str('header value')
  const data = r.bytes('data')
  r.end('STREAM_READ_REPLY')
  return { partition, offset, timestamp, topic, key, headers, data }
}
