/**
 * The relay wire protocol (version 2; version 1 clients are still served): how thin clients in any language talk to a local
 * Plexus node over one TCP connection. `docs/relay-protocol.md` is the normative text; this
 * module is its TypeScript form, shared by `server.ts` and `client.ts`.
 *
 * Every frame: `u32 length | u8 opcode | u32 correlation id | body`, big-endian, where
 * `length` counts the bytes after itself (so it is at least 5). Strings are `u16 length +
 * UTF-8`, byte strings `u32 length + raw`, exactly as `src/util/binary.ts` writes them.
 */
import { FRAME_OVERHEAD } from '../../src/constants.js'
import { BinaryReader, type BinaryWriter, DecodeError } from '../../src/util/binary.js'

/** Protocol version this code speaks. A HELLO with a version not in `SUPPORTED_VERSIONS` is refused. */
export const PROTOCOL_VERSION = 2
/**
 * Versions a server accepts. Version 2 added broadcast, pub/sub and tunnel frames and the
 * JOIN flags byte; in a version-1 session JOIN has no flags byte (it serves requests only).
 */
export const SUPPORTED_VERSIONS: readonly number[] = [1, 2]
/** The four bytes every HELLO starts with ("PLXR"). */
export const MAGIC = new Uint8Array([0x50, 0x4c, 0x58, 0x52])
/** Bytes of a frame header: u32 length, u8 opcode, u32 correlation id. */
export const HEADER_SIZE = 9
/** Smallest legal value of the length field (opcode + correlation id, empty body). */
export const MIN_FRAME_LENGTH = 5
/**
 * Bytes a frame may carry beyond its payload (names, ids, key, headers): the library's
 * `FRAME_OVERHEAD`, which the message limits of `src/constants.ts` fit in.
 */
export { FRAME_OVERHEAD }
/** Correlation id of connection-level frames (handshake, fatal errors). */
export const CONNECTION_ID = 0

/**
 * Opcodes. Ranges 0x30–0x3F (broadcast), 0x40–0x4F (pub/sub), 0x50–0x5F (tunnels) and
 * 0x60–0x6F and 0x70–0x7F (durable streams) keep their unassigned codes for later versions;
 * 0xF0–0xFF are never assigned (private experiments). A relay answers an opcode it does not
 * implement with ERROR (InvalidArgumentError) and keeps the connection open.
 */
