/**
 * Bodies of `s.cons`, the durable-consumer calls a consumer makes to its stream's metadata
 * leader (util/binary; decoders throw `DecodeError`):
 *
 * call: `u8 op (1 commit, 2 positions, 3 lease, 4 list, 5 describe, 6 tally) | str cluster |
 * str stream | u64 createdIndex | str durable ('' for list) | commit: u16 n | n × (u16
 * partition | u64 next offset) | str holder ('' none) | lease: u16 partition | str holder | u32
 * ttl ms (0 releases) | tally: u64 redelivered | u64 terminated | u64 dropped (counts to add;
 * zeros only read) | [bytes token hash]` (the hash of the capability the caller presented, streams/access/grants.ts;
 * absent: none)
 *
 * reply: `u8 status` — 0 ok: commit: nothing; positions: `u16 n | n × (u16 partition | u64
 * next offset)`; lease: `u8 granted | str current holder | u16 consumers asking lately`; list:
 * `u16 n | n × (str durable | u64 last active ms (0 unknown) | positions)`; describe: `u64 last
 * active | positions | u16 n | n × (u16 partition | str lease holder)`; tally: the totals,
 * `u64 redelivered | u64 terminated | u64 dropped`; 1 not leader: `str
 * hint`; 2 error: `str error name | str message` (`ConsumerNotFoundError` for a consumer that
 * was deleted while it ran, or a describe of an unknown one).
 */
import { BinaryReader, BinaryWriter, DecodeError } from '../../util/binary.js'
import { peerCluster } from '../../util/peer-input.js'
import { peerStream, readRef } from '../wire.js'

/** Which durable consumer of which stream incarnation a call is about. */
export interface ConsumerRef {
  cluster: string
  stream: string
  createdIndex: number
  durable: string
  /** Hash of the capability the caller presented (grants.ts); absent: none. */
  auth?: Uint8Array
}

/** A durable-consumer call. */
export type ConsumerCall = ConsumerRef &
  (
    | { op: 'commit'; offsets: Array<[number, number]>; holder?: string }
    | { op: 'positions' }
    | { op: 'lease'; partition: number; holder: string; ttlMs: number }
    | { op: 'list' }
    | { op: 'describe' }
    | { op: 'tally'; tally: Tally }
  )

/** What durable consumers count besides positions (`ConsumerInfo`): messages redelivered, terminated, dropped after `maxDeliver`. */
export interface Tally {
  redelivered: number
  terminated: number
  dropped: number
}

/** One durable consumer as the metadata leader knows it (list, describe). */
export interface DurableState {
  durable: string
  /** Last time a consumer of this name asked for a lease (ms; 0: not since this leader took over). */
  lastActive: number
  /** Committed positions: partition → next offset. */
  positions: Map<number, number>
  /** Lease holders by partition (describe only). */
  holders: Map<number, string>
}

/** Outcome of a lease call. */
export interface LeaseResult {
  granted: boolean
  holder: string
  /** Consumers of this durable name that asked for a lease recently (for fair sharing). */
  consumers: number
}

/** A reply: the op's value, a leader hint, or an error by class name. */
export type LeaderReply<T> =
  | { status: 'ok'; value: T }
  | { status: 'notLeader'; hint: string | null }
  | { status: 'error'; name: string; message: string }

const OPS = ['commit', 'positions', 'lease', 'list', 'describe', 'tally'] as const

/** Encodes a durable-consumer call. */
export function encodeConsumerCall(c: ConsumerCall): Uint8Array {
  const w = new BinaryWriter(128)
  w.u8(OPS.indexOf(c.op) + 1)
    .str(c.cluster)
    .str(c.stream)
    .u64(c.createdIndex)
    .str(c.durable)
  if (c.op === 'commit') {
    w.u16(c.offsets.length)
    for (const [p, o] of c.offsets) w.u16(p).u64(o)
    w.str(c.holder ?? '')
  } else if (c.op === 'lease') w.u16(c.partition).str(c.holder).u32(c.ttlMs)
  else if (c.op === 'tally') writeTally(w, c.tally)
  if (c.auth !== undefined) w.bytes(c.auth)
  return w.finish().slice()
}

/** Decodes a durable-consumer call. */
export function decodeConsumerCall(bytes: Uint8Array): ConsumerCall {
  const r = new BinaryReader(bytes)
  const op = OPS[r.u8('op') - 1]
  const ref = {
    cluster: peerCluster(r.str('cluster')),
    stream: peerStream(r.str('stream')),
    createdIndex: r.u64('createdIndex'),
    durable: r.str('durable'),
  }
  if (op !== 'list') peerStream(ref.durable, 'durable')
  let c: ConsumerCall
  if (op === 'commit') {
    const n = r.u16('offset count')
    const offsets: Array<[number, number]> = []
    for (let i = 0; i < n; i++) offsets.push([r.u16('partition'), r.u64('offset')])
    c = { ...ref, op, offsets }
    const holder = r.str('holder')
    if (holder !== '') c.holder = holder
  } else if (op === 'positions' || op === 'list' || op === 'describe') c = { ...ref, op }
  else if (op === 'lease')
    c = { ...ref, op, partition: r.u16('partition'), holder: r.str('holder'), ttlMs: r.u32('ttl') }
  else if (op === 'tally') c = { ...ref, op, tally: readTally(r) }
  else throw new DecodeError('unknown consumer op')
  if (r.remaining > 0) c.auth = r.bytes('capability hash')
  r.end('consumer call')
  return c
}

