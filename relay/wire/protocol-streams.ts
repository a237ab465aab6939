/**
 * Bodies of the durable-stream relay frames (0x60–0x6F, an extension of protocol version
 * 2): stream create / info / delete / list and consumers (CONSUME, CONSUME_MESSAGE,
 * CONSUME_CREDIT, CONSUME_CLOSE, CONSUME_ACK; the later consumer frames are in
 * protocol-consume.ts). Layouts are normative in
 * `docs/relay-protocol.md`, "Durable streams"; every decoder consumes the body exactly and
 * throws `DecodeError` on anything malformed.
 */
import type {
  ConsumeFrom,
  PartitionInfo,
  StreamAccess,
  StreamInfo,
  StreamRetention,
  StreamSummary,
} from '../../src/types.js'
import { type BinaryReader, type BinaryWriter, DecodeError } from '../../src/util/binary.js'
import { type ConsumeExtras, readConsumeExtras, writeConsumeExtras } from './protocol-consume.js'
import { CloseKind, MsgFlag } from './protocol-ext.js'

/** CONSUME start kinds (`from`). */
export const FromKind = { earliest: 0, latest: 1, new: 2, offset: 3, time: 4 } as const

/** CONSUME option flags: which optional fields follow. */
export const ConsumeFlag = { Partition: 1, Durable: 2, AckWait: 4, Capability: 8, Options: 16 } as const

/** Largest stream count a STREAM_LIST_REPLY or partition count a STREAM_INFO_REPLY may carry. */
const MAX_ITEMS = 65_536

const RETENTION_KEYS = ['maxAge', 'maxBytes', 'maxMessages'] as const

/** Flag bit 3: a `u64 duplicateWindow` follows the retention fields (0 / absent: default). */
const DUPLICATE_WINDOW_FLAG = 8
/** Flag bits 4 and 5: publishing / consuming needs a capability (`StreamAccess`). */
const PUBLISH_CAPABILITY_FLAG = 16
const CONSUME_CAPABILITY_FLAG = 32

function writeRetention(
  w: BinaryWriter,
  r: StreamRetention,
  compact: boolean,
  duplicateWindow = 0,
  access?: Partial<StreamAccess>,
): void {
  let flags = 0
  RETENTION_KEYS.forEach((k, i) => {
    if (r[k] !== undefined) flags |= 1 << i
  })
  if (duplicateWindow > 0) flags |= DUPLICATE_WINDOW_FLAG
  if (access?.publish === 'capability') flags |= PUBLISH_CAPABILITY_FLAG
  if (access?.consume === 'capability') flags |= CONSUME_CAPABILITY_FLAG
  w.u8(flags)
  for (const k of RETENTION_KEYS) if (r[k] !== undefined) w.u64(r[k]!)
  if (duplicateWindow > 0) w.u64(duplicateWindow)
  w.u8(compact ? 1 : 0)
}

function readRetention(r: BinaryReader): {
  retention: StreamRetention
  compact: boolean
  duplicateWindow: number
  access: StreamAccess
} {
  const flags = r.u8('retention flags')
  if (flags > 63) throw new DecodeError(`unknown retention flags ${flags}`)
  const retention: StreamRetention = {}
  RETENTION_KEYS.forEach((k, i) => {
    if (flags & (1 << i)) retention[k] = r.u64(`retention.${k}`)
  })
  const duplicateWindow = flags & DUPLICATE_WINDOW_FLAG ? r.u64('duplicateWindow') : 0
  const compact = r.u8('compact')
  if (compact > 1) throw new DecodeError(`compact must be 0 or 1, got ${compact}`)
  const access: StreamAccess = {
    publish: flags & PUBLISH_CAPABILITY_FLAG ? 'capability' : 'open',
    consume: flags & CONSUME_CAPABILITY_FLAG ? 'capability' : 'open',
  }
  return { retention, compact: compact === 1, duplicateWindow, access }
}

/**
 * What a client proves stream administration with (STREAM_CREATE, STREAM_DELETE), passed
 * through to the node's call: after the body's fields, `u8 kind | value` — kind 1: `bytes
 * clusterKey` (32 bytes), kind 2: `str capability`. Absent (the body ends): none, so the
 * node proves the call with its own keys if it can.
 */
