/**
 * Bodies of the internal stream calls (`PeerRpc` methods, see service.ts). Layouts use
 * util/binary; every decoder throws `DecodeError` on malformed input.
 *
 * - `s.meta` call: `u8 op (1 create, 2 delete, 3 table, 4 consumer-delete, 5 purge, 6 update) |
 *   str cluster | str requestId | create: spec | delete: str name | consumer-delete: str name |
 *   str durable | purge: str name | u8 flags (1 partition, 2 before, 4 key) | [u16 partition] |
 *   [u64 before] | [bytes key] | update: str name | u8 what (1 retention, 2 replicas) | [u8 flags | u64 each present
 *   retention limit (metadata-codec.ts)] | [u8 replicas] | [bytes proof]`
 *   (every op but table: the admin proof of cluster/capability.ts over every byte before it;
 *   absent: none, refused). A purge is served by partition leaders (`s.purge`), not here.
 *   reply: `u8 status` — 0 ok: `bytes signed table`; 1 not leader: `str hint`; 2 error:
 *   `str error name | str message`.
 * - `s.pub` call, a batch of messages for one partition, appended in order: `str stream |
 *   u64 createdIndex | u16 partition | u8 ack (0 none, 1 leader, 2 all) | u16 n (1..) | n ×
 *   (str topic | str msgId ('' none) | u8 has key | [bytes key] | u16 h | h × (str, str) header
 *   | bytes data)` (a conditional append carries its expected revision as header `px.er`); reply: `u8 status` — 0 ok: `u16 n | n × result` (one per message, in order:
 *   `u8 0 | u64 offset` stored, `u8 1 | u64 offset` a duplicate of a stored msgId, `u8 2 | str
 *   error name | str message` failed, `u8 3` not appended: send it again, to the leader),
 *   then, when the caller publishes with a capability, `bytes token hash` (streams/access/grants.ts);
 *   1 not leader (nothing appended): `str hint`; 3 not here.
 * - `s.seek` call (consumer-wire.ts), answered by the partition leader only; reply `u8 status`
 *   — 0 ok: `u64 offset`; 1 not leader: `str hint`; 3 not here.
 * - `s.fetch` call: `str stream | u64 createdIndex | u16 partition | u64 offset | u32 maxBytes |
 *   u32 waitMs | [bytes token hash]`; reply: `u8 status` — 0 ok: `u64 firstOffset | u64 nextOffset | u32 n | n ×
 *   (u64 offset | u64 timestamp | str topic | u8 has key | [bytes key] | u16 n | n × (str, bytes) | bytes
 *   value)`; 3 not here.
 * - `s.pstat` call: `str stream | u64 createdIndex | u16 partition`; reply `u8 status` — 0 ok:
 *   `str role | str leader | u64 firstOffset | u64 nextOffset | u8 has inSync | u16 n | n × str`;
 *   3 not here.
 * - `s.load` call: `str cluster`; reply `u8 can host | u32 replicas hosted`.
 */
import { MAX_PURGE_KEY_BYTES } from '../constants.js'
import { BinaryReader, BinaryWriter, DecodeError, uninitializedBytes } from '../util/binary.js'
import { fromPeer, PeerInputError, peerCluster } from '../util/peer-input.js'
import type { StreamSpec, StreamUpdate } from './meta/metadata-codec.js'
import {
  checkStreamName,
  MAX_REPLICAS,
  readRetentionPolicy,
  readSpec,
  writeRetentionPolicy,
  writeSpec,
} from './meta/metadata-codec.js'
import type { PartitionMessage } from './partition/types.js'

/** Header carrying a publish's `expectedRevision` on the wire (never stored). */
export const EXPECTED_REVISION_HEADER = 'px.er'

/** Reply status codes shared by the stream calls. */
export const Status = { Ok: 0, NotLeader: 1, Error: 2, NotHere: 3 } as const

/** Publish acknowledgement levels on the wire. */
export const ACKS = ['none', 'leader', 'all'] as const
export type WireAck = (typeof ACKS)[number]

/** Addresses one partition of one incarnation of a stream. */
export interface PartitionRef {
  stream: string
  createdIndex: number
  partition: number
}

