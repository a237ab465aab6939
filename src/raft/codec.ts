/**
 * Compact binary encodings of Raft messages, entries and durable state, on the project codec
 * (`BinaryWriter`/`BinaryReader`, big-endian). Every decoder validates what it reads and
 * throws `DecodeError` on anything malformed, truncated, oversized or semantically impossible,
 * so a hostile peer cannot make the core misbehave through the wire.
 */
import { BinaryReader, BinaryWriter, DecodeError, uninitializedBytes } from '../util/binary.js'
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type EntryType,
  type HardState,
  MESSAGE_TYPES,
  type Message,
  type NodeId,
  type Snapshot,
} from './types.js'

/** Message format version written first in every encoded message. */
export const RAFT_CODEC_VERSION = 1
/** Longest node id accepted by the decoders, in UTF-8 bytes. */
export const MAX_NODE_ID_BYTES = 256
const utf8 = new TextEncoder()
const ENTRY_MIN_BYTES = 8 + 8 + 1 + 4
const FLAG_REJECT = 1
const FLAG_TRANSFER = 2
const FLAG_RECOVERING = 4

function writeEntry(w: BinaryWriter, e: Entry): void {
  w.u64(e.index)
    .u64(e.term)
    .u8(e.type === 'confChange' ? 1 : 0)
    .bytes(e.data)
}

function readId(r: BinaryReader, what: string): NodeId {
  const id = r.str(what)
  if (id.length === 0 || (id.length * 3 > MAX_NODE_ID_BYTES && utf8.encode(id).length > MAX_NODE_ID_BYTES)) {
    throw new DecodeError(`${what} must be 1..${MAX_NODE_ID_BYTES} bytes`)
  }
  return id
}

function readEntry(r: BinaryReader): Entry {
  const index = r.u64('entry index')
  const term = r.u64('entry term')
  const t = r.u8('entry type')
  if (t > 1) throw new DecodeError(`unknown entry type ${t}`)
  const type: EntryType = t === 1 ? 'confChange' : 'normal'
  // The entry outlives the frame it was read from. A view that spans most of its buffer (a
  // large frame, assembled in a buffer of its own) is kept as it is; a small one is copied,
  // or it would pin a whole read chunk of the link for as long as the entry lives.
  const view = r.bytes('entry data', r.remaining)
  const data = view.byteLength * 2 >= view.buffer.byteLength ? view : view.slice()
  if (type === 'confChange') decodeConfChange(data) // validate now, not when it is applied
  return { index, term, type, data }
}

/** Encodes one entry (for storage or tests). The result is a fresh copy. */
export function encodeEntry(e: Entry): Uint8Array {
  const w = new BinaryWriter(e.data.length + 32)
  writeEntry(w, e)
  return w.finish().slice()
}

/** Decodes one entry; throws `DecodeError` on malformed input or trailing bytes. */
export function decodeEntry(buf: Uint8Array): Entry {
  const r = new BinaryReader(buf)
  const e = readEntry(r)
  r.end('entry')
  return e
}

/** Encodes a message for the wire into a fresh buffer. */
export function encodeMessage(m: Message): Uint8Array {
  let size = 64 + m.from.length * 3 + m.to.length * 3
  for (const e of m.entries) size += e.data.length + ENTRY_MIN_BYTES
  for (const v of m.snapshot?.confState.voters ?? []) size += 4 + v.length * 3
  if (m.snapshot !== undefined) size += 32 + m.snapshot.data.length
  const w = new BinaryWriter(0, uninitializedBytes(size)) // every byte returned is written
  w.u8(RAFT_CODEC_VERSION).u8(MESSAGE_TYPES.indexOf(m.type)).str(m.from).str(m.to)
  w.u64(m.term).u64(m.logTerm).u64(m.index).u64(m.commit).u64(m.rejectHint)
  w.u8((m.reject ? FLAG_REJECT : 0) | (m.transfer ? FLAG_TRANSFER : 0) | (m.recovering ? FLAG_RECOVERING : 0))
  w.u32(m.entries.length)
  for (const e of m.entries) writeEntry(w, e)
  const s = m.snapshot
  w.u8(s === undefined ? 0 : 1)
  if (s !== undefined) {
    w.u64(s.index).u64(s.term).u32(s.confState.voters.length)
    for (const v of s.confState.voters) w.str(v)
    w.bytes(s.data)
  }
  return w.finish() // the writer is not reused: its view is ours
}

/**
 * Decodes and validates a message: known type and version, sane ids, no trailing bytes,
 * entries only where the type carries them, and for MsgApp entries consecutive from
 * `index + 1` with non-decreasing terms in `[logTerm, term]`. Throws `DecodeError` otherwise.
 */