export const Op = {
  /** c→s: magic, u16 version, str client name. First frame of every connection. */
  Hello: 0x01,
  /** s→c: u16 version, str node id, str network, u32 max message size. */
  Welcome: 0x02,
  /** s→c: str reason; the server closes the connection after it. */
  Refuse: 0x03,
  /** either way: empty body; answered with PONG carrying the same id. */
  Ping: 0x04,
  /** either way: empty body; answers a PING. */
  Pong: 0x05,
  /** s→c: success. Empty for JOIN, LEAVE, SUBSCRIBE, UNSUBSCRIBE, PUBLISH, STREAM_DELETE, CONSUME, CONSUME_ACK/NAK/TERM/WORKING; `u32 count` for BROADCAST and CONSUME_FETCH. */
  Ok: 0x08,
  /** s→c: str error name, str message. With id 0 the connection closes after it. */
  Error: 0x09,
  /** c→s: str cluster, u32 timeout ms (0 = node default), bytes data. */
  Request: 0x10,
  /** s→c: bytes reply data. */
  Reply: 0x11,
  /** c→s: empty body; the caller gives up on the REQUEST with this id. */
  Cancel: 0x12,
  /** c→s: str cluster, u32 timeout ms, headers, bytes data (protocol-requests.ts). Answered REPLY_HEADERS or ERROR. */
  RequestHeaders: 0x13,
  /** s→c: headers, bytes reply data. */
  ReplyHeaders: 0x14,
  /** c→s: str cluster, u32 timeout ms, u32 max replies, headers, bytes data. Answered MANY_REPLY…, then OK or ERROR. */
  RequestMany: 0x15,
  /** s→c (id of the REQUEST_MANY): str from, u8 kind (0 reply, 1 failed), headers + bytes data | str name + str message. */
  ManyReply: 0x16,
  /** c→s: str cluster, u8 key form, bytes key, u32 × 4 limits (0 = default), u8 flags (v2). */
  Join: 0x18,
  /** c→s: str cluster. */
  Leave: 0x19,
  /** s→c: str cluster, u32 remaining ms, str from, bytes data (id chosen by the server). */
  Invoke: 0x20,
  /** c→s: bytes reply data (id of the INVOKE). */
  InvokeReply: 0x21,
  /** c→s: str message; the caller gets RemoteError with it. */
  InvokeError: 0x22,
  /** s→c: empty body; the INVOKE's caller gave up or its deadline passed. */
  InvokeCancel: 0x23,
  /** s→c: INVOKE with headers (to clients that joined with `JoinFlag.Headers`): str cluster, u32 remaining ms, str from, headers, bytes data. */
  InvokeHeaders: 0x24,
  /** c→s: headers, bytes reply data (id of the INVOKE or INVOKE_HEADERS). */
  InvokeReplyHeaders: 0x25,
  /** c→s: empty body. */
  Status: 0x28,
  /** s→c: bytes UTF-8 JSON of NodeStatus. */
  StatusReply: 0x29,
  /** c→s: str cluster, bytes data. Answered OK with `u32 count` (members handed the data). */
  Broadcast: 0x30,
  /** s→c: str cluster, str from, bytes data (id chosen by the server); answer BROADCAST_ACK. */
  BroadcastDeliver: 0x31,
  /** c→s: empty body; the handler of the BROADCAST_DELIVER with this id finished. */
  BroadcastAck: 0x32,
  /** c→s: u32 subscription id, str pattern, u32 max pending messages (0 = default). */
  Subscribe: 0x40,
  /** c→s: u32 subscription id. */
  Unsubscribe: 0x41,
  /** s→c (id = subscription id): str topic, str from, u8 flags, [bytes key], [headers], u32 dropped, bytes data. */
  Message: 0x42,
  /** c→s: str topic, u8 flags, [bytes key], [headers], [str msg id], u8 ack, u32 timeout ms, bytes data. */
  Publish: 0x43,
  /** s→c: str stream, u32 partition, u64 offset (answer to a PUBLISH with ack). */
  PublishAck: 0x44,
  /** c→s: u32 timeout ms (0 = default). OK once the node's subscriptions are known to every linked peer. */
  Flush: 0x45,
  /** c→s: str cluster, u32 timeout ms (0 = default), u32 window (credit granted to the relay). */
  TunnelOpen: 0x50,
  /** s→c (id of the TUNNEL_OPEN): u32 tunnel id, str peer, u32 window (credit granted to the client). */
  TunnelOpened: 0x51,
  /** s→c (id = new tunnel id): str cluster, str from, u32 window (credit granted to the client). */
  TunnelIncoming: 0x52,
  /** both (id = tunnel id): bytes data — one message, at most the sender's credit. */
  TunnelData: 0x53,
  /** both (id = tunnel id): u32 bytes of credit returned to the other side. */
  TunnelCredit: 0x54,
  /** both (id = tunnel id): u8 kind (0 half-close, 1 failed), str error name, str message. */
  TunnelClose: 0x55,
  /** c→s: str name, str cluster, str subject, u16 replicas, u32 partitions, retention, u8 compact, u32 timeout ms. */
  StreamCreate: 0x60,
  /** c→s: str name, u32 timeout ms. Answered STREAM_INFO_REPLY or ERROR. */
  StreamInfo: 0x61,
  /** s→c: a stream's configuration and the state of every partition. */
  StreamInfoReply: 0x62,
  /** c→s: str name, u32 timeout ms. Answered OK or ERROR. */
  StreamDelete: 0x63,
  /** c→s: empty body. Answered STREAM_LIST_REPLY. */
  StreamList: 0x64,
  /** s→c: u32 n, then n × (str name, str cluster, str subject, u32 partitions, u16 replicas). */
  StreamListReply: 0x65,
  /** c→s: u8 kind, str stream, str name, str args (JSON), u32 timeout ms, [credential] (protocol-admin.ts). */
  StreamAdmin: 0x66,
  /** s→c: str result (JSON). */
  StreamAdminReply: 0x67,
  /** c→s: u32 consumer id, str stream, start, u8 flags, [u32 partition], [str durable], [u32 ack wait], u32 window. */
  Consume: 0x68,
  /** s→c (id = consumer id): str topic, u32 partition, u64 offset, u64 timestamp, u8 flags, [bytes key], [headers], bytes data. */
  ConsumeMessage: 0x69,
  /** c→s (id = consumer id): u32 bytes of credit returned to the relay. */
  ConsumeCredit: 0x6a,
  /** both (id = consumer id): u8 kind (0 ended, 1 failed), str error name, str message. */
  ConsumeClose: 0x6b,
  /** c→s: u32 consumer id, u32 partition, u64 offset. Answered OK or ERROR. */
  ConsumeAck: 0x6c,
  /** c→s: u32 consumer id, u32 partition, u64 offset, u32 delay ms: redeliver. Answered OK or ERROR. */
  ConsumeNak: 0x6d,
  /** c→s: u32 consumer id, u32 partition, u64 offset: never redeliver. Answered OK or ERROR. */
  ConsumeTerm: 0x6e,
  /** c→s: u32 consumer id, u32 partition, u64 offset: restart the ack wait. Answered OK or ERROR. */
  ConsumeWorking: 0x6f,
  /** c→s (id = consumer id): empty body; a deferred consumer starts pushing CONSUME_MESSAGE. */
  ConsumeStart: 0x70,
  /** c→s: u32 consumer id, u32 max, u32 expires ms; the messages as CONSUME_MESSAGE, then OK `u32 count`. */
  ConsumeFetch: 0x71,
  /** c→s: a key-value call (protocol-kv.ts). Answered KV_REPLY or ERROR. */
  KvCall: 0x78,
  /** s→c: the result of a KV_CALL. */
  KvReply: 0x79,
  /** c→s: opens a watch of a bucket (id = the watch). Answered OK, then KV_CHANGE frames. */
  KvWatch: 0x7a,
  /** s→c: one change of a watched bucket. */
  KvChange: 0x7b,
  /** either way: a watch ended (kind 0) or failed (kind 1, error name and message). */
  KvWatchClose: 0x7c,
  /** c→s: one stored message (`streams.get` / `streams.last`). Answered STREAM_READ_REPLY. */
  StreamRead: 0x7d,
  /** s→c: the message a STREAM_READ asked for. */
  StreamReadReply: 0x7e,
} as const

