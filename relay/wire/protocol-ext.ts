/**
 * Bodies of the version-2 relay frames: broadcast (0x30–0x32), pub/sub (0x40–0x44) and
 * tunnels (0x50–0x55). Layouts are normative in `docs/relay-protocol.md`; every decoder
 * consumes the body exactly and throws `DecodeError` on anything malformed.
 */
import { MAX_HEADERS, MAX_KEY_BYTES } from '../../src/constants.js'
import { type BinaryReader, type BinaryWriter, DecodeError } from '../../src/util/binary.js'

/** PUBLISH / MESSAGE flag bits: which optional fields follow. */
export const MsgFlag = { Key: 1, Headers: 2, MsgId: 4 } as const
/** PUBLISH only: `str capability` follows the msg id (a per-call capability, passed through). */
export const PUBLISH_CAPABILITY_FLAG = 8
/** PUBLISH ack modes on the wire. */
export const AckMode = { none: 0, leader: 1, all: 2 } as const
/** TUNNEL_CLOSE kinds. */
export const CloseKind = {
  /** The sender will send no more data (like a TCP half-close). */
  Half: 0,
  /** The tunnel is over in both directions; the error name and message say why. */
  Failed: 1,
} as const
/**
 * Most headers one message may carry, and its largest key (bytes): the library's limits
 * (`src/constants.ts`; docs/relay-protocol.md "Message limits"), checked at publish time by the
 * client and by the node (a PUBLISH over them is answered `ERROR InvalidArgumentError`).
 */
export { MAX_HEADERS }
export const MAX_KEY = MAX_KEY_BYTES

/** BROADCAST body. */
export interface BroadcastBody {
  cluster: string
  data: Uint8Array
}

/** Writes a BROADCAST body. */
export function encodeBroadcast(w: BinaryWriter, m: BroadcastBody): void {
  w.str(m.cluster).bytes(m.data)
}

/** Reads a BROADCAST body; `data` over `maxData` bytes throws `DecodeError`. */
export function decodeBroadcast(r: BinaryReader, maxData: number): BroadcastBody {
  const m = { cluster: r.str('cluster'), data: r.bytes('data', maxData) }
  r.end('BROADCAST')
  return m
}

/** BROADCAST_DELIVER body. */
export interface BroadcastDeliverBody {
  cluster: string
  from: string
  data: Uint8Array
}

/** Writes a BROADCAST_DELIVER body. */
export function encodeBroadcastDeliver(w: BinaryWriter, m: BroadcastDeliverBody): void {
  w.str(m.cluster).str(m.from).bytes(m.data)
}

/** Reads a BROADCAST_DELIVER body. */
export function decodeBroadcastDeliver(r: BinaryReader, maxData: number): BroadcastDeliverBody {
  const m = { cluster: r.str('cluster'), from: r.str('from'), data: r.bytes('data', maxData) }
  r.end('BROADCAST_DELIVER')
  return m
}

/**
 * SUBSCRIBE body. `maxPending` 0 means the relay's default. `queue`, a trailing optional
 * field (absent in frames of clients from before queue groups), names the queue group.
 */
export interface SubscribeBody {
  subId: number
  pattern: string
  maxPending: number
  queue?: string | undefined
}

/** Writes a SUBSCRIBE body; the queue field only when there is one. */
export function encodeSubscribe(w: BinaryWriter, m: SubscribeBody): void {
  w.u32(m.subId).str(m.pattern).u32(m.maxPending)
  if (m.queue !== undefined) w.str(m.queue)
}

/** Reads a SUBSCRIBE body, with or without the queue (both are validated by the caller). */
export function decodeSubscribe(r: BinaryReader): SubscribeBody {
  const m: SubscribeBody = {
    subId: r.u32('subscription id'),
    pattern: r.str('pattern'),
    maxPending: r.u32('max pending'),
  }
  if (r.remaining > 0) m.queue = r.str('queue')
  r.end('SUBSCRIBE')
  return m
}

/** Writes a FLUSH body: the timeout in ms (0 = the node's default, 10 s). */
export function encodeFlush(w: BinaryWriter, timeoutMs: number): void {
  w.u32(timeoutMs)
}

/** Reads a FLUSH body: the timeout in ms (0 = the node's default; checked by the node). */
export function decodeFlush(r: BinaryReader): number {
  const timeoutMs = r.u32('timeout ms')
  r.end('FLUSH')
  return timeoutMs
}

/** Reads an UNSUBSCRIBE body: the subscription id. */
export function decodeUnsubscribe(r: BinaryReader): number {
  const id = r.u32('subscription id')
  r.end('UNSUBSCRIBE')
  return id
}