/** A metadata call. */
export type MetaCall =
  | ({ op: 'create'; cluster: string; requestId: string; spec: StreamSpec } & Proven)
  | ({ op: 'delete'; cluster: string; requestId: string; name: string } & Proven)
  | { op: 'table'; cluster: string }
  | ({ op: 'consumer-delete'; cluster: string; requestId: string; name: string; durable: string } & Proven)
  | ({ op: 'purge'; cluster: string; requestId: string; name: string } & PurgeTarget & Proven)
  | ({ op: 'update'; cluster: string; requestId: string; name: string } & StreamUpdate & Proven)

/**
 * What a purge removes: offsets below `before` (absent: everything) of `partition` (absent:
 * all), only the messages with `key` when set.
 */
export interface PurgeTarget {
  partition?: number
  before?: number
  key?: Uint8Array
}

/**
 * The admin proof of a create or delete (cluster/capability.ts). Encoding: `proof` is
 * appended when set. Decoding: `signed` is the call's bytes before the proof (what it signs).
 */
export interface Proven {
  proof?: Uint8Array
  signed?: Uint8Array
}

/** A metadata reply. */
export type MetaReply =
  | { status: 'ok'; table: Uint8Array }
  | { status: 'notLeader'; hint: string | null }
  | { status: 'error'; name: string; message: string }

/** One message of a publish call. */
export interface PubMessage {
  topic: string
  /** Publish id for de-duplication ('' on the wire: none). */
  msgId: string | undefined
  key: Uint8Array | undefined
  headers: Record<string, string> | undefined
  data: Uint8Array
  /**
   * Conditional append (partition-cas.ts): the offset the key's latest live record must be
   * at, -1 for none. On the wire as the header `px.er` (decimal), which a leader that does
   * not know it refuses as reserved rather than append unconditionally.
   */
  expectedRevision?: number
}

/**
 * A publish to a partition leader: messages appended in this order (each gets its own
 * result), all with the same acknowledgement level.
 */
export interface PubCall extends PartitionRef {
  ack: WireAck
  messages: PubMessage[]
  /** Hash of the capability the caller presented (grants.ts); absent: none. */
  auth?: Uint8Array
}

/** Outcome of a publish, fetch or pstat that did not fail with an error. */
export type Routed<T> =
  | { status: 'ok'; value: T }
  | { status: 'notLeader'; hint: string | null }
  | { status: 'notHere' }

/** A fetch of committed messages. */
export interface FetchCall extends PartitionRef {
  offset: number
  maxBytes: number
  waitMs: number
  /** Hash of the capability the caller presented (grants.ts); absent: none. */
  auth?: Uint8Array
}

/** Fetched messages with the partition's bounds on the serving replica. */
export interface FetchResult {
  firstOffset: number
  nextOffset: number
  messages: PartitionMessage[]
}

/** A replica's view of its partition. */
export interface PartitionState {
  role: string
  leader: string | null
  firstOffset: number
  nextOffset: number
  /** Known on the leader only. */
  inSync: string[] | null
}

const OPS = ['create', 'delete', 'table', 'consumer-delete', 'purge', 'update'] as const

const w = () => new BinaryWriter(128)
const done = (b: BinaryWriter) => b.finish().slice()

/** Encodes a metadata call (with its `proof` appended when it has one). */
export function encodeMetaCall(c: MetaCall): Uint8Array {
  const b = w()
    .u8(OPS.indexOf(c.op) + 1)
    .str(c.cluster)
  if (c.op === 'create') writeSpec(b.str(c.requestId), c.spec)
  else if (c.op === 'delete') b.str(c.requestId).str(c.name)
  else if (c.op === 'consumer-delete') b.str(c.requestId).str(c.name).str(c.durable)
  else if (c.op === 'purge') {
    b.str(c.requestId)
      .str(c.name)
      .u8(
        (c.partition !== undefined ? 1 : 0) |
          (c.before !== undefined ? 2 : 0) |
          (c.key !== undefined ? 4 : 0),
      )
    if (c.partition !== undefined) b.u16(c.partition)
    if (c.before !== undefined) b.u64(c.before)
    if (c.key !== undefined) b.bytes(c.key)
  } else if (c.op === 'update') {
    b.str(c.requestId)
      .str(c.name)
      .u8((c.retention !== undefined ? 1 : 0) | (c.replicas !== undefined ? 2 : 0))
    if (c.retention !== undefined) writeRetentionPolicy(b, c.retention)
    if (c.replicas !== undefined) b.u8(c.replicas)
  }
  if (c.op !== 'table' && c.proof !== undefined) b.bytes(c.proof)
  return done(b)
}