/**
 * JOIN flags (version 2): what the client serves for the cluster; `Headers`: send requests as
 * INVOKE_HEADERS (the client reads request headers).
 */
export const JoinFlag = { Requests: 1, Broadcasts: 2, Tunnels: 4, Headers: 8 } as const

/** Reserved opcode ranges (inclusive) and what they are kept for. */
export const RESERVED_OPCODES: ReadonlyArray<{ from: number; to: number; use: string }> = [
  { from: 0x30, to: 0x3f, use: 'broadcast' },
  { from: 0x40, to: 0x4f, use: 'pub/sub' },
  { from: 0x50, to: 0x5f, use: 'tunnels' },
  { from: 0x60, to: 0x6f, use: 'durable streams' },
  { from: 0x70, to: 0x7f, use: 'durable streams, continued (0x78-0x7f: key-value buckets, stream reads)' },
  { from: 0xf0, to: 0xff, use: 'private experiments' },
]

/** Form of the cluster key in JOIN: text (hex key or passphrase) or raw bytes. */
export const KeyForm = { Text: 0, Bytes: 1 } as const

/** One decoded frame; `body` is positioned at the start of the body. */
export interface Frame {
  opcode: number
  id: number
  body: BinaryReader
}

/** Appends one frame to `w`; `body` writes the body. The length is patched afterwards. */
export function writeFrame(
  w: BinaryWriter,
  opcode: number,
  id: number,
  body?: (w: BinaryWriter) => void,
): void {
  const start = w.length
  w.u32(0)
    .u8(opcode)
    .u32(id >>> 0)
  body?.(w)
  w.patchU32(start, w.length - start - 4)
}

/**
 * Splits a byte stream into frames. Holds at most one frame plus one chunk in memory;
 * a length field below 5 or above `maxFrame` throws `DecodeError` before any body is read.
 */