export interface RelayAuth {
  clusterKey?: Uint8Array
  capability?: string
}

/** Writes the optional `RelayAuth` tail of a body (nothing when `a` is empty). */
export function writeRelayAuth(w: BinaryWriter, a: RelayAuth | undefined): void {
  if (a?.capability !== undefined) w.u8(2).str(a.capability)
  else if (a?.clusterKey !== undefined) w.u8(1).bytes(a.clusterKey)
}

/** Reads the optional `RelayAuth` tail of a body (undefined when the body ends here). */
export function readRelayAuth(r: BinaryReader): RelayAuth | undefined {
  if (r.remaining === 0) return undefined
  const kind = r.u8('auth kind')
  if (kind === 1) {
    const clusterKey = r.bytes('cluster key')
    if (clusterKey.length !== 32) throw new DecodeError(`a cluster key is 32 bytes, got ${clusterKey.length}`)
    return { clusterKey }
  }
  if (kind === 2) return { capability: r.str('capability') }
  throw new DecodeError(`unknown auth kind ${kind}`)
}

/** STREAM_CREATE body. `partitions` and `replicas` 0 mean the node's defaults. */
export interface StreamCreateBody {
  name: string
  cluster: string
  subject: string
  replicas: number
  partitions: number
  retention: StreamRetention
  compact: boolean
  /** 0 = the default (2 minutes). */
  duplicateWindow: number
  /** Who may publish / consume (retention flag bits 4, 5; absent: open). */
  access?: StreamAccess
  /** 0 = the node's default. */
  timeoutMs: number
  auth?: RelayAuth
}

/** Writes a STREAM_CREATE body. */
export function encodeStreamCreate(w: BinaryWriter, m: StreamCreateBody): void {
  w.str(m.name).str(m.cluster).str(m.subject).u16(m.replicas).u32(m.partitions)
  writeRetention(w, m.retention, m.compact, m.duplicateWindow, m.access)
  w.u32(m.timeoutMs)
  writeRelayAuth(w, m.auth)
}

/** Reads a STREAM_CREATE body (names and ranges are validated by the node). */
export function decodeStreamCreate(r: BinaryReader): StreamCreateBody {
  const name = r.str('name')
  const cluster = r.str('cluster')
  const subject = r.str('subject')
  const replicas = r.u16('replicas')
  const partitions = r.u32('partitions')
  const { retention, compact, duplicateWindow, access } = readRetention(r)
  const timeoutMs = r.u32('timeout')
  const auth = readRelayAuth(r)
  r.end('STREAM_CREATE')
  const m: StreamCreateBody = {
    name,
    cluster,
    subject,
    replicas,
    partitions,
    retention,
    compact,
    duplicateWindow,
    timeoutMs,
    auth,
  }
  if (access.publish !== 'open' || access.consume !== 'open') m.access = access
  return m
}

/** STREAM_INFO and STREAM_DELETE body (`auth`: STREAM_DELETE only; STREAM_INFO ignores it). */
export interface StreamNameBody {
  name: string
  /** 0 = the node's default. */
  timeoutMs: number
  auth?: RelayAuth
}

/** Writes a STREAM_INFO or STREAM_DELETE body. */
export function encodeStreamName(w: BinaryWriter, m: StreamNameBody): void {
  w.str(m.name).u32(m.timeoutMs)
  writeRelayAuth(w, m.auth)
}

/** Reads a STREAM_INFO or STREAM_DELETE body; `what` names the frame in errors. */
export function decodeStreamName(r: BinaryReader, what: string): StreamNameBody {
  const m: StreamNameBody = { name: r.str('name'), timeoutMs: r.u32('timeout') }
  const auth = readRelayAuth(r)
  if (auth !== undefined) m.auth = auth
  r.end(what)
  return m
}

function writeIds(w: BinaryWriter, ids: string[]): void {
  w.u16(ids.length)
  for (const id of ids) w.str(id)
}