/** Decodes a metadata call; throws `DecodeError` on anything malformed. */
export function decodeMetaCall(bytes: Uint8Array): MetaCall {
  const r = new BinaryReader(bytes)
  const op = OPS[r.u8('op') - 1]
  const cluster = peerCluster(r.str('cluster'))
  let c: MetaCall
  if (op === 'create') c = { op, cluster, requestId: r.str('requestId'), spec: readSpec(r) }
  else if (op === 'delete')
    c = { op, cluster, requestId: r.str('requestId'), name: peerStream(r.str('name')) }
  else if (op === 'table') c = { op, cluster }
  else if (op === 'consumer-delete')
    c = {
      op,
      cluster,
      requestId: r.str('requestId'),
      name: peerStream(r.str('name')),
      durable: peerStream(r.str('durable'), 'durable'),
    }
  else if (op === 'purge') {
    const p: MetaCall = { op, cluster, requestId: r.str('requestId'), name: peerStream(r.str('name')) }
    const flags = r.u8('purge flags')
    if (flags > 7) throw new DecodeError(`unknown purge flags ${flags}`)
    if (flags & 1) p.partition = r.u16('partition')
    if (flags & 2) p.before = r.u64('before')
    if (flags & 4) p.key = r.bytes('key', MAX_PURGE_KEY_BYTES).slice()
    c = p
  } else if (op === 'update') {
    const u: MetaCall = { op, cluster, requestId: r.str('requestId'), name: peerStream(r.str('name')) }
    const flags = r.u8('update flags')
    if (flags === 0 || flags > 3) throw new DecodeError(`bad update flags ${flags}`)
    if (flags & 1) u.retention = readRetentionPolicy(r)
    if (flags & 2) {
      u.replicas = r.u8('replicas')
      if (u.replicas < 1 || u.replicas > MAX_REPLICAS)
        throw new DecodeError(`replicas out of range: ${u.replicas}`)
    }
    c = u
  } else throw new DecodeError('unknown meta op')
  if (c.op !== 'table') {
    c.signed = bytes.subarray(0, r.pos)
    if (r.remaining > 0) c.proof = r.bytes('proof')
  }
  r.end('meta call')
  return c
}

export function encodeMetaReply(m: MetaReply): Uint8Array {
  if (m.status === 'ok') return done(w().u8(Status.Ok).bytes(m.table))
  if (m.status === 'notLeader')
    return done(
      w()
        .u8(Status.NotLeader)
        .str(m.hint ?? ''),
    )
  return done(w().u8(Status.Error).str(m.name).str(m.message))
}

export function decodeMetaReply(bytes: Uint8Array): MetaReply {
  const r = new BinaryReader(bytes)
  const s = r.u8('status')
  let m: MetaReply
  if (s === Status.Ok) m = { status: 'ok', table: r.bytes('table') }
  else if (s === Status.NotLeader) m = { status: 'notLeader', hint: r.str('hint') || null }
  else if (s === Status.Error) m = { status: 'error', name: r.str('name'), message: r.str('message') }
  else throw new DecodeError(`unknown meta status ${s}`)
  r.end('meta reply')
  return m
}

/** Writes a partition reference (`str stream | u64 createdIndex | u16 partition`). */
export function writeRef(b: BinaryWriter, p: PartitionRef): BinaryWriter {
  return b.str(p.stream).u64(p.createdIndex).u16(p.partition)
}

/** Reads a partition reference; its stream name is checked as the public API checks it. */
export function readRef(r: BinaryReader): PartitionRef {
  return {
    stream: peerStream(r.str('stream')),
    createdIndex: r.u64('createdIndex'),
    partition: r.u16('partition'),
  }
}