export class FrameDecoder {
  private chunks: Uint8Array[] = []
  private total = 0

  constructor(public maxFrame: number) {}

  /** Bytes buffered but not yet returned as frames. */
  get buffered(): number {
    return this.total
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return
    this.chunks.push(chunk)
    this.total += chunk.length
  }

  /** The next complete frame, or undefined until more bytes arrive. */
  next(): Frame | undefined {
    if (this.total < 4) return undefined
    if (this.chunks[0]!.length < 4) this.merge()
    const first = this.chunks[0]!
    const length = new DataView(first.buffer, first.byteOffset, 4).getUint32(0)
    if (length < MIN_FRAME_LENGTH) throw new DecodeError(`frame length ${length} is below the minimum of 5`)
    if (length > this.maxFrame) {
      throw new DecodeError(`frame of ${length} bytes exceeds the relay's limit of ${this.maxFrame} bytes`)
    }
    if (this.total < 4 + length) return undefined
    if (first.length < 4 + length) this.merge()
    const buf = this.chunks[0]!
    const frame = buf.subarray(4, 4 + length)
    if (buf.length === 4 + length) this.chunks.shift()
    else this.chunks[0] = buf.subarray(4 + length)
    this.total -= 4 + length
    const r = new BinaryReader(frame)
    return { opcode: r.u8('opcode'), id: r.u32('correlation id'), body: r }
  }

  private merge(): void {
    const all = new Uint8Array(this.total)
    let pos = 0
    for (const c of this.chunks) {
      all.set(c, pos)
      pos += c.length
    }
    this.chunks = [all]
  }
}

// ---- bodies -------------------------------------------------------------------------------

/** HELLO body. */
export interface Hello {
  version: number
  client: string
}

/** Writes a HELLO body: magic, version, client name. */
export function encodeHello(w: BinaryWriter, h: Hello): void {
  w.raw(MAGIC).u16(h.version).str(h.client)
}

/** Throws `DecodeError` on bad magic or truncation; the version is checked by the caller. */
export function decodeHello(r: BinaryReader): Hello {
  const magic = r.raw(4, 'magic')
  if (!magic.every((b, i) => b === MAGIC[i])) throw new DecodeError('bad magic: a HELLO starts with "PLXR"')
  const version = r.u16('version')
  const client = r.str('client name')
  r.end('HELLO')
  return { version, client }
}

/** WELCOME body. */
export interface Welcome {
  version: number
  nodeId: string
  network: string
  maxMessageSize: number
}

/** Writes a WELCOME body. */
export function encodeWelcome(w: BinaryWriter, m: Welcome): void {
  w.u16(m.version).str(m.nodeId).str(m.network).u32(m.maxMessageSize)
}

/** Reads a WELCOME body; throws `DecodeError` when truncated or with trailing bytes. */
export function decodeWelcome(r: BinaryReader): Welcome {
  const m = {
    version: r.u16('version'),
    nodeId: r.str('node id'),
    network: r.str('network'),
    maxMessageSize: 0,
  }
  m.maxMessageSize = r.u32('max message size')
  r.end('WELCOME')
  return m
}

/** ERROR body: an error class name from src/errors.ts and a message. */
export interface WireError {
  name: string
  message: string
}

/** Writes an ERROR body (the message is cut at 4096 characters). */
export function encodeError(w: BinaryWriter, e: WireError): void {
  w.str(e.name).str(truncate(e.message, 4096))
}

/** Reads an ERROR body; throws `DecodeError` when malformed. */
export function decodeError(r: BinaryReader): WireError {
  const e = { name: r.str('error name'), message: r.str('error message') }
  r.end('ERROR')
  return e
}

/** REQUEST body. */
export interface RequestBody {
  cluster: string
  timeoutMs: number
  data: Uint8Array
}

/** Writes a REQUEST body. */
export function encodeRequest(w: BinaryWriter, m: RequestBody): void {
  w.str(m.cluster).u32(m.timeoutMs).bytes(m.data)
}