/** Writes headers: u16 n, n × (str name, str value). */
export function writeHeaders(w: BinaryWriter, headers: Record<string, string>): void {
  const entries = Object.entries(headers)
  w.u16(entries.length)
  for (const [k, v] of entries) w.str(k).str(v)
}

/** Reads headers; more than `max` is a malformed frame. */
export function readHeaders(r: BinaryReader, max = MAX_HEADERS): Record<string, string> {
  const n = r.u16('header count')
  if (n > max) throw new DecodeError(`${n} headers, at most ${max} allowed`)
  const h: Record<string, string> = {}
  for (let i = 0; i < n; i++) {
    const k = r.str('header name')
    h[k] = r.str('header value')
  }
  return h
}

/** MESSAGE body (the subscription id is the frame's correlation id). */
export interface MessageBody {
  topic: string
  from: string
  key?: Uint8Array
  headers?: Record<string, string>
  /** Messages of this subscription the relay dropped since the previous MESSAGE. */
  dropped: number
  data: Uint8Array
}

/** Writes a MESSAGE body. */
export function encodeMessage(w: BinaryWriter, m: MessageBody): void {
  const flags = (m.key ? MsgFlag.Key : 0) | (m.headers ? MsgFlag.Headers : 0)
  w.str(m.topic).str(m.from).u8(flags)
  if (m.key) w.bytes(m.key)
  if (m.headers) writeHeaders(w, m.headers)
  w.u32(m.dropped).bytes(m.data)
}

/** Reads a MESSAGE body. */
export function decodeMessage(r: BinaryReader, maxData: number): MessageBody {
  const topic = r.str('topic')
  const from = r.str('from')
  const flags = r.u8('flags')
  if (flags & ~(MsgFlag.Key | MsgFlag.Headers)) throw new DecodeError(`unknown MESSAGE flags ${flags}`)
  const m: MessageBody = { topic, from, dropped: 0, data: new Uint8Array() }
  // Keys are bounded by the frame here: a message stored before the limits held still reads.
  if (flags & MsgFlag.Key) m.key = r.bytes('key')
  if (flags & MsgFlag.Headers) m.headers = readHeaders(r)
  m.dropped = r.u32('dropped')
  m.data = r.bytes('data', maxData)
  r.end('MESSAGE')
  return m
}

/** PUBLISH body. */
export interface PublishBody {
  topic: string
  key?: Uint8Array
  headers?: Record<string, string>
  msgId?: string
  /** A capability (`pxc1.…`) the node publishes this message with (flag 0x08). */
  capability?: string
  ack: 'none' | 'leader' | 'all'
  /** 0 = the node's default. */
  timeoutMs: number
  data: Uint8Array
}

/** Writes a PUBLISH body. */
export function encodePublish(w: BinaryWriter, m: PublishBody): void {
  const flags =
    (m.key ? MsgFlag.Key : 0) |
    (m.headers ? MsgFlag.Headers : 0) |
    (m.msgId !== undefined ? MsgFlag.MsgId : 0) |
    (m.capability !== undefined ? PUBLISH_CAPABILITY_FLAG : 0)
  w.str(m.topic).u8(flags)
  if (m.key) w.bytes(m.key)
  if (m.headers) writeHeaders(w, m.headers)
  if (m.msgId !== undefined) w.str(m.msgId)
  if (m.capability !== undefined) w.str(m.capability)
  w.u8(AckMode[m.ack]).u32(m.timeoutMs).bytes(m.data)
}

/**
 * Reads a PUBLISH body. The topic, key, headers and msg id are bounded here only by the
 * frame: the caller validates them at publish (`node.publish`), so a field over a limit is
 * answered `ERROR InvalidArgumentError` naming it and the connection stays open.
 */
export function decodePublish(r: BinaryReader, maxData: number): PublishBody {
  const topic = r.str('topic')
  const flags = r.u8('flags')
  if (flags & ~15) throw new DecodeError(`unknown PUBLISH flags ${flags}`)
  const m: PublishBody = { topic, ack: 'none', timeoutMs: 0, data: new Uint8Array() }
  if (flags & MsgFlag.Key) m.key = r.bytes('key')
  if (flags & MsgFlag.Headers) m.headers = readHeaders(r, 0xffff)
  if (flags & MsgFlag.MsgId) m.msgId = r.str('msg id')
  if (flags & PUBLISH_CAPABILITY_FLAG) m.capability = r.str('capability')
  const ack = r.u8('ack')
  if (ack > 2) throw new DecodeError(`unknown ack mode ${ack}`)
  m.ack = ack === 0 ? 'none' : ack === 1 ? 'leader' : 'all'
  m.timeoutMs = r.u32('timeout')
  m.data = r.bytes('data', maxData)
  r.end('PUBLISH')
  return m
}