/** A stream (or durable) name from a peer: `checkStreamName`, else `PeerInputError` 'stream'. */
export function peerStream(name: string, field = 'stream'): string {
  return fromPeer('stream', () => checkStreamName(name, field))
}

/** Bytes `writePubMessage` writes for `m`, give or take (headers at 3 bytes per character). */
export function pubMessageSize(m: PubMessage): number {
  let n = 16 + m.topic.length * 3 + (m.msgId?.length ?? 0) * 3 + (m.key?.length ?? 0) + m.data.length
  if (m.headers) for (const k in m.headers) n += 4 + (k.length + m.headers[k]!.length) * 3
  if (m.expectedRevision !== undefined) n += 32
  return n
}

/** Writes the head of a publish call; `n` messages written by `writePubMessage` follow. */
export function writePubHead(b: BinaryWriter, ref: PartitionRef, ack: WireAck, n: number): BinaryWriter {
  return writeRef(b, ref).u8(ACKS.indexOf(ack)).u16(n)
}

/** Writes one message of a publish call. */
export function writePubMessage(b: BinaryWriter, m: PubMessage): BinaryWriter {
  b.str(m.topic).str(m.msgId ?? '')
  if (m.key) b.u8(1).bytes(m.key)
  else b.u8(0)
  const h = m.headers ? Object.entries(m.headers) : []
  if (m.expectedRevision !== undefined) h.push([EXPECTED_REVISION_HEADER, String(m.expectedRevision)])
  b.u16(h.length)
  for (const [k, v] of h) b.str(k).str(v)
  return b.bytes(m.data)
}

/**
 * Decodes a publish call. Sizes are bounded by the body (the caller checks each message
 * against its own limits, so that one bad message fails alone).
 */
export function decodePubCall(bytes: Uint8Array): PubCall {
  const r = new BinaryReader(bytes)
  const ref = readRef(r)
  const ack = ACKS[r.u8('ack')]
  if (ack === undefined) throw new DecodeError('unknown ack')
  const n = r.u16('message count')
  if (n === 0) throw new DecodeError('a publish call without messages')
  if (n * 11 > r.remaining) throw new DecodeError(`implausible message count ${n}`) // 11: an empty message
  const messages: PubMessage[] = new Array(n)
  for (let i = 0; i < n; i++) {
    const topic = r.str('topic')
    const msgId = r.str('msgId') || undefined
    const key = r.u8('has key') === 1 ? r.bytes('key') : undefined
    const nh = r.u16('header count')
    let headers: Record<string, string> | undefined
    for (let j = 0; j < nh; j++) {
      headers ??= {}
      const name = r.str('header name')
      // A repeated name would lose a value silently; publish-serve.ts checks the rest.
      if (Object.hasOwn(headers, name)) throw new PeerInputError('headers', `header ${name} repeated`)
      headers[name] = r.str('header value')
    }
    const msg: PubMessage = { topic, msgId, key, headers, data: r.bytes('data') }
    const er = headers?.[EXPECTED_REVISION_HEADER]
    if (er !== undefined && headers !== undefined) {
      if (!/^(-1|0|[1-9]\d{0,15})$/.test(er)) throw new PeerInputError('expectedRevision', `bad value ${er}`)
      msg.expectedRevision = Number(er)
      delete headers[EXPECTED_REVISION_HEADER]
      if (Object.keys(headers).length === 0) msg.headers = undefined
    }
    messages[i] = msg
  }
  const call: PubCall = { ...ref, ack, messages }
  if (r.remaining > 0) call.auth = r.bytes('capability hash')
  r.end('publish call')
  return call
}

/**
 * Encodes a routed reply into a writer of `size` bytes (grown if needed): up to 64 bytes it
 * lives on the JS heap (cheap), beyond that it is not zero-filled. The writer is not reused,
 * so its view is returned without a copy.
 */
export function encodeRouted<T>(x: Routed<T>, write: (b: BinaryWriter, v: T) => void, size = 64): Uint8Array {
  const b = new BinaryWriter(0, size > 64 ? uninitializedBytes(size) : new Uint8Array(size))
  if (x.status === 'ok') write(b.u8(Status.Ok), x.value)
  else if (x.status === 'notLeader') b.u8(Status.NotLeader).str(x.hint ?? '')
  else b.u8(Status.NotHere)
  return b.finish()
}

