/**
 * Digests of signed records (pure): a compact list of (record id, version) a node sends
 * instead of the records, so the peer sends back only what the sender lacks or holds older.
 *
 * A record id is a 48-bit hash of the record's key (`peer/cluster` for an announcement, the
 * peer for an interest record); the version is the record's signed counter. A digest covers
 * one slice of the id space (`lo` inclusive to `hi` exclusive) and at most `DIGEST_MAX_ENTRIES`
 * ids: a node holding more records splits the space into equal slices and sends one digest
 * per slice (on link-up) or one slice per anti-entropy round (rotating), so every message is
 * bounded whatever the network's size.
 *
 * Wire: `u8 sections | u8 flags | u64 lo | u64 hi | per section present (announcements,
 * then interest): u32 n × (u64 id, u64 version)`.
 */
import { createHash } from 'node:crypto'
import { BinaryReader, BinaryWriter, DecodeError } from '../util/binary.js'

/** Most ids one digest carries (16 bytes each: about 64 KiB). */
export const DIGEST_MAX_ENTRIES = 4096
/** The id space: ids are in [0, ID_SPACE). */
export const ID_SPACE = 2 ** 48

/** Which kinds of record a digest covers (bits of `sections`). */
export const Section = { announcements: 1, interest: 2 } as const
/** Flag: the receiver answers the call with its own digest of the same slice. */
export const WANT_REPLY = 1

/** One held record: its key, version and encoded (signed) bytes. */
export interface Versioned {
  key: string
  version: number
  bytes: Uint8Array
}

/** A decoded digest. */
export interface Digest {
  sections: number
  flags: number
  lo: number
  hi: number
  /** id → version, per section. */
  announcements: Map<number, number>
  interest: Map<number, number>
}

const idCache = new Map<string, number>()

/** The 48-bit id of a record key (cached: keys repeat every round). */
export function recordId(key: string): number {
  let id = idCache.get(key)
  if (id === undefined) {
    id = createHash('sha256').update(key).digest().readUIntBE(0, 6)
    if (idCache.size >= 200_000) idCache.clear()
    idCache.set(key, id)
  }
  return id
}

/** How many equal slices the id space needs so no slice holds more than `DIGEST_MAX_ENTRIES`. */
export function sliceCount(records: number): number {
  return Math.max(1, Math.ceil((records * 1.25) / DIGEST_MAX_ENTRIES))
}

/** Slice `i` of `n`: [lo, hi). */
export function slice(i: number, n: number): { lo: number; hi: number } {
  return {
    lo: Math.floor((i * ID_SPACE) / n),
    hi: i + 1 >= n ? ID_SPACE : Math.floor(((i + 1) * ID_SPACE) / n),
  }
}

function inSlice(id: number, lo: number, hi: number): boolean {
  return id >= lo && id < hi
}

/**
 * Encodes the digest of `records` (per section, in [lo, hi)). Ids past `DIGEST_MAX_ENTRIES`
 * in a section are left out (the peer then sends them again: safe, only wasteful).
 */
export function encodeDigest(
  sections: number,
  flags: number,
  lo: number,
  hi: number,
  announcements: Iterable<Versioned>,
  interest: Iterable<Versioned>,
): Uint8Array {
  const w = new BinaryWriter(1024)
  w.u8(sections).u8(flags).u64(lo).u64(hi)
  const section = (records: Iterable<Versioned>) => {
    const out: [number, number][] = []
    for (const r of records) {
      const id = recordId(r.key)
      if (inSlice(id, lo, hi) && out.length < DIGEST_MAX_ENTRIES) out.push([id, r.version])
    }
    w.u32(out.length)
    for (const [id, v] of out) w.u64(id).u64(v)
  }
  if (sections & Section.announcements) section(announcements)
  if (sections & Section.interest) section(interest)
  return w.finish()
}

/** Decodes a digest (throws `DecodeError` when malformed or over the bounds). */
export function decodeDigest(bytes: Uint8Array): Digest {
  const r = new BinaryReader(bytes)
  const sections = r.u8('digest sections')
  if (sections === 0 || sections > 3) throw new DecodeError('bad digest sections')
  const flags = r.u8('digest flags')
  const lo = r.u64('digest lo')
  const hi = r.u64('digest hi')
  if (!(lo < hi) || hi > ID_SPACE) throw new DecodeError('bad digest slice')
  const section = () => {
    const n = r.u32('digest entries')
    if (n > DIGEST_MAX_ENTRIES) throw new DecodeError('digest too large')
    const m = new Map<number, number>()
    for (let i = 0; i < n; i++) m.set(r.u64('digest id'), r.u64('digest version'))
    return m
  }
  const announcements = sections & Section.announcements ? section() : new Map<number, number>()
  const interest = sections & Section.interest ? section() : new Map<number, number>()
  r.end('digest')
  return { sections, flags, lo, hi, announcements, interest }
}

/**
 * The records of `mine` in [lo, hi) that the digest's holder lacks or holds older: what to
 * send it. At most `limit` (the rest go in a later round).
 */
export function missing(
  mine: Iterable<Versioned>,
  theirs: Map<number, number>,
  lo: number,
  hi: number,
  limit = DIGEST_MAX_ENTRIES,
): Versioned[] {
  const out: Versioned[] = []
  for (const r of mine) {
    const id = recordId(r.key)
    if (!inSlice(id, lo, hi)) continue
    const v = theirs.get(id)
    if (v === undefined || v < r.version) {
      out.push(r)
      if (out.length >= limit) break
    }
  }
  return out
}
