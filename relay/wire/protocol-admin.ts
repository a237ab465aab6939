/**
 * STREAM_ADMIN (0x66) and STREAM_ADMIN_REPLY (0x67): the stream administration calls beyond
 * create/info/delete (docs/relay-protocol.md, "Durable streams"). One frame for the five
 * calls, whose arguments and results are small structured values carried as JSON text:
 *
 * STREAM_ADMIN: `u8 kind | str stream | str name | str args | u32 timeout ms | [credential]`
 * - kind 1 CONSUMERS (`streams.consumers(stream)`): name and args ''; answered
 *   STREAM_ADMIN_REPLY with the `ConsumerSummary[]` as JSON;
 * - kind 2 CONSUMER_INFO (`consumerInfo(stream, name)`): answered with the `ConsumerInfo`;
 * - kind 3 CONSUMER_DELETE (`deleteConsumer(stream, name)`): answered OK;
 * - kind 4 PURGE (`purge(stream, args)`, args `{"before"?, "partition"?, "key"?}`, `key` a
 *   UTF-8 string, or `"keyBase64"` for other bytes): answered with `[{ partition, firstOffset }]`;
 * - kind 5 UPDATE (`update(stream, args)`, args `{"retention": {…}}`): answered
 *   STREAM_INFO_REPLY.
 * The credential tail is the one of STREAM_CREATE (protocol-streams.ts `RelayAuth`).
 */
import { type BinaryReader, type BinaryWriter, DecodeError } from '../../src/util/binary.js'
import { type RelayAuth, readRelayAuth, writeRelayAuth } from './protocol-streams.js'

/** STREAM_ADMIN kinds. */
export const AdminKind = { Consumers: 1, ConsumerInfo: 2, ConsumerDelete: 3, Purge: 4, Update: 5 } as const
/** A STREAM_ADMIN kind. */
export type AdminKindCode = (typeof AdminKind)[keyof typeof AdminKind]

/** A STREAM_ADMIN body. */
export interface StreamAdminBody {
  kind: AdminKindCode
  stream: string
  /** The consumer name (kinds 2, 3); '' otherwise. */
  name: string
  /** Arguments as JSON ('' none). */
  args: string
  /** 0 = the node's default. */
  timeoutMs: number
  auth?: RelayAuth
}

/** Writes a STREAM_ADMIN body. */
export function encodeStreamAdmin(w: BinaryWriter, m: StreamAdminBody): void {
  w.u8(m.kind).str(m.stream).str(m.name).str(m.args).u32(m.timeoutMs)
  writeRelayAuth(w, m.auth)
}

/** Reads a STREAM_ADMIN body; `DecodeError` on an unknown kind or a malformed body. */
export function decodeStreamAdmin(r: BinaryReader): StreamAdminBody {
  const kind = r.u8('admin kind')
  if (kind < 1 || kind > 5) throw new DecodeError(`unknown STREAM_ADMIN kind ${kind}`)
  const m: StreamAdminBody = {
    kind: kind as AdminKindCode,
    stream: r.str('stream'),
    name: r.str('name'),
    args: r.str('args'),
    timeoutMs: r.u32('timeout'),
  }
  const auth = readRelayAuth(r)
  if (auth !== undefined) m.auth = auth
  r.end('STREAM_ADMIN')
  return m
}

/** Parses the JSON `args` of a STREAM_ADMIN (an object; '' is `{}`); `DecodeError` otherwise. */
export function parseAdminArgs(args: string): Record<string, unknown> {
  if (args === '') return {}
  let v: unknown
  try {
    v = JSON.parse(args)
  } catch {
    throw new DecodeError('STREAM_ADMIN args are not JSON')
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new DecodeError('STREAM_ADMIN args must be a JSON object')
  return v as Record<string, unknown>
}