/** Decodes what `encodeRouted` wrote, the value with `read`; `what` names it in errors. */
export function decodeRouted<T>(bytes: Uint8Array, read: (r: BinaryReader) => T, what: string): Routed<T> {
  const r = new BinaryReader(bytes)
  const s = r.u8('status')
  let x: Routed<T>
  if (s === Status.Ok) x = { status: 'ok', value: read(r) }
  else if (s === Status.NotLeader) x = { status: 'notLeader', hint: r.str('hint') || null }
  else if (s === Status.NotHere) x = { status: 'notHere' }
  else throw new DecodeError(`unknown ${what} status ${s}`)
  r.end(what)
  return x
}

/** An offset reply (`s.seek`). */
export const encodeOffsetReply = (x: Routed<number>) => encodeRouted(x, (b, v) => b.u64(v))
export const decodeOffsetReply = (bytes: Uint8Array) =>
  decodeRouted(bytes, (r) => r.u64('offset'), 'offset reply')

/** Where a publish was stored; `duplicate`: its `msgId` was already stored there. */
export interface Stored {
  offset: number
  duplicate: boolean
}

/**
 * The outcome of one message of a publish call: stored, failed (`error`: the class name and
 * message of the error; the outcome may be unknown, as the error says), or `retry`: certainly
 * not appended, to be sent again (to the leader).
 */
export type PubResult = Stored | { error: { name: string; message: string } } | 'retry'

/** Encodes a publish reply: one result per message of the call, in the call's order. */
export const encodePubReply = (x: Routed<PubResult[]>) => {
  let size = 64
  if (x.status === 'ok')
    for (const v of x.value)
      size +=
        typeof v === 'object' && 'error' in v ? 8 + 3 * (v.error.name.length + v.error.message.length) : 9
  return encodeRouted(
    x,
    (b, v) => {
      b.u16(v.length)
      for (const res of v) {
        if (res === 'retry') b.u8(3)
        else if ('error' in res) b.u8(2).str(res.error.name).str(res.error.message)
        else b.u8(res.duplicate ? 1 : 0).u64(res.offset)
      }
    },
    size,
  )
}

/** Decodes a publish reply (`DecodeError` when malformed; the caller checks the count). */
export const decodePubReply = (bytes: Uint8Array) =>
  decodeRouted(
    bytes,
    (r): PubResult[] => {
      const n = r.u16('result count')
      if (n > r.remaining) throw new DecodeError(`implausible result count ${n}`)
      const out: PubResult[] = new Array(n)
      for (let i = 0; i < n; i++) {
        const kind = r.u8('result kind')
        if (kind === 0 || kind === 1) out[i] = { offset: r.u64('offset'), duplicate: kind === 1 }
        else if (kind === 2)
          out[i] = { error: { name: r.str('error name'), message: r.str('error message') } }
        else if (kind === 3) out[i] = 'retry'
        else throw new DecodeError(`unknown publish result kind ${kind}`)
      }
      return out
    },
    'publish reply',
  )

export function encodeFetchCall(c: FetchCall): Uint8Array {
  const b = writeRef(w(), c).u64(c.offset).u32(c.maxBytes).u32(c.waitMs)
  if (c.auth !== undefined) b.bytes(c.auth)
  return done(b)
}

export function decodeFetchCall(bytes: Uint8Array): FetchCall {
  const r = new BinaryReader(bytes)
  const c: FetchCall = {
    ...readRef(r),
    offset: r.u64('offset'),
    maxBytes: r.u32('maxBytes'),
    waitMs: r.u32('waitMs'),
  }
  if (r.remaining > 0) c.auth = r.bytes('capability hash')
  r.end('fetch call')
  return c
}

/** A stored message's key, headers and value, as `s.fetch` and `s.copy` replies carry them. */
export interface RecordBody {
  key: Uint8Array | undefined
  headers: Record<string, Uint8Array> | undefined
  value: Uint8Array
}

/** Upper bound of the bytes `writeRecordBody` writes for `m`. */
export function recordBodySize(m: RecordBody): number {
  let size = 16 + (m.key?.length ?? 0) + m.value.length
  if (m.headers) for (const k in m.headers) size += 8 + k.length * 3 + m.headers[k]!.length
  return size
}

