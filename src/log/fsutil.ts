/**
 * Small file-system helpers of the commit log: segment file names, full reads and writes,
 * directory fsync and atomic file replacement.
 */

import { writeSync } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { open, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { BASE_OFFSET_DIGITS, TMP_SUFFIX } from './constants.js'

const STEM_RE = new RegExp(`^(\\d{${BASE_OFFSET_DIGITS}})(\\.[a-z]+)(\\.[a-z]+)?$`)

/** `00000000000000000042` for base offset 42. */
export function segmentStem(baseOffset: number): string {
  return String(baseOffset).padStart(BASE_OFFSET_DIGITS, '0')
}

/** Parses a segment-family file name into base offset, suffix and optional extra suffix. */
export function parseSegmentFileName(
  name: string,
): { baseOffset: number; suffix: string; extra: string | undefined } | undefined {
  const m = STEM_RE.exec(name)
  if (!m) return undefined
  const baseOffset = Number(m[1])
  if (!Number.isSafeInteger(baseOffset)) return undefined
  return { baseOffset, suffix: m[2]!, extra: m[3] }
}

/** Writes all of `buf[off, off+len)` at `position`, looping over short writes. */
export async function writeFully(
  fh: FileHandle,
  buf: Uint8Array,
  off: number,
  len: number,
  position: number,
): Promise<void> {
  while (len > 0) {
    const { bytesWritten } = await fh.write(buf, off, len, position)
    off += bytesWritten
    len -= bytesWritten
    position += bytesWritten
  }
}

/** `writeFully`, blocking the caller (small writes to the page cache: see `INLINE_WRITE_BYTES`). */
export function writeFullySync(
  fd: number,
  buf: Uint8Array,
  off: number,
  len: number,
  position: number,
): void {
  while (len > 0) {
    const n = writeSync(fd, buf, off, len, position)
    off += n
    len -= n
    position += n
  }
}

/** Reads up to `len` bytes at `position` into `buf[off..]`; returns the count (short at EOF). */
export async function readFully(
  fh: FileHandle,
  buf: Uint8Array,
  off: number,
  len: number,
  position: number,
): Promise<number> {
  let total = 0
  while (total < len) {
    const { bytesRead } = await fh.read(buf, off + total, len - total, position + total)
    if (bytesRead === 0) break
    total += bytesRead
  }
  return total
}

/** fsyncs a directory so that creations, renames and deletions in it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/**
 * Replaces `path` with `data` atomically: writes `path.tmp`, fsyncs it, renames it over
 * `path` and fsyncs the directory. A crash leaves either the old or the new content (and
 * maybe a `.tmp` leftover, which the log deletes on open).
 */
export async function atomicWriteFile(dir: string, name: string, data: Uint8Array): Promise<void> {
  const tmp = join(dir, name + TMP_SUFFIX)
  const fh = await open(tmp, 'w')
  try {
    await writeFully(fh, data, 0, data.length, 0)
    await fh.datasync()
  } finally {
    await fh.close()
  }
  await rename(tmp, join(dir, name))
  await fsyncDir(dir)
}

/** Deletes a file; a missing file is not an error. */
export async function unlinkIfExists(path: string): Promise<boolean> {
  try {
    await unlink(path)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}