function readIds(r: BinaryReader, what: string): string[] {
  const n = r.u16(`${what} count`)
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push(r.str(what))
  return out
}

/** Writes a STREAM_INFO_REPLY body. */
export function encodeStreamInfo(w: BinaryWriter, s: StreamInfo): void {
  w.str(s.name).str(s.cluster).str(s.subject).u16(s.replicas)
  writeRetention(w, s.retention ?? {}, s.compact === true, s.duplicateWindow, s.access)
  w.u32(s.partitions.length)
  for (const p of s.partitions) {
    w.u32(p.partition).str(p.leader ?? '')
    writeIds(w, p.replicas)
    writeIds(w, p.inSync)
    w.u64(p.firstOffset).u64(p.nextOffset)
  }
}

/** Reads a STREAM_INFO_REPLY body. An empty leader is `null` (none elected). */
export function decodeStreamInfo(r: BinaryReader): StreamInfo {
  const name = r.str('name')
  const cluster = r.str('cluster')
  const subject = r.str('subject')
  const replicas = r.u16('replicas')
  const { retention, compact, duplicateWindow, access } = readRetention(r)
  const n = r.u32('partition count')
  if (n > MAX_ITEMS) throw new DecodeError(`${n} partitions, at most ${MAX_ITEMS}`)
  const partitions: PartitionInfo[] = []
  for (let i = 0; i < n; i++) {
    const partition = r.u32('partition')
    const leader = r.str('leader')
    const reps = readIds(r, 'replica')
    const inSync = readIds(r, 'in-sync replica')
    const firstOffset = r.u64('first offset')
    const nextOffset = r.u64('next offset')
    partitions.push({
      partition,
      leader: leader === '' ? null : leader,
      replicas: reps,
      inSync,
      firstOffset,
      nextOffset,
    })
  }
  r.end('STREAM_INFO_REPLY')
  return { name, cluster, subject, replicas, retention, compact, duplicateWindow, access, partitions }
}

/** One stream of a STREAM_LIST_REPLY without details (the first fields of `StreamSummary`). */
export interface StreamBrief {
  name: string
  cluster: string
  subject: string
  partitions: number
  replicas: number
}

/** STREAM_LIST flag: the reply carries each stream's details (`StreamSummary`). */
export const LIST_DETAILS = 1

/**
 * Writes a STREAM_LIST_REPLY body; with `details`, each stream's base fields are followed by
 * its retention block (as STREAM_INFO_REPLY), `str metadata leader` ('' unknown) and `u32 n`
 * × (`str leader` ('' unknown), `u16 r` × `str replica`).
 */
export function encodeStreamList(w: BinaryWriter, list: StreamSummary[], details: boolean): void {
  w.u32(list.length)
  for (const s of list) {
    w.str(s.name).str(s.cluster).str(s.subject).u32(s.partitions).u16(s.replicas)
    if (!details) continue
    writeRetention(w, s.retention, s.compact, s.duplicateWindow, s.access)
    w.str(s.metadataLeader ?? '').u32(s.placement.length)
    for (const p of s.placement) {
      w.str(p.leader ?? '')
      writeIds(w, p.replicas)
    }
  }
}

/** Reads a STREAM_LIST_REPLY body written with `details`. */
export function decodeStreamList(r: BinaryReader): StreamSummary[] {
  const n = r.u32('stream count')
  if (n > MAX_ITEMS) throw new DecodeError(`${n} streams, at most ${MAX_ITEMS}`)
  const out: StreamSummary[] = []
  for (let i = 0; i < n; i++) {
    const name = r.str('name')
    const cluster = r.str('cluster')
    const subject = r.str('subject')
    const partitions = r.u32('partitions')
    const replicas = r.u16('replicas')
    const { retention, compact, duplicateWindow, access } = readRetention(r)
    const metadataLeader = r.str('metadata leader')
    const count = r.u32('partition count')
    if (count > MAX_ITEMS) throw new DecodeError(`${count} partitions, at most ${MAX_ITEMS}`)
    const placement: StreamSummary['placement'] = []
    for (let p = 0; p < count; p++) {
      const leader = r.str('leader')
      placement.push({ partition: p, replicas: readIds(r, 'replica'), leader: leader === '' ? null : leader })
    }
    out.push({
      name,
      cluster,
      subject,
      partitions,
      replicas,
      retention,
      compact,
      duplicateWindow,
      access,
      metadataLeader: metadataLeader === '' ? null : metadataLeader,
      placement,
    })
  }
  r.end('STREAM_LIST_REPLY')
  return out
}

