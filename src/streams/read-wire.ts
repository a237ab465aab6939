/**
 * Body of `s.get`, one stored message of a partition, answered by its leader
 * (host/read-serve.ts): `str stream | u64 createdIndex | u16 partition | u8 op (1 at an
 * offset, 2 the latest live message of a key) | op 1: u64 offset | op 2: bytes key | [bytes
 * token hash]`; reply `u8 status` — 0 ok: `u8 found | [u64 offset | u64 timestamp | str topic
 * | record body (wire.ts)] | u8 flags (1: the key index dropped keys for its bound)`; 1 not
 * leader: `str hint`; 3 not here.
 */
import { BinaryReader, BinaryWriter, DecodeError } from '../util/binary.js'
import type { PartitionMessage } from './partition/types.js'
import {
  decodeRouted,
  encodeRouted,
  type PartitionRef,
  type Routed,
  readRecordBody,
  readRef,
  recordBodySize,
  writeRecordBody,
  writeRef,
} from './wire.js'

/** A read of one message: at `offset`, or the latest live one of `key`. */
export type GetCall = PartitionRef & { auth?: Uint8Array } & (
    | { op: 'offset'; offset: number }
    | { op: 'key'; key: Uint8Array }
  )

/** The message read (undefined: none), and whether a key miss may be the index's bound. */
export interface GetResult {
  message: PartitionMessage | undefined
  dropped: boolean
}

/** Encodes an `s.get` call. */
export function encodeGetCall(c: GetCall): Uint8Array {
  const b = writeRef(new BinaryWriter(64), c)
  if (c.op === 'offset') b.u8(1).u64(c.offset)
  else b.u8(2).bytes(c.key)
  if (c.auth !== undefined) b.bytes(c.auth)
  return b.finish().slice()
}

/** Decodes an `s.get` call; `DecodeError` on malformed bytes. */
export function decodeGetCall(bytes: Uint8Array): GetCall {
  const r = new BinaryReader(bytes)
  const ref = readRef(r)
  const op = r.u8('get op')
  let c: GetCall
  if (op === 1) c = { ...ref, op: 'offset', offset: r.u64('offset') }
  else if (op === 2) c = { ...ref, op: 'key', key: r.bytes('key') }
  else throw new DecodeError(`unknown get op ${op}`)
  if (r.remaining > 0) c.auth = r.bytes('capability hash')
  r.end('get call')
  return c
}

/** Encodes an `s.get` reply. */
export function encodeGetReply(x: Routed<GetResult>): Uint8Array {
  const m = x.status === 'ok' ? x.value.message : undefined
  const size = m === undefined ? 64 : 64 + m.topic.length * 3 + recordBodySize(m)
  return encodeRouted(
    x,
    (b, v) => {
      if (v.message === undefined) b.u8(0)
      else {
        b.u8(1).u64(v.message.offset).u64(v.message.timestamp).str(v.message.topic)
        writeRecordBody(b, v.message)
      }
      b.u8(v.dropped ? 1 : 0)
    },
    size,
  )
}

/** Decodes an `s.get` reply; `DecodeError` on malformed bytes. */
export function decodeGetReply(bytes: Uint8Array): Routed<GetResult> {
  return decodeRouted(
    bytes,
    (r) => {
      let message: PartitionMessage | undefined
      if (r.u8('found') === 1) {
        const offset = r.u64('offset')
        const timestamp = r.u64('timestamp')
        const topic = r.str('topic')
        message = { offset, timestamp, topic, ...readRecordBody(r) }
      }
      return { message, dropped: (r.u8('flags') & 1) === 1 }
    },
    'get reply',
  )
}
