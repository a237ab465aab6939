/**
 * Small replica state files (hard state, configuration, snapshot metadata), written
 * atomically and checksummed. Layout, big-endian:
 *
 *   0  4 bytes  magic "PXRS"
 *   4  u8       format version (1)
 *   5  u8       kind (1 hard state, 2 conf state, 3 snapshot, 4 recovering marker)
 *   6  u32      payload length
 *   10 u32      CRC-32 (zlib) of the payload
 *   14 ...      payload
 *
 * A write goes to `<file>.tmp`, is fdatasync'ed, renamed over `<file>`, and the directory is
 * fsync'ed: a crash leaves either the old or the new file, never a mix.
 */
import { readFile, unlink } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { crc32 } from 'node:zlib'
import { atomicWriteFile } from '../log/fsutil.js'
import { CorruptReplicaStateError } from './errors.js'

const MAGIC = [0x50, 0x58, 0x52, 0x53] // "PXRS"
const VERSION = 1
const HEADER = 14

/** Kinds of state file; the kind is checked on read so files cannot be swapped. */
export const StateKind = { hardState: 1, confState: 2, snapshot: 3, recovering: 4 } as const
/** One of `StateKind`'s values. */
export type StateKindCode = (typeof StateKind)[keyof typeof StateKind]

/** Frames `payload` with magic, version, kind, length and CRC. */
export function frameState(kind: StateKindCode, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER + payload.length)
  const dv = new DataView(out.buffer)
  out.set(MAGIC, 0)
  out[4] = VERSION
  out[5] = kind
  dv.setUint32(6, payload.length)
  dv.setUint32(10, crc32(payload))
  out.set(payload, HEADER)
  return out
}

/** Checks a framed file and returns its payload; throws `CorruptReplicaStateError`. */
export function unframeState(file: string, kind: StateKindCode, buf: Uint8Array): Uint8Array {
  const bad = (reason: string): never => {
    throw new CorruptReplicaStateError(file, reason)
  }
  if (buf.length < HEADER) bad(`${buf.length} bytes, shorter than the ${HEADER}-byte header`)
  for (let i = 0; i < 4; i++) if (buf[i] !== MAGIC[i]) bad('bad magic')
  if (buf[4] !== VERSION) bad(`unknown version ${buf[4]}`)
  if (buf[5] !== kind) bad(`kind ${buf[5]}, expected ${kind}`)
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const len = dv.getUint32(6)
  if (len !== buf.length - HEADER) bad(`payload length ${len} but ${buf.length - HEADER} bytes follow`)
  const payload = buf.subarray(HEADER)
  if (crc32(payload) !== dv.getUint32(10)) bad('checksum mismatch')
  return payload
}

/** Atomically replaces `file` with a framed `payload` (temp + fdatasync + rename + dir fsync). */
export async function writeStateFile(file: string, kind: StateKindCode, payload: Uint8Array): Promise<void> {
  await atomicWriteFile(dirname(file), basename(file), frameState(kind, payload))
}

/**
 * Reads a state file: its payload, or `undefined` when the file does not exist. Throws
 * `CorruptReplicaStateError` when it exists but is damaged.
 */
export async function readStateFile(file: string, kind: StateKindCode): Promise<Uint8Array | undefined> {
  let buf: Uint8Array
  try {
    buf = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  return unframeState(file, kind, buf)
}

/** Removes a leftover `<file>.tmp` of an interrupted write, if any. */
export async function removeTemp(file: string): Promise<boolean> {
  try {
    await unlink(`${file}.tmp`)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}