/** CONSUME body. */
export interface ConsumeBody {
  /** Chosen by the client: not 0, unique among its open consumers. */
  consumerId: number
  stream: string
  from: ConsumeFrom
  partition?: number
  durable?: string
  ackWait?: number
  /** A capability (`pxc1.…`) the node reads with (flag 0x08). */
  capability?: string
  /** The options block (flag 0x10; protocol-consume.ts). */
  options?: ConsumeExtras
  /** Credit (bytes) granted to the relay: at least the largest frame. */
  window: number
}

/** Writes a CONSUME body. */
export function encodeConsume(w: BinaryWriter, m: ConsumeBody): void {
  w.u32(m.consumerId).str(m.stream)
  const f = m.from
  if (f === 'earliest' || f === 'latest' || f === 'new') w.u8(FromKind[f])
  else if ('offset' in f) w.u8(FromKind.offset).u64(f.offset)
  else w.u8(FromKind.time).u64(f.time.getTime())
  const flags =
    (m.partition !== undefined ? ConsumeFlag.Partition : 0) |
    (m.durable !== undefined ? ConsumeFlag.Durable : 0) |
    (m.ackWait !== undefined ? ConsumeFlag.AckWait : 0) |
    (m.capability !== undefined ? ConsumeFlag.Capability : 0) |
    (m.options !== undefined ? ConsumeFlag.Options : 0)
  w.u8(flags)
  if (m.partition !== undefined) w.u32(m.partition)
  if (m.durable !== undefined) w.str(m.durable)
  if (m.ackWait !== undefined) w.u32(m.ackWait)
  if (m.capability !== undefined) w.str(m.capability)
  if (m.options !== undefined) writeConsumeExtras(w, m.options)
  w.u32(m.window)
}

/** Reads a CONSUME body; an unknown start kind or flag bits throw `DecodeError`. */
export function decodeConsume(r: BinaryReader): ConsumeBody {
  const consumerId = r.u32('consumer id')
  const stream = r.str('stream')
  const kind = r.u8('from kind')
  let from: ConsumeFrom
  if (kind === FromKind.earliest) from = 'earliest'
  else if (kind === FromKind.latest) from = 'latest'
  else if (kind === FromKind.new) from = 'new'
  else if (kind === FromKind.offset) from = { offset: r.u64('from offset') }
  else if (kind === FromKind.time) from = { time: new Date(r.u64('from time')) }
  else throw new DecodeError(`unknown CONSUME from kind ${kind}`)
  const flags = r.u8('flags')
  if (flags > 31) throw new DecodeError(`unknown CONSUME flags ${flags}`)
  const m: ConsumeBody = { consumerId, stream, from, window: 0 }
  if (flags & ConsumeFlag.Partition) m.partition = r.u32('partition')
  if (flags & ConsumeFlag.Durable) m.durable = r.str('durable')
  if (flags & ConsumeFlag.AckWait) m.ackWait = r.u32('ack wait')
  if (flags & ConsumeFlag.Capability) m.capability = r.str('capability')
  if (flags & ConsumeFlag.Options) m.options = readConsumeExtras(r)
  m.window = r.u32('window')
  r.end('CONSUME')
  return m
}

/** CONSUME_MESSAGE body (the consumer id is the frame's correlation id). */
export interface ConsumeMessageBody {
  topic: string
  partition: number
  offset: number
  timestamp: number
  /** 1 on first delivery, more on redelivery (durable consumers). */
  deliveryCount: number
  key?: Uint8Array
  headers?: Record<string, string>
  data: Uint8Array
}

const utf8Length = (s: string) => Buffer.byteLength(s, 'utf8')

