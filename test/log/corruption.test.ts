import { cp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Log } from '../../src/log/index.js'
import { CorruptLogError, openLog } from '../../src/log/index.js'
import { b, tempDir } from './helpers.js'

// Fixed-size records (every value 16 bytes, no key/headers) so a byte position maps to a record.
const REC_SIZE = 44 + 16
const PER_SEG = 8
const SEGMENTS = 4
const TOTAL = PER_SEG * SEGMENTS - 3 // the tail segment holds 5 records
const opts = { fsync: 'never' as const, segmentBytes: REC_SIZE * PER_SEG, indexIntervalBytes: REC_SIZE * 2 }
const value = (i: number) => b(`value-${String(i).padStart(10, '0')}`)

let root: { dir: string; cleanup: () => Promise<void> }
let template: string
let n = 0
const seed = Number(process.env.LOG_TEST_SEED ?? Date.now() % 1_000_000)

beforeAll(async () => {
  root = await tempDir('plexus-log-corrupt-')
  template = join(root.dir, 'template')
  const log = await openLog({ dir: template, ...opts, now: () => 1000 })
  for (let i = 0; i < TOTAL; i++) await log.append([{ value: value(i), timestamp: 1000 + i }])
  expect(log.segments().length).toBe(SEGMENTS)
  await log.close()
})
afterAll(async () => root.cleanup())

async function copy(): Promise<string> {
  const dir = join(root.dir, `c${n++}`)
  await cp(template, dir, { recursive: true })
  return dir
}

async function readAllValues(log: Log): Promise<number[]> {
  const out: number[] = []
  let next = 0
  for (;;) {
    const rs = await log.read(next, { maxBytes: 500 })
    if (rs.length === 0) return out
    for (const r of rs) {
      expect(r.value).toEqual(Buffer.from(value(r.offset)))
      out.push(r.offset)
    }
    next = rs[rs.length - 1]!.offset + 1
  }
}

const tailName = `${String(PER_SEG * (SEGMENTS - 1)).padStart(20, '0')}.log`
const tailBase = PER_SEG * (SEGMENTS - 1)
const tailBytes = (TOTAL - tailBase) * REC_SIZE
const range = (k: number) => Array.from({ length: k }, (_, i) => i)

