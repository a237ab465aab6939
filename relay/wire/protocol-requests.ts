/**
 * Bodies of the relay frames for request headers and `requestMany` (0x13–0x16, 0x24–0x25).
 * Layouts are normative in `docs/relay-protocol.md` ("Request headers and REQUEST_MANY");
 * headers are `u16 n, n × (str name, str value)` as in PUBLISH. Every decoder consumes the
 * body exactly and throws `DecodeError` on anything malformed; the header limits themselves
 * (64 headers, names 1–256 bytes, 16 KiB) are checked by the node, which answers
 * `ERROR InvalidArgumentError` naming the field.
 */
import type { BinaryReader, BinaryWriter } from '../../src/util/binary.js'
import { DecodeError } from '../../src/util/binary.js'
import { readHeaders, writeHeaders } from './protocol-ext.js'

/** Header count a decoder accepts before the node checks the limits (as PUBLISH). */
const WIRE_MAX_HEADERS = 0xffff

/** Empty headers on the wire (`u16 0`) mean none. */
function readOptionalHeaders(r: BinaryReader, max: number): Record<string, string> | undefined {
  const h = readHeaders(r, max)
  return Object.keys(h).length > 0 ? h : undefined
}

/** REQUEST_HEADERS body (REQUEST_MANY adds `maxReplies`). */
export interface RequestHeadersBody {
  cluster: string
  timeoutMs: number
  headers: Record<string, string> | undefined
  data: Uint8Array
}

/** Writes a REQUEST_HEADERS body. */
export function encodeRequestHeaders(w: BinaryWriter, m: RequestHeadersBody): void {
  w.str(m.cluster).u32(m.timeoutMs)
  writeHeaders(w, m.headers ?? {})
  w.bytes(m.data)
}

/** Reads a REQUEST_HEADERS body; `data` over `maxData` bytes throws `DecodeError`. */
export function decodeRequestHeaders(r: BinaryReader, maxData: number): RequestHeadersBody {
  const cluster = r.str('cluster')
  const timeoutMs = r.u32('timeout')
  const headers = readOptionalHeaders(r, WIRE_MAX_HEADERS)
  const data = r.bytes('data', maxData)
  r.end('REQUEST_HEADERS')
  return { cluster, timeoutMs, headers, data }
}

/** REQUEST_MANY body; `maxReplies` 0 means one from every member. */
export interface RequestManyBody extends RequestHeadersBody {
  maxReplies: number
}

/** Writes a REQUEST_MANY body. */
export function encodeRequestMany(w: BinaryWriter, m: RequestManyBody): void {
  w.str(m.cluster).u32(m.timeoutMs).u32(m.maxReplies)
  writeHeaders(w, m.headers ?? {})
  w.bytes(m.data)
}

/** Reads a REQUEST_MANY body. */
export function decodeRequestMany(r: BinaryReader, maxData: number): RequestManyBody {
  const cluster = r.str('cluster')
  const timeoutMs = r.u32('timeout')
  const maxReplies = r.u32('max replies')
  const headers = readOptionalHeaders(r, WIRE_MAX_HEADERS)
  const data = r.bytes('data', maxData)
  r.end('REQUEST_MANY')
  return { cluster, timeoutMs, maxReplies, headers, data }
}

/** A reply with headers: REPLY_HEADERS and INVOKE_REPLY_HEADERS bodies. */
export interface ReplyHeadersBody {
  headers: Record<string, string> | undefined
  data: Uint8Array
}

/** Writes a REPLY_HEADERS / INVOKE_REPLY_HEADERS body. */
export function encodeReplyHeaders(w: BinaryWriter, m: ReplyHeadersBody): void {
  writeHeaders(w, m.headers ?? {})
  w.bytes(m.data)
}

/** Reads a REPLY_HEADERS / INVOKE_REPLY_HEADERS body (`what` names it in errors). */
export function decodeReplyHeaders(r: BinaryReader, maxData: number, what: string): ReplyHeadersBody {
  const headers = readOptionalHeaders(r, WIRE_MAX_HEADERS)
  const data = r.bytes('data', maxData)
  r.end(what)
  return { headers, data }
}

/** MANY_REPLY kinds. */
export const ManyKind = {
  /** A member's reply: headers and data follow. */
  Reply: 0,
  /** A member failed: error name and message follow. */
  Failed: 1,
} as const

/** MANY_REPLY body: one member's reply or failure. */
export type ManyReplyBody =
  | {
      from: string
      kind: typeof ManyKind.Reply
      headers: Record<string, string> | undefined
      data: Uint8Array
    }
  | { from: string; kind: typeof ManyKind.Failed; name: string; message: string }

/** Writes a MANY_REPLY body (an error message is cut at 4096 characters). */
export function encodeManyReply(w: BinaryWriter, m: ManyReplyBody): void {
  w.str(m.from).u8(m.kind)
  if (m.kind === ManyKind.Reply) encodeReplyHeaders(w, m)
  else w.str(m.name).str(m.message.length > 4096 ? `${m.message.slice(0, 4096)}…` : m.message)
}

/** Reads a MANY_REPLY body; an unknown kind throws `DecodeError`. */
export function decodeManyReply(r: BinaryReader, maxData: number): ManyReplyBody {
  const from = r.str('from')
  const kind = r.u8('kind')
  if (kind === ManyKind.Reply) return { from, kind, ...decodeReplyHeaders(r, maxData, 'MANY_REPLY') }
  if (kind !== ManyKind.Failed) throw new DecodeError(`unknown MANY_REPLY kind ${kind}`)
  const name = r.str('error name')
  const message = r.str('error message')
  r.end('MANY_REPLY')
  return { from, kind, name, message }
}

/** INVOKE_HEADERS body (server → client). */
export interface InvokeHeadersBody {
  cluster: string
  remainingMs: number
  from: string
  headers: Record<string, string> | undefined
  data: Uint8Array
}

/** Writes an INVOKE_HEADERS body. */
export function encodeInvokeHeaders(w: BinaryWriter, m: InvokeHeadersBody): void {
  w.str(m.cluster).u32(m.remainingMs).str(m.from)
  writeHeaders(w, m.headers ?? {})
  w.bytes(m.data)
}

/** Reads an INVOKE_HEADERS body; `data` over `maxData` bytes throws `DecodeError`. */
export function decodeInvokeHeaders(r: BinaryReader, maxData: number): InvokeHeadersBody {
  const cluster = r.str('cluster')
  const remainingMs = r.u32('remaining')
  const from = r.str('from')
  const headers = readOptionalHeaders(r, WIRE_MAX_HEADERS)
  const data = r.bytes('data', maxData)
  r.end('INVOKE_HEADERS')
  return { cluster, remainingMs, from, headers, data }
}