export function decodeMessage(buf: Uint8Array): Message {
  const r = new BinaryReader(buf)
  const version = r.u8('version')
  if (version !== RAFT_CODEC_VERSION) throw new DecodeError(`unsupported raft message version ${version}`)
  const code = r.u8('message type')
  const type = MESSAGE_TYPES[code]
  if (type === undefined) throw new DecodeError(`unknown raft message type ${code}`)
  const from = readId(r, 'from')
  const to = readId(r, 'to')
  const term = r.u64('term')
  const logTerm = r.u64('logTerm')
  const index = r.u64('index')
  const commit = r.u64('commit')
  const rejectHint = r.u64('rejectHint')
  const flags = r.u8('flags')
  if ((flags & ~(FLAG_REJECT | FLAG_TRANSFER | FLAG_RECOVERING)) !== 0)
    throw new DecodeError(`unknown flags ${flags}`)
  const n = r.u32('entry count')
  if (n * ENTRY_MIN_BYTES > r.remaining) throw new DecodeError(`entry count ${n} exceeds the frame`)
  const entries: Entry[] = []
  for (let i = 0; i < n; i++) entries.push(readEntry(r))
  const hasSnap = r.u8('snapshot flag')
  if (hasSnap > 1) throw new DecodeError('bad snapshot flag')
  let snapshot: Snapshot | undefined
  if (hasSnap === 1) {
    const sIndex = r.u64('snapshot index')
    const sTerm = r.u64('snapshot term')
    const nv = r.u32('snapshot voter count')
    if (nv * 3 > r.remaining) throw new DecodeError(`voter count ${nv} exceeds the frame`)
    const voters: NodeId[] = []
    for (let i = 0; i < nv; i++) voters.push(readId(r, 'snapshot voter'))
    const data = r.bytes('snapshot data', r.remaining).slice()
    snapshot = { index: sIndex, term: sTerm, confState: { voters }, data }
  }
  r.end('raft message')
  const m: Message = {
    type,
    from,
    to,
    term,
    logTerm,
    index,
    entries,
    commit,
    reject: (flags & FLAG_REJECT) !== 0,
    rejectHint,
    transfer: (flags & FLAG_TRANSFER) !== 0,
    recovering: (flags & FLAG_RECOVERING) !== 0,
  }
  if (snapshot !== undefined) m.snapshot = snapshot
  validate(m)
  return m
}

function validate(m: Message): void {
  if (m.type !== 'MsgProp' && m.term === 0) throw new DecodeError(`${m.type} without a term`)
  if ((m.type === 'MsgSnap') !== (m.snapshot !== undefined))
    throw new DecodeError('snapshot only and always on MsgSnap')
  if (m.snapshot !== undefined) {
    const s = m.snapshot
    if (s.index === 0 || s.term === 0 || s.term > m.term)
      throw new DecodeError('snapshot index/term out of range')
    if (s.confState.voters.length === 0) throw new DecodeError('snapshot without voters')
  }
  if (m.type === 'MsgProp') {
    if (m.term !== 0) throw new DecodeError('MsgProp carries no term')
    if (m.entries.length === 0) throw new DecodeError('empty MsgProp')
    return
  }
  if (m.type !== 'MsgApp') {
    if (m.entries.length > 0) throw new DecodeError(`${m.type} cannot carry entries`)
    return
  }
  if (m.logTerm > m.term) throw new DecodeError('MsgApp logTerm above its term')
  if (m.index === 0 && m.logTerm !== 0) throw new DecodeError('MsgApp at index 0 with a logTerm')
  let prev = m.logTerm
  for (let i = 0; i < m.entries.length; i++) {
    const e = m.entries[i]!
    if (e.index !== m.index + 1 + i) throw new DecodeError('MsgApp entries are not consecutive')
    if (e.term < prev || e.term > m.term || e.term === 0)
      throw new DecodeError('MsgApp entry terms out of order')
    prev = e.term
  }
}

/** Encodes a membership change (the `data` of a `confChange` entry). */
export function encodeConfChange(cc: ConfChange): Uint8Array {
  return new BinaryWriter(8 + cc.nodeId.length * 3)
    .u8(cc.type === 'addNode' ? 1 : 2)
    .str(cc.nodeId)
    .finish()
    .slice()
}

/** Decodes a membership change; throws `DecodeError` on malformed input. */
export function decodeConfChange(buf: Uint8Array): ConfChange {
  const r = new BinaryReader(buf)
  const t = r.u8('conf change type')
  if (t !== 1 && t !== 2) throw new DecodeError(`unknown conf change type ${t}`)
  const nodeId = readId(r, 'conf change node')
  r.end('conf change')
  return { type: t === 1 ? 'addNode' : 'removeNode', nodeId }
}

/** Encodes the hard state for storage. */
export function encodeHardState(hs: HardState): Uint8Array {
  const w = new BinaryWriter(32)
    .u64(hs.term)
    .u64(hs.commit)
    .u8(hs.vote === null ? 0 : 1)
  if (hs.vote !== null) w.str(hs.vote)
  return w.finish().slice()
}

/** Decodes a stored hard state; throws `DecodeError` on malformed input. */
export function decodeHardState(buf: Uint8Array): HardState {
  const r = new BinaryReader(buf)
  const term = r.u64('term')
  const commit = r.u64('commit')
  const has = r.u8('vote flag')
  if (has > 1) throw new DecodeError('bad vote flag')
  const vote = has === 1 ? readId(r, 'vote') : null
  r.end('hard state')
  return { term, vote, commit }
}

/** Encodes a configuration for storage. */
export function encodeConfState(cs: ConfState): Uint8Array {
  const w = new BinaryWriter(64).u32(cs.voters.length)
  for (const v of cs.voters) w.str(v)
  return w.finish().slice()
}

/** Decodes a stored configuration; throws `DecodeError` on malformed input. */
export function decodeConfState(buf: Uint8Array): ConfState {
  const r = new BinaryReader(buf)
  const n = r.u32('voter count')
  if (n * 3 > r.remaining) throw new DecodeError(`voter count ${n} exceeds the buffer`)
  const voters: NodeId[] = []
  for (let i = 0; i < n; i++) voters.push(readId(r, 'voter'))
  r.end('conf state')
  return { voters }
}
