import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AppendRecord, LogRecord } from '../../src/log/index.js'

const enc = new TextEncoder()
const dec = new TextDecoder()

/** UTF-8 bytes. */
export const b = (s: string): Uint8Array => enc.encode(s)
/** UTF-8 text of bytes (undefined stays undefined). */
export const s = (u: Uint8Array | undefined): string | undefined =>
  u === undefined ? undefined : dec.decode(u)

/** A fresh temp directory and its remover. */
export async function tempDir(
  prefix = 'plexus-log-',
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

/** `n` records valued `${prefix}${i}`. */
export function recs(n: number, prefix = 'v', key?: (i: number) => string): AppendRecord[] {
  return Array.from({ length: n }, (_, i) => ({
    value: b(`${prefix}${i}`),
    key: key ? b(key(i)) : undefined,
  }))
}

/** Comparable summary of read records. */
export function summary(rs: LogRecord[]): Array<{ offset: number; key?: string; value: string }> {
  return rs.map((r) => ({ offset: r.offset, ...(r.key ? { key: s(r.key) } : {}), value: s(r.value)! }))
}

/** A manual clock. */
export function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start
  return { now: () => t, advance: (ms) => (t += ms) }
}