describe(`corruption and truncation (seed ${seed}; rerun with LOG_TEST_SEED=${seed})`, () => {
  it('a flipped byte in the tail segment: keeps every record before it and reports the drop', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: tailBytes - 1 }),
        fc.integer({ min: 1, max: 255 }),
        async (pos, x) => {
          const dir = await copy()
          const file = join(dir, tailName)
          const buf = await readFile(file)
          buf[pos] = buf[pos]! ^ x
          await writeFile(file, buf)
          const log = await openLog({ dir, ...opts })
          const kept = tailBase + Math.floor(pos / REC_SIZE)
          expect(await readAllValues(log)).toEqual(range(kept))
          expect(log.recovery.truncated).toHaveLength(1)
          const t = log.recovery.truncated[0]!
          expect(t.file).toBe(file)
          expect(t.position).toBe((kept - tailBase) * REC_SIZE)
          expect(t.droppedBytes).toBe(tailBytes - t.position)
          expect(t.lastValidOffset).toBe(kept - 1)
          expect((await log.append([{ value: value(kept) }])).firstOffset).toBe(kept)
          await log.close()
          await rm(dir, { recursive: true })
        },
      ),
      { seed, numRuns: 25 },
    )
  })

  it('a torn tail (cut anywhere, or zero-filled past the end) keeps every whole record', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: tailBytes }), fc.boolean(), async (cut, zeros) => {
        const dir = await copy()
        const file = join(dir, tailName)
        if (zeros) await writeFile(file, Buffer.concat([await readFile(file), Buffer.alloc(cut + 1)]))
        else await truncate(file, cut)
        const log = await openLog({ dir, ...opts })
        const kept = zeros ? TOTAL : tailBase + Math.floor(cut / REC_SIZE)
        expect(await readAllValues(log)).toEqual(range(kept))
        const whole = zeros ? false : cut % REC_SIZE === 0
        expect(log.recovery.truncated).toHaveLength(whole ? 0 : 1)
        await log.close()
        await rm(dir, { recursive: true })
      }),
      { seed, numRuns: 25 },
    )
  })

  it('damaged, truncated or missing index files are rebuilt or bypassed; nothing is lost', async () => {
    const files = (await readdir(template)).filter((f) => f.endsWith('.index') || f.endsWith('.timeindex'))
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...files),
        fc.constantFrom('flip', 'truncate', 'delete', 'garbage'),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        async (name, how, at, x) => {
          const dir = await copy()
          const file = join(dir, name)
          const buf = await readFile(file)
          if (how === 'delete') await rm(file)
          else if (how === 'truncate') await truncate(file, at % (buf.length + 1))
          else if (how === 'garbage') await writeFile(file, Buffer.concat([buf, Buffer.from([x, x, x])]))
          else if (buf.length > 0) {
            buf[at % buf.length] = buf[at % buf.length]! ^ x
            await writeFile(file, buf)
          }
          const log = await openLog({ dir, ...opts })
          expect(await readAllValues(log)).toEqual(range(TOTAL))
          for (const i of [0, 5, 9, 17, TOTAL - 1]) {
            expect((await log.read(i, { maxRecords: 1 }))[0]!.offset).toBe(i)
            expect(await log.offsetForTime(1000 + i)).toBe(i)
          }
          expect(await log.offsetForTime(5000)).toBeUndefined()
          await log.close()
          await rm(dir, { recursive: true })
        },
      ),
      { seed, numRuns: 40 },
    )
  })

  it('corruption in a sealed segment is an error naming file and position, never silent loss', async () => {
    const dir = await copy()
    const sealed = join(dir, `${String(PER_SEG).padStart(20, '0')}.log`)
    const buf = await readFile(sealed)
    buf[REC_SIZE * 3 + 50] = buf[REC_SIZE * 3 + 50]! ^ 0xff
    await writeFile(sealed, buf)
    const log = await openLog({ dir, ...opts })
    expect(await log.read(0, { maxRecords: 5 })).toHaveLength(5)
    const err = await log.read(PER_SEG + 1).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(CorruptLogError)
    expect((err as CorruptLogError).file).toBe(sealed)
    expect((err as CorruptLogError).position).toBe(REC_SIZE * 3)
    expect((err as Error).message).toMatch(/checksum/)
    await log.close()
    // With its index gone the segment must be rescanned on open: open refuses, naming it.
    await rm(sealed.replace(/\.log$/, '.index'))
    const err2 = await openLog({ dir, ...opts }).catch((e: unknown) => e)
    expect(err2).toBeInstanceOf(CorruptLogError)
    expect((err2 as CorruptLogError).file).toBe(sealed)
    expect((await stat(sealed)).size).toBe(buf.length) // nothing was cut
  })

  it('a sealed segment whose background fsync was interrupted is verified; damage there cuts the log', async () => {
    const stem = String(PER_SEG).padStart(20, '0') // the second segment
    // marker on an intact segment: everything kept, marker gone
    let dir = await copy()
    await writeFile(join(dir, `${stem}.sealing`), '')
    let log = await openLog({ dir, ...opts })
    expect(await readAllValues(log)).toEqual(range(TOTAL))
    expect(log.recovery.removedFiles).toContain(`${stem}.sealing`)
    expect(log.recovery.truncated).toEqual([])
    await log.close()
    expect((await readdir(dir)).some((f) => f.endsWith('.sealing'))).toBe(false)
    // marker on a damaged segment: cut there, later segments dropped and reported
    dir = await copy()
    const file = join(dir, `${stem}.log`)
    const buf = await readFile(file)
    buf[REC_SIZE * 5 + 20] = buf[REC_SIZE * 5 + 20]! ^ 0x40
    await writeFile(file, buf)
    await writeFile(join(dir, `${stem}.sealing`), '')
    log = await openLog({ dir, ...opts })
    expect(await readAllValues(log)).toEqual(range(PER_SEG + 5))
    const t = log.recovery.truncated
    expect(t.map((x) => x.file)).toEqual([
      file,
      join(dir, `${String(PER_SEG * 2).padStart(20, '0')}.log`),
      join(dir, `${String(PER_SEG * 3).padStart(20, '0')}.log`),
    ])
    expect(t[0]!.position).toBe(REC_SIZE * 5)
    expect(t.every((x) => x.lastValidOffset === PER_SEG + 4)).toBe(true)
    expect(log.segments().length).toBe(2)
    expect((await log.append([{ value: value(PER_SEG + 5) }])).firstOffset).toBe(PER_SEG + 5)
    await log.close()
  })
})