/**
 * What a CONSUME_MESSAGE costs in credit: its frame's length field (opcode, id and body),
 * exactly what the client can read off the frame it received.
 */
export function consumeMessageCost(m: ConsumeMessageBody): number {
  let n = 5 + 2 + utf8Length(m.topic) + 4 + 8 + 8 + 2 + 1 + 4 + m.data.length
  if (m.key) n += 4 + m.key.length
  if (m.headers) {
    n += 2
    for (const [k, v] of Object.entries(m.headers)) n += 4 + utf8Length(k) + utf8Length(v)
  }
  return n
}

/** Writes a CONSUME_MESSAGE body. */
export function encodeConsumeMessage(w: BinaryWriter, m: ConsumeMessageBody): void {
  const flags = (m.key ? MsgFlag.Key : 0) | (m.headers ? MsgFlag.Headers : 0)
  w.str(m.topic)
    .u32(m.partition)
    .u64(m.offset)
    .u64(m.timestamp)
    .u16(Math.min(m.deliveryCount, 0xffff))
    .u8(flags)
  if (m.key) w.bytes(m.key)
  if (m.headers) {
    const entries = Object.entries(m.headers)
    w.u16(entries.length)
    for (const [k, v] of entries) w.str(k).str(v)
  }
  w.bytes(m.data)
}

/** Reads a CONSUME_MESSAGE body. */
export function decodeConsumeMessage(r: BinaryReader, maxData: number): ConsumeMessageBody {
  const topic = r.str('topic')
  const partition = r.u32('partition')
  const offset = r.u64('offset')
  const timestamp = r.u64('timestamp')
  const deliveryCount = r.u16('delivery count')
  const flags = r.u8('flags')
  if (flags & ~(MsgFlag.Key | MsgFlag.Headers))
    throw new DecodeError(`unknown CONSUME_MESSAGE flags ${flags}`)
  const m: ConsumeMessageBody = { topic, partition, offset, timestamp, deliveryCount, data: new Uint8Array() }
  // Keys are bounded by the frame here: a message stored before the limits held still reads.
  if (flags & MsgFlag.Key) m.key = r.bytes('key')
  if (flags & MsgFlag.Headers) {
    const n = r.u16('header count')
    const h: Record<string, string> = Object.create(null)
    for (let i = 0; i < n; i++) {
      const k = r.str('header name')
      h[k] = r.str('header value')
    }
    m.headers = h
  }
  m.data = r.bytes('data', maxData)
  r.end('CONSUME_MESSAGE')
  return m
}

/** CONSUME_ACK body. */
export interface ConsumeAckBody {
  consumerId: number
  partition: number
  offset: number
}

/** Writes a CONSUME_ACK body. */
export function encodeConsumeAck(w: BinaryWriter, m: ConsumeAckBody): void {
  w.u32(m.consumerId).u32(m.partition).u64(m.offset)
}

/** Reads a CONSUME_ACK body. */
export function decodeConsumeAck(r: BinaryReader): ConsumeAckBody {
  const m = { consumerId: r.u32('consumer id'), partition: r.u32('partition'), offset: r.u64('offset') }
  r.end('CONSUME_ACK')
  return m
}

/** CONSUME_CLOSE body: kind 0 (`CloseKind.Half`) ended, 1 (`CloseKind.Failed`) failed. */
export interface ConsumeCloseBody {
  kind: number
  name: string
  message: string
}

/** Writes a CONSUME_CLOSE body (the message is cut at 1024 characters). */
export function encodeConsumeClose(w: BinaryWriter, m: ConsumeCloseBody): void {
  w.u8(m.kind).str(m.name).str(m.message.slice(0, 1024))
}

/** Reads a CONSUME_CLOSE body; an unknown kind throws `DecodeError`. */
export function decodeConsumeClose(r: BinaryReader): ConsumeCloseBody {
  const kind = r.u8('kind')
  if (kind > CloseKind.Failed) throw new DecodeError(`unknown CONSUME_CLOSE kind ${kind}`)
  const m = { kind, name: r.str('error name'), message: r.str('message') }
  r.end('CONSUME_CLOSE')
  return m
}