/** Encodes a reply; `write` encodes an ok value. */
export function encodeLeaderReply<T>(x: LeaderReply<T>, write: (w: BinaryWriter, v: T) => void): Uint8Array {
  const w = new BinaryWriter(64)
  if (x.status === 'ok') write(w.u8(0), x.value)
  else if (x.status === 'notLeader') w.u8(1).str(x.hint ?? '')
  else w.u8(2).str(x.name).str(x.message)
  return w.finish().slice()
}

/** Decodes a reply; `read` decodes an ok value. */
export function decodeLeaderReply<T>(bytes: Uint8Array, read: (r: BinaryReader) => T): LeaderReply<T> {
  const r = new BinaryReader(bytes)
  const s = r.u8('status')
  let x: LeaderReply<T>
  if (s === 0) x = { status: 'ok', value: read(r) }
  else if (s === 1) x = { status: 'notLeader', hint: r.str('hint') || null }
  else if (s === 2) x = { status: 'error', name: r.str('name'), message: r.str('message') }
  else throw new DecodeError(`unknown status ${s}`)
  r.end('consumer reply')
  return x
}

/** Writes positions: `u16 n | n × (u16 partition | u64 next)`. */
export function writePositions(w: BinaryWriter, pos: Map<number, number>): void {
  w.u16(pos.size)
  for (const [p, o] of pos) w.u16(p).u64(o)
}

/** Reads positions written by `writePositions`. */
export function readPositions(r: BinaryReader): Map<number, number> {
  const n = r.u16('position count')
  const out = new Map<number, number>()
  for (let i = 0; i < n; i++) out.set(r.u16('partition'), r.u64('offset'))
  return out
}

/** Writes a list reply (see the module doc). */
export function writeDurables(w: BinaryWriter, list: readonly DurableState[]): void {
  w.u16(list.length)
  for (const d of list) writePositions(w.str(d.durable).u64(d.lastActive), d.positions)
}

/** Reads a list reply. */
export function readDurables(r: BinaryReader): DurableState[] {
  const n = r.u16('consumer count')
  const out: DurableState[] = []
  for (let i = 0; i < n; i++)
    out.push({
      durable: r.str('durable'),
      lastActive: r.u64('last active'),
      positions: readPositions(r),
      holders: new Map(),
    })
  return out
}

/** Writes a describe reply. */
export function writeDurable(w: BinaryWriter, d: DurableState): void {
  writePositions(w.u64(d.lastActive), d.positions)
  w.u16(d.holders.size)
  for (const [p, h] of d.holders) w.u16(p).str(h)
}

/** Reads a describe reply of durable `durable`. */
export function readDurable(r: BinaryReader, durable: string): DurableState {
  const lastActive = r.u64('last active')
  const positions = readPositions(r)
  const n = r.u16('holder count')
  const holders = new Map<number, string>()
  for (let i = 0; i < n; i++) holders.set(r.u16('partition'), r.str('holder'))
  return { durable, lastActive, positions, holders }
}

/** Writes counts (a tally call, or its reply). */
export function writeTally(w: BinaryWriter, t: Tally): void {
  w.u64(t.redelivered).u64(t.terminated).u64(t.dropped)
}

/** Reads counts written by `writeTally`. */
export function readTally(r: BinaryReader): Tally {
  return { redelivered: r.u64('redelivered'), terminated: r.u64('terminated'), dropped: r.u64('dropped') }
}

/** Writes a lease result. */
export function writeLease(w: BinaryWriter, l: LeaseResult): void {
  w.u8(l.granted ? 1 : 0)
    .str(l.holder)
    .u16(Math.min(l.consumers, 0xffff))
}

/** Reads a lease result. */
export function readLease(r: BinaryReader): LeaseResult {
  return { granted: r.u8('granted') === 1, holder: r.str('holder'), consumers: r.u16('consumers') }
}

/**
 * What an `s.seek` asks the partition leader for: `'end'`, the committed end (the offset the
 * next committed message will get), or `{ time }`, the first offset whose timestamp is at or
 * after `time` (ms; the end of the leader's log when there is none yet).
 */
export type SeekTarget = 'end' | { time: number }

/** An `s.seek` call: a partition and what to find in it. */
export interface SeekCall {
  stream: string
  createdIndex: number
  partition: number
  target: SeekTarget
}

const SEEK_TIME = 1
const SEEK_END = 2

/**
 * Encodes an `s.seek` call: `str stream | u64 createdIndex | u16 partition | u8 kind (1 time,
 * 2 end) | time: u64 timestamp ms`.
 */
export function encodeSeek(
  ref: { stream: string; createdIndex: number; partition: number },
  target: SeekTarget,
): Uint8Array {
  const w = new BinaryWriter(64).str(ref.stream).u64(ref.createdIndex).u16(ref.partition)
  if (target === 'end') w.u8(SEEK_END)
  else w.u8(SEEK_TIME).u64(target.time)
  return w.finish().slice()
}

/** Decodes an `s.seek` call (`DecodeError` on a malformed body or an unknown kind). */
export function decodeSeek(bytes: Uint8Array): SeekCall {
  const r = new BinaryReader(bytes)
  const ref = readRef(r)
  const kind = r.u8('seek kind')
  let target: SeekTarget
  if (kind === SEEK_END) target = 'end'
  else if (kind === SEEK_TIME) target = { time: r.u64('timestamp') }
  else throw new DecodeError(`unknown seek kind ${kind}`)
  r.end('seek call')
  return { ...ref, target }
}
