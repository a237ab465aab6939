/**
 * Frames of the per-peer link stream. Layout of every frame:
 *
 *   u32 length (of type + body) | u8 type | body
 *
 * Bodies use the binary codec (`src/util/binary.ts`). A frame whose length exceeds the
 * link's `maxFrameSize`, an unknown type, or a body that does not decode exactly resets
 * the link: a hostile peer can break its own link, never the node.
 */
import { MAX_HEADERS } from '../constants.js'
import { type BinaryReader, type BinaryWriter, DecodeError } from '../util/binary.js'
import { PeerInputError, peerCluster, peerHeaders, peerPayload, peerTimeout } from '../util/peer-input.js'

const EMPTY = new Uint8Array(0)

/** Bytes of the length prefix. */
export const FRAME_HEADER_BYTES = 4

/** Frame type codes. Values are part of the wire protocol: never renumber. */
export const FrameType = {
  /** Heartbeat; body: u64 token. */
  Ping: 1,
  /** Heartbeat answer; body: u64 token echoed. */
  Pong: 2,
  /** Signed membership announcement; body: bytes (see cluster/proof.ts). */
  Announce: 3,
  /**
   * Request; body: u32 id, str cluster, u32 remaining ms, u8 flags (`RequestFlag`),
   * [headers when flag 1: u16 n, n × (str name, str value)], bytes data.
   */
  Request: 4,
  /**
   * Reply; body: u32 id, u8 status, then bytes data (ok), headers and bytes data (ok with
   * headers), or str name, str message.
   */
  Reply: 5,
  /** The caller gave up on a request; body: u32 id. */
  Cancel: 6,
  /** Subscription interest; body in pubsub/frames.ts. */
  Interest: 7,
  /** A published message; body in pubsub/frames.ts. */
  Publish: 8,
  /** A cluster broadcast; body in broadcast/broadcast.ts. */
  Broadcast: 9,
  /** Tunnel frames; bodies in tunnel/frames.ts. */
  TunnelOpen: 10,
  TunnelAccept: 11,
  TunnelData: 12,
  TunnelCredit: 13,
  TunnelClose: 14,
  /** A Raft message of one group; body in replication/transport.ts. */
  Raft: 15,
  /** An internal call to one peer; body in rpc/rpc.ts. */
  RpcCall: 16,
  /** The reply to an `RpcCall`; body in rpc/rpc.ts. */
  RpcReply: 17,
  /** A cluster's signed stream table, flooded; body in streams/meta/directory.ts. */
  StreamTable: 18,
} as const

/** Reply status codes. */
export const ReplyStatus = {
  Ok: 0,
  /** The handler threw, or the member refused (name tells which error). */
  Error: 1,
  /** The request was not run: the receiver is not (or no longer) a member. Caller may retry. */
  NotMember: 2,
  /** The request was not run: the member's limits are full. Caller may try another member. */
  Overloaded: 3,
  /** As `Ok`, with the handler's headers before the data; sent only for `RequestFlag.ReplyHeaders`. */
  OkHeaders: 4,
} as const

/**
 * Request flag bits. A request without headers has flags 0 or `ReplyHeaders`, a body every
 * version reads (versions before headers ignore the flags byte); one with `Headers` is
 * refused by them as malformed.
 */
export const RequestFlag = {
  /** Headers follow the flags byte. */
  Headers: 1,
  /** The caller reads `OkHeaders` replies (the member may send the handler's reply headers). */
  ReplyHeaders: 2,
} as const

/** A decoded request. */
export interface RequestFrame {
  id: number
  cluster: string
  remainingMs: number
  flags: number
  headers?: Record<string, string>
  data: Uint8Array
}

/** A decoded reply (`OkHeaders` decodes as `Ok` with `headers`). */
export type ReplyFrame =
  | { id: number; status: typeof ReplyStatus.Ok; data: Uint8Array; headers?: Record<string, string> }
  | { id: number; status: number; name: string; message: string }

/** Appends one frame to `w`: writes the header, lets `body` write the rest, patches length. */
export function writeFrame(w: BinaryWriter, type: number, body: (w: BinaryWriter) => void): void {
  const start = w.length
  w.u32(0).u8(type)
  body(w)
  w.patchU32(start, w.length - start - FRAME_HEADER_BYTES)
}

