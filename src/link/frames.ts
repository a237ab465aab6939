/**
 * Frames of the per-peer link stream. Layout of every frame:
 *
 *   u32 length (of type + body) | u8 type | body
 *
 * Bodies use the binary codec (`src/util/binary.ts`). A frame whose length exceeds the
 * link's `maxFrameSize`, an unknown type, or a body that does not decode exactly resets
 * the link: a hostile peer can break its own link, never the node.
 */
import { type BinaryReader, type BinaryWriter, DecodeError } from '../util/binary.js'
import { peerCluster, peerPayload, peerTimeout } from '../util/peer-input.js'

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
  /** Request; body: u32 id, str cluster, u32 remaining ms, u8 flags, bytes data. */
  Request: 4,
  /** Reply; body: u32 id, u8 status, then bytes data (ok) or str name, str message. */
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
} as const

/** A decoded request. */
export interface RequestFrame {
  id: number
  cluster: string
  remainingMs: number
  flags: number
  data: Uint8Array
}

/** A decoded reply. */
export type ReplyFrame =
  | { id: number; status: typeof ReplyStatus.Ok; data: Uint8Array }
  | { id: number; status: number; name: string; message: string }

/** Appends one frame to `w`: writes the header, lets `body` write the rest, patches length. */
export function writeFrame(w: BinaryWriter, type: number, body: (w: BinaryWriter) => void): void {
  const start = w.length
  w.u32(0).u8(type)
  body(w)
  w.patchU32(start, w.length - start - FRAME_HEADER_BYTES)
}

export function encodeRequest(w: BinaryWriter, f: RequestFrame): void {
  writeFrame(w, FrameType.Request, (b) =>
    b
      .u32(f.id)
      .str(f.cluster)
      .u32(Math.min(0xffffffff, Math.max(0, Math.floor(f.remainingMs))))
      .u8(f.flags)
      .bytes(f.data),
  )
}

/**
 * Decodes a request. Its cluster name, deadline (at most `MAX_TIMEOUT`) and data (at most
 * `maxData`) are checked like `node.request` checks them (`PeerInputError`).
 */
export function decodeRequest(r: BinaryReader, maxData: number): RequestFrame {
  const f = {
    id: r.u32('request id'),
    cluster: r.str('cluster'),
    remainingMs: r.u32('remaining ms'),
    flags: r.u8('flags'),
    data: r.bytes('request data'),
  }
  r.end('request')
  peerCluster(f.cluster)
  peerTimeout(f.remainingMs, 'remaining ms')
  peerPayload(f.data, maxData, 'request data')
  return f
}

export function encodeReplyOk(w: BinaryWriter, id: number, data: Uint8Array): void {
  writeFrame(w, FrameType.Reply, (b) => b.u32(id).u8(ReplyStatus.Ok).bytes(data))
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
  if (status > ReplyStatus.Overloaded) throw new DecodeError(`unknown reply status ${status}`)
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