/** Reads a REQUEST body; `data` over `maxData` bytes throws `DecodeError`. The cluster name is not validated here. */
export function decodeRequest(r: BinaryReader, maxData: number): RequestBody {
  const m = { cluster: r.str('cluster'), timeoutMs: r.u32('timeout'), data: r.bytes('data', maxData) }
  r.end('REQUEST')
  return m
}

/** JOIN body. Limits of 0 mean the node's default; `flags` is a set of `JoinFlag` bits. */
export interface JoinBody {
  cluster: string
  key: string | Uint8Array
  limits: { requests: number; broadcasts: number; tunnels: number; queueBytes: number }
  flags: number
}

/** Writes a JOIN body: a string key as key form 0 (UTF-8), bytes as form 1. */
export function encodeJoin(w: BinaryWriter, m: JoinBody): void {
  w.str(m.cluster)
  if (typeof m.key === 'string') w.u8(KeyForm.Text).bytes(new TextEncoder().encode(m.key))
  else w.u8(KeyForm.Bytes).bytes(m.key)
  const l = m.limits
  w.u32(l.requests).u32(l.broadcasts).u32(l.tunnels).u32(l.queueBytes).u8(m.flags)
}

/**
 * Reads a JOIN body of protocol `version` (version 1 has no flags byte: requests only); an
 * unknown key form, unknown flag bits or a key over 4096 bytes throw `DecodeError`.
 */
export function decodeJoin(r: BinaryReader, version = PROTOCOL_VERSION): JoinBody {
  const cluster = r.str('cluster')
  const form = r.u8('key form')
  const raw = r.bytes('key', 4096)
  let key: string | Uint8Array
  if (form === KeyForm.Text) {
    try {
      key = new TextDecoder('utf-8', { fatal: true }).decode(raw)
    } catch {
      throw new DecodeError('key is not valid UTF-8')
    }
  } else if (form === KeyForm.Bytes) key = raw
  else throw new DecodeError(`unknown key form ${form}`)
  const limits = {
    requests: r.u32('limits.requests'),
    broadcasts: r.u32('limits.broadcasts'),
    tunnels: 0,
    queueBytes: 0,
  }
  limits.tunnels = r.u32('limits.tunnels')
  limits.queueBytes = r.u32('limits.queueBytes')
  const flags = version >= 2 ? r.u8('flags') : JoinFlag.Requests
  if (flags > 15) throw new DecodeError(`unknown JOIN flags ${flags}`)
  r.end('JOIN')
  return { cluster, key, limits, flags }
}

/** INVOKE body (server → client). */
export interface InvokeBody {
  cluster: string
  remainingMs: number
  from: string
  data: Uint8Array
}

/** Writes an INVOKE body. */
export function encodeInvoke(w: BinaryWriter, m: InvokeBody): void {
  w.str(m.cluster).u32(m.remainingMs).str(m.from).bytes(m.data)
}

/** Reads an INVOKE body; `data` over `maxData` bytes throws `DecodeError`. */
export function decodeInvoke(r: BinaryReader, maxData: number): InvokeBody {
  const cluster = r.str('cluster')
  const remainingMs = r.u32('remaining')
  const from = r.str('from')
  const data = r.bytes('data', maxData)
  r.end('INVOKE')
  return { cluster, remainingMs, from, data }
}

/** A body made of one `bytes` field (REPLY, INVOKE_REPLY, STATUS_REPLY). */
export function decodeBytesBody(r: BinaryReader, what: string, max: number): Uint8Array {
  const b = r.bytes(what, max)
  r.end(what)
  return b
}

/** A body made of one `str` field (REFUSE, LEAVE, INVOKE_ERROR). */
export function decodeStrBody(r: BinaryReader, what: string): string {
  const s = r.str(what)
  r.end(what)
  return s
}

/** Human name of an opcode for error messages, e.g. `REQUEST (0x10)`. */
export function opcodeName(op: number): string {
  const hex = `0x${op.toString(16).padStart(2, '0')}`
  for (const [name, v] of Object.entries(Op)) {
    if (v === op) return `${name.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase()} (${hex})`
  }
  const reserved = RESERVED_OPCODES.find((r) => op >= r.from && op <= r.to)
  return reserved ? `${hex} (reserved for ${reserved.use})` : `${hex} (unassigned)`
}

function truncate(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s
}