/** PUBLISH_ACK body: where a message with `ack` was stored. */
export interface PublishAckBody {
  stream: string
  partition: number
  offset: number
  /** The `msgId` was already stored (at `offset`): nothing was added. */
  duplicate?: boolean
}

/** Writes a PUBLISH_ACK body: `str stream | u32 partition | u64 offset | u8 duplicate`. */
export function encodePublishAck(w: BinaryWriter, m: PublishAckBody): void {
  w.str(m.stream)
    .u32(m.partition)
    .u64(m.offset)
    .u8(m.duplicate ? 1 : 0)
}

/** Reads a PUBLISH_ACK body. */
export function decodePublishAck(r: BinaryReader): PublishAckBody {
  const m: PublishAckBody = {
    stream: r.str('stream'),
    partition: r.u32('partition'),
    offset: r.u64('offset'),
  }
  if (r.u8('duplicate') === 1) m.duplicate = true
  r.end('PUBLISH_ACK')
  return m
}

/** TUNNEL_OPEN body. */
export interface TunnelOpenBody {
  cluster: string
  timeoutMs: number
  window: number
}

/** Writes a TUNNEL_OPEN body. */
export function encodeTunnelOpen(w: BinaryWriter, m: TunnelOpenBody): void {
  w.str(m.cluster).u32(m.timeoutMs).u32(m.window)
}

/** Reads a TUNNEL_OPEN body. */
export function decodeTunnelOpen(r: BinaryReader): TunnelOpenBody {
  const m = { cluster: r.str('cluster'), timeoutMs: r.u32('timeout'), window: r.u32('window') }
  r.end('TUNNEL_OPEN')
  return m
}

/** TUNNEL_OPENED body. */
export interface TunnelOpenedBody {
  tunnelId: number
  peer: string
  window: number
}

/** Writes a TUNNEL_OPENED body. */
export function encodeTunnelOpened(w: BinaryWriter, m: TunnelOpenedBody): void {
  w.u32(m.tunnelId).str(m.peer).u32(m.window)
}

/** Reads a TUNNEL_OPENED body. */
export function decodeTunnelOpened(r: BinaryReader): TunnelOpenedBody {
  const m = { tunnelId: r.u32('tunnel id'), peer: r.str('peer'), window: r.u32('window') }
  r.end('TUNNEL_OPENED')
  if (m.tunnelId === 0) throw new DecodeError('tunnel id 0')
  return m
}

/** TUNNEL_INCOMING body (the tunnel id is the frame's correlation id). */
export interface TunnelIncomingBody {
  cluster: string
  from: string
  window: number
}

/** Writes a TUNNEL_INCOMING body. */
export function encodeTunnelIncoming(w: BinaryWriter, m: TunnelIncomingBody): void {
  w.str(m.cluster).str(m.from).u32(m.window)
}

/** Reads a TUNNEL_INCOMING body. */
export function decodeTunnelIncoming(r: BinaryReader): TunnelIncomingBody {
  const m = { cluster: r.str('cluster'), from: r.str('from'), window: r.u32('window') }
  r.end('TUNNEL_INCOMING')
  return m
}

/** Reads a TUNNEL_CREDIT body: the bytes of credit returned. */
export function decodeTunnelCredit(r: BinaryReader): number {
  const n = r.u32('credit')
  r.end('TUNNEL_CREDIT')
  return n
}

/** TUNNEL_CLOSE body. */
export interface TunnelCloseBody {
  kind: number
  name: string
  message: string
}

/** Writes a TUNNEL_CLOSE body (the message is cut at 1024 characters). */
export function encodeTunnelClose(w: BinaryWriter, m: TunnelCloseBody): void {
  w.u8(m.kind).str(m.name).str(m.message.slice(0, 1024))
}

/** Reads a TUNNEL_CLOSE body; an unknown kind throws `DecodeError`. */
export function decodeTunnelClose(r: BinaryReader): TunnelCloseBody {
  const kind = r.u8('kind')
  if (kind > CloseKind.Failed) throw new DecodeError(`unknown TUNNEL_CLOSE kind ${kind}`)
  const m = { kind, name: r.str('error name'), message: r.str('message') }
  r.end('TUNNEL_CLOSE')
  return m
}