/** Writes `u8 has key | [bytes key] | u16 n | n × (str name, bytes value) | bytes value`. */
export function writeRecordBody(b: BinaryWriter, m: RecordBody): void {
  if (m.key) b.u8(1).bytes(m.key)
  else b.u8(0)
  const h = m.headers ? Object.entries(m.headers) : []
  b.u16(h.length)
  for (const [k, v] of h) b.str(k).bytes(v)
  b.bytes(m.value)
}

/** Reads what `writeRecordBody` wrote; throws `DecodeError` on malformed bytes. */
export function readRecordBody(r: BinaryReader): RecordBody {
  const key = r.u8('has key') === 1 ? r.bytes('key') : undefined
  const nh = r.u16('header count')
  let headers: Record<string, Uint8Array> | undefined
  for (let j = 0; j < nh; j++) {
    headers ??= {}
    headers[r.str('header name')] = r.bytes('header value')
  }
  return { key, headers, value: r.bytes('value') }
}

export function encodeFetchReply(x: Routed<FetchResult>): Uint8Array {
  let size = 64
  if (x.status === 'ok') {
    for (const m of x.value.messages) size += 16 + m.topic.length * 3 + recordBodySize(m)
  }
  return encodeRouted(
    x,
    (b, v) => {
      b.u64(v.firstOffset).u64(v.nextOffset).u32(v.messages.length)
      for (const m of v.messages) {
        b.u64(m.offset).u64(m.timestamp).str(m.topic)
        writeRecordBody(b, m)
      }
    },
    size,
  )
}

export function decodeFetchReply(bytes: Uint8Array): Routed<FetchResult> {
  return decodeRouted(
    bytes,
    (r) => {
      const firstOffset = r.u64('firstOffset')
      const nextOffset = r.u64('nextOffset')
      const n = r.u32('message count')
      if (n > r.remaining) throw new DecodeError(`implausible message count ${n}`)
      const messages: PartitionMessage[] = []
      for (let i = 0; i < n; i++) {
        const offset = r.u64('offset')
        const timestamp = r.u64('timestamp')
        const topic = r.str('topic')
        messages.push({ offset, timestamp, topic, ...readRecordBody(r) })
      }
      return { firstOffset, nextOffset, messages }
    },
    'fetch reply',
  )
}

export function encodeRef(p: PartitionRef): Uint8Array {
  return done(writeRef(w(), p))
}

export function decodeRef(bytes: Uint8Array): PartitionRef {
  const r = new BinaryReader(bytes)
  const p = readRef(r)
  r.end('partition ref')
  return p
}

export function encodeStateReply(x: Routed<PartitionState>): Uint8Array {
  return encodeRouted(x, (b, v) => {
    b.str(v.role)
      .str(v.leader ?? '')
      .u64(v.firstOffset)
      .u64(v.nextOffset)
    b.u8(v.inSync ? 1 : 0).u16(v.inSync?.length ?? 0)
    for (const id of v.inSync ?? []) b.str(id)
  })
}

export function decodeStateReply(bytes: Uint8Array): Routed<PartitionState> {
  return decodeRouted(
    bytes,
    (r) => {
      const role = r.str('role')
      const leader = r.str('leader') || null
      const firstOffset = r.u64('firstOffset')
      const nextOffset = r.u64('nextOffset')
      const has = r.u8('has inSync') === 1
      const n = r.u16('inSync count')
      const ids: string[] = []
      for (let i = 0; i < n; i++) ids.push(r.str('inSync member'))
      return { role, leader, firstOffset, nextOffset, inSync: has ? ids : null }
    },
    'state reply',
  )
}

export function encodeLoad(canHost: boolean, replicas: number): Uint8Array {
  return done(
    w()
      .u8(canHost ? 1 : 0)
      .u32(replicas),
  )
}

export function decodeLoad(bytes: Uint8Array): { canHost: boolean; replicas: number } {
  const r = new BinaryReader(bytes)
  const x = { canHost: r.u8('can host') === 1, replicas: r.u32('replicas') }
  r.end('load reply')
  return x
}
