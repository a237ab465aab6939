/**
 * Purge: removing a partition's messages below an offset (Kafka's deleteRecords, JetStream's
 * purge), as an admin call checked by the partition leader and replicated through the
 * partition's Raft log.
 *
 * - `s.purge` call (to the partition leader): `str stream | u64 createdIndex | u16 partition |
 *   bytes meta call` — the meta call is the caller's proven `purge` call (wire.ts, op 5; its
 *   admin proof covers the stream, the optional partition and `before`, and the request id);
 *   reply: an offset reply (wire.ts) with the partition's new first offset; errors
 *   (`UnauthorizedError`, `InvalidArgumentError`) travel as RPC errors.
 * - The control entry the leader proposes: `u8 0xF1 | u64 before` (`before` = 2^53 - 1: all),
 *   or for a purge by key `u8 0xF2 | u64 before | bytes key`. A batch starts with its version
 *   byte 1, so they never mix; older code skips them as payloads that do not decode (on every
 *   replica alike).
 *
 * Applying: at the entry's place in the log, the mark is `min(before, next offset)` — the same
 * on every replica, as every earlier entry is applied first — and only moves forward. Without
 * a key the partition log keeps it as its start offset (log.ts `setStartOffset`: durable,
 * reads below it start at it, segments wholly below are deleted); with one, the replica's
 * purged keys (partition/purged-keys.ts) hide that key's messages below it from every read.
 */

import type { ClusterSigner } from '../../cluster/proof.js'
import { InvalidArgumentError, UnauthorizedError } from '../../errors.js'
import { BinaryReader, BinaryWriter, DecodeError } from '../../util/binary.js'
import { authorizeMeta } from '../access/authz.js'
import { decodeMetaCall, type PartitionRef, readRef } from '../wire.js'

const PURGE_ENTRY = 0xf1
const PURGE_KEY_ENTRY = 0xf2
/** `before` of a purge of everything. */
export const PURGE_ALL = Number.MAX_SAFE_INTEGER

/** An `s.purge` call: the partition and the caller's proven meta call. */
export interface PurgeCall extends PartitionRef {
  call: Uint8Array
}

/** Encodes an `s.purge` call. */
export function encodePurgeCall(c: PurgeCall): Uint8Array {
  const w = new BinaryWriter(64 + c.call.length).str(c.stream).u64(c.createdIndex).u16(c.partition)
  return w.bytes(c.call).finish().slice()
}

/** Decodes an `s.purge` call; `DecodeError` when malformed. */
export function decodePurgeCall(bytes: Uint8Array): PurgeCall {
  const r = new BinaryReader(bytes)
  const ref = readRef(r)
  const call = r.bytes('purge call')
  r.end('purge call')
  return { ...ref, call }
}

/** The control entry of a purge below `before`. */
export function encodePurgeEntry(before: number): Uint8Array {
  return new BinaryWriter(9).u8(PURGE_ENTRY).u64(before).finish().slice()
}

/** The control entry of a purge of `key`'s messages below `before`. */
export function encodePurgeKeyEntry(before: number, key: Uint8Array): Uint8Array {
  return new BinaryWriter(16 + key.length).u8(PURGE_KEY_ENTRY).u64(before).bytes(key).finish().slice()
}

/** What a purge entry asks for: below `before`, of `key`'s messages only when set. */
export interface PurgeEntry {
  before: number
  key?: Uint8Array
}

/** The purge a control entry asks for, or undefined when `data` is not one (a batch). */
export function decodePurgeEntry(data: Uint8Array): PurgeEntry | undefined {
  if (data[0] === PURGE_ENTRY && data.length === 9) {
    try {
      return { before: new BinaryReader(data.subarray(1)).u64('before') }
    } catch {
      return undefined
    }
  }
  if (data[0] !== PURGE_KEY_ENTRY) return undefined
  try {
    const r = new BinaryReader(data.subarray(1))
    const before = r.u64('before')
    const key = r.bytes('key').slice()
    r.end('purge entry')
    return { before, key }
  } catch {
    return undefined
  }
}

/**
 * Checks an `s.purge` call addressed to partition `ref` with the cluster's signer at `now`:
 * the proof (`authorizeMeta`: `UnauthorizedError` when missing, forged, stale or for another
 * call), the stream and partition it names. Returns the purge to propose.
 */
export function checkPurge(p: PurgeCall, signer: ClusterSigner, now: number): PurgeEntry {
  let call: ReturnType<typeof decodeMetaCall>
  try {
    call = decodeMetaCall(p.call)
  } catch (err) {
    throw new DecodeError(`purge call: ${(err as Error).message}`)
  }
  if (call.op !== 'purge') throw new DecodeError(`purge call carries a ${call.op} call`)
  const refused = authorizeMeta(call, signer, now)
  if (refused?.status === 'error') throw new UnauthorizedError(refused.message)
  if (call.cluster !== signer.cluster || call.name !== p.stream)
    throw new InvalidArgumentError(`the purge call is for stream "${call.name}", not "${p.stream}"`)
  if (call.partition !== undefined && call.partition !== p.partition)
    throw new InvalidArgumentError(`the purge call is for partition ${call.partition}, not ${p.partition}`)
  const entry: PurgeEntry = { before: call.before ?? PURGE_ALL }
  if (call.key !== undefined) entry.key = call.key
  return entry
}
