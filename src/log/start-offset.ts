/**
 * The log start offset: offsets below it are purged (`Log.setStartOffset`, for a stream
 * purge). Kept in `<dir>/start-offset` (`u64 offset | u32 offset check`, replaced atomically):
 * reads below it start at it, `earliestOffset()` is at least it, and segments holding only
 * offsets below it are deleted (never the one holding the last record, which recovery of the
 * owner may need). Survives restarts; only moves forward.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BinaryReader, BinaryWriter } from '../util/binary.js'
import type { LogCore } from './core.js'
import { CorruptLogError } from './errors.js'
import { atomicWriteFile } from './fsutil.js'
import { deleteBefore } from './retention.js'

const FILE = 'start-offset'
/** Mixed into the check word so a file of zeros is refused. */
const CHECK = 0x5eed_0ff5

const checkOf = (offset: number) => (Math.floor(offset / 2 ** 32) ^ (offset >>> 0) ^ CHECK) >>> 0

/** Reads the start offset of the log in `dir` (0 when never set); `CorruptLogError` if damaged. */
export async function readStartOffset(dir: string): Promise<number> {
  let bytes: Buffer
  try {
    bytes = await readFile(join(dir, FILE))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0
    throw err
  }
  const path = join(dir, FILE)
  if (bytes.length !== 12) throw new CorruptLogError(path, 0, `start offset file of ${bytes.length} bytes`)
  const r = new BinaryReader(new Uint8Array(bytes))
  const offset = r.u64('start offset')
  if (r.u32('check') !== checkOf(offset)) throw new CorruptLogError(path, 8, 'start offset check mismatch')
  return offset
}

/**
 * Moves the start offset to `offset` (at most the next offset; never backward), durably,
 * then deletes the segments wholly below it. Run under `core.exclusive`. Returns the start.
 */
export async function setStartOffset(core: LogCore, offset: number): Promise<number> {
  const start = Math.min(offset, core.nextOffset)
  if (start <= core.startOffset) return core.startOffset
  const w = new BinaryWriter(12).u64(start).u32(checkOf(start))
  await atomicWriteFile(core.opts.dir, FILE, w.finish().slice())
  core.startOffset = start
  await deleteBefore(core, Math.min(start, core.visibleOffset))
  return start
}
