/**
 * The log start offset (`setStartOffset`, a stream purge): reads and time lookups below it
 * start at it, segments wholly below it are deleted, it only moves forward, is capped at the
 * end, and survives reopening; a damaged start-offset file is refused, not ignored.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { CorruptLogError, openLog } from '../../src/log/index.js'
import { clock, recs, tempDir } from './helpers.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

async function dir(): Promise<string> {
  const t = await tempDir()
  cleanups.push(t.cleanup)
  return t.dir
}

describe('log start offset', () => {
  it('purges below an offset, durably, deleting whole segments below it', async () => {
    const d = await dir()
    const c = clock()
    const log = await openLog({ dir: d, fsync: 'never', segmentBytes: 256, now: c.now })
    for (let i = 0; i < 50; i++) {
      await log.append(recs(1, `v${i}-`))
      c.advance(10)
    }
    const before = log.segments().length
    expect(await log.setStartOffset(30)).toBe(30)
    expect(log.earliestOffset()).toBe(30)
    expect((await log.read(0, { maxRecords: 1 }))[0]!.offset).toBe(30)
    expect(await log.offsetForTime(0)).toBe(30)
    expect(log.segments().length).toBeLessThan(before)
    expect(log.segments()[0]!.baseOffset).toBeLessThanOrEqual(30)
    expect(log.segments()[1]!.baseOffset).toBeGreaterThan(30)
    expect(await log.setStartOffset(10)).toBe(30) // never backward
    await log.close()

    const again = await openLog({ dir: d, fsync: 'never', segmentBytes: 256 })
    expect(again.earliestOffset()).toBe(30)
    expect((await again.read(0, { maxRecords: 1 }))[0]!.offset).toBe(30)
    // Capped at the end: everything goes; the last record stays on disk for the owner.
    expect(await again.setStartOffset(1000)).toBe(50)
    expect(await again.read(0)).toEqual([])
    expect((await again.read(49, { includePurged: true }))[0]!.offset).toBe(49)
    await again.append(recs(2))
    expect((await again.read(0)).map((r) => r.offset)).toEqual([50, 51])
    await again.close()
    const third = await openLog({ dir: d, fsync: 'never', segmentBytes: 256 })
    expect(third.earliestOffset()).toBe(50)
    await third.close()
  })

  it('refuses a damaged start-offset file', async () => {
    const d = await dir()
    const log = await openLog({ dir: d, fsync: 'never' })
    await log.append(recs(5))
    await log.setStartOffset(3)
    await log.close()
    await writeFile(join(d, 'start-offset'), Buffer.alloc(12))
    await expect(openLog({ dir: d, fsync: 'never' })).rejects.toBeInstanceOf(CorruptLogError)
  })
})
