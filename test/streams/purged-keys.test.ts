/**
 * `PurgedKeys` (streams/partition/purged-keys.ts) on its own: marks only move forward, moot
 * marks are pruned, the bound refuses a further key, the file survives a reload and a damaged
 * one is refused; the purge entries and the partition snapshot carry keys (purge.ts,
 * partition-snapshot.ts), and a snapshot without marks keeps the old layout.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { decodePurgeEntry, encodePurgeEntry, encodePurgeKeyEntry } from '../../src/streams/host/purge.js'
import {
  decodePartitionSnapshot,
  encodePartitionSnapshot,
} from '../../src/streams/partition/partition-snapshot.js'
import { PurgedKeys } from '../../src/streams/partition/purged-keys.js'

const b = (s: string) => new TextEncoder().encode(s)
const dirs: string[] = []
afterAll(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

it('hides below the mark, moves forward only, prunes moot marks and keeps its bound', () => {
  const p = new PurgedKeys(2)
  expect(p.record(b('a'), 10, 0)).toBe(true)
  expect(p.hides(b('a'), 9)).toBe(true)
  expect(p.hides(b('a'), 10)).toBe(false)
  expect(p.hides(b('b'), 0)).toBe(false)
  expect(p.hides(undefined, 0)).toBe(false)
  p.record(b('a'), 5, 0)
  expect(p.hides(b('a'), 9)).toBe(true) // not moved back
  expect(p.record(b('b'), 20, 0)).toBe(true)
  expect(p.accepts(b('c'), 0)).toBe(false)
  expect(p.record(b('c'), 30, 0)).toBe(false)
  expect(p.record(b('a'), 12, 0)).toBe(true) // a known key always
  // Start offset 12: a's mark is moot, room for c.
  expect(p.record(b('c'), 30, 12)).toBe(true)
  expect(p.entries().map(([k, v]) => [new TextDecoder().decode(k), v])).toEqual([
    ['b', 20],
    ['c', 30],
  ])
})

it('survives a reload from its file; a damaged file is refused', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'plexus-purged-keys-'))
  dirs.push(dir)
  const p = new PurgedKeys(10)
  p.loadSync(dir) // no file: none
  expect(p.size).toBe(0)
  p.record(b('k'), 7, 0)
  p.record(new Uint8Array([0, 255, 1]), 3, 0)
  p.saveSync(dir)
  const q = new PurgedKeys(10)
  q.loadSync(dir)
  expect(q.hides(b('k'), 6)).toBe(true)
  expect(q.hides(new Uint8Array([0, 255, 1]), 2)).toBe(true)
  await writeFile(join(dir, 'purged-keys'), new Uint8Array([1, 2, 3, 4, 0, 0, 0, 1]))
  expect(() => q.loadSync(dir)).toThrow(/purged keys file checksum mismatch/)
})

it('purge entries and partition snapshots carry the key', () => {
  expect(decodePurgeEntry(encodePurgeEntry(5))).toEqual({ before: 5 })
  const e = decodePurgeEntry(encodePurgeKeyEntry(9, b('x')))!
  expect(e.before).toBe(9)
  expect(new TextDecoder().decode(e.key)).toBe('x')
  expect(decodePurgeEntry(new Uint8Array([0xf2, 1]))).toBeUndefined()
  const plain = encodePartitionSnapshot(42)
  expect(plain.length).toBe(9) // the version 1 layout older replicas read
  expect(decodePartitionSnapshot(plain)).toEqual({ nextOffset: 42, purgedKeys: [] })
  const s = decodePartitionSnapshot(encodePartitionSnapshot(42, [[b('x'), 40]]))
  expect(s.nextOffset).toBe(42)
  expect(s.purgedKeys.map(([k, v]) => [new TextDecoder().decode(k), v])).toEqual([['x', 40]])
})