/** Writes a request; `headers` given sets `RequestFlag.Headers` (added to `f.flags`). */
export function encodeRequest(w: BinaryWriter, f: RequestFrame): void {
  writeFrame(w, FrameType.Request, (b) => {
    b.u32(f.id)
      .str(f.cluster)
      .u32(Math.min(0xffffffff, Math.max(0, Math.floor(f.remainingMs))))
      .u8(f.headers ? f.flags | RequestFlag.Headers : f.flags & ~RequestFlag.Headers)
    if (f.headers) writeHeaders(b, f.headers)
    b.bytes(f.data)
  })
}

/** Writes headers: u16 n, n × (str name, str value). */
export function writeHeaders(w: BinaryWriter, headers: Record<string, string>): void {
  const entries = Object.entries(headers)
  w.u16(entries.length)
  for (const [k, v] of entries) w.str(k).str(v)
}

/** Reads headers written by `writeHeaders`, checked like `checkHeaders` (`PeerInputError`). */
export function readHeaders(r: BinaryReader): Record<string, string> {
  const n = r.u16('header count')
  if (n > MAX_HEADERS) throw new PeerInputError('headers', `too many headers (${n})`)
  const headers: Record<string, string> = {}
  for (let i = 0; i < n; i++) {
    const name = r.str('header name')
    if (Object.hasOwn(headers, name)) throw new PeerInputError('headers', `header ${name} repeated`)
    headers[name] = r.str('header value')
  }
  peerHeaders(headers)
  return headers
}

/**
 * Decodes a request. Its cluster name, deadline (at most `MAX_TIMEOUT`) and data (at most
 * `maxData`) are checked like `node.request` checks them (`PeerInputError`).
 */
export function decodeRequest(r: BinaryReader, maxData: number): RequestFrame {
  const id = r.u32('request id')
  const cluster = r.str('cluster')
  const remainingMs = r.u32('remaining ms')
  const flags = r.u8('flags')
  const f: RequestFrame = { id, cluster, remainingMs, flags, data: EMPTY }
  if (flags & RequestFlag.Headers) f.headers = readHeaders(r)
  f.data = r.bytes('request data')
  r.end('request')
  peerCluster(f.cluster)
  peerTimeout(f.remainingMs, 'remaining ms')
  peerPayload(f.data, maxData, 'request data')
  return f
}

/** Writes an ok reply; with `headers`, as `OkHeaders` (only for a caller that set `ReplyHeaders`). */
export function encodeReplyOk(
  w: BinaryWriter,
  id: number,
  data: Uint8Array,
  headers?: Record<string, string>,
): void {
  writeFrame(w, FrameType.Reply, (b) => {
    if (headers) writeHeaders(b.u32(id).u8(ReplyStatus.OkHeaders), headers)
    else b.u32(id).u8(ReplyStatus.Ok)
    b.bytes(data)
  })
}

export function encodeReplyError(
  w: BinaryWriter,
  id: number,
  status: number,
  name: string,
  message: string,
): void {
  writeFrame(w, FrameType.Reply, (b) => b.u32(id).u8(status).str(name).str(truncate(message, 4096)))
}

export function decodeReply(r: BinaryReader, maxData: number): ReplyFrame {
  const id = r.u32('reply id')
  const status = r.u8('reply status')
  if (status === ReplyStatus.Ok) {
    const data = peerPayload(r.bytes('reply data'), maxData, 'reply data')
    r.end('reply')
    return { id, status, data }
  }
  if (status === ReplyStatus.OkHeaders) {
    const headers = readHeaders(r)
    const data = peerPayload(r.bytes('reply data'), maxData, 'reply data')
    r.end('reply')
    return { id, status: ReplyStatus.Ok, data, headers }
  }
  if (status > ReplyStatus.OkHeaders) throw new DecodeError(`unknown reply status ${status}`)
  const name = r.str('error name')
  const message = r.str('error message')
  r.end('reply')
  return { id, status, name, message }
}

export function encodeU32Frame(w: BinaryWriter, type: number, v: number): void {
  writeFrame(w, type, (b) => b.u32(v))
}

export function encodeU64Frame(w: BinaryWriter, type: number, v: number): void {
  writeFrame(w, type, (b) => b.u64(v))
}

export function encodeBytesFrame(w: BinaryWriter, type: number, data: Uint8Array): void {
  writeFrame(w, type, (b) => b.bytes(data))
}

function truncate(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s
}
