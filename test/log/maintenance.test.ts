import { readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { Log, LogOptions } from '../../src/log/index.js'
import { openLog } from '../../src/log/index.js'
import { b, clock, recs, summary, tempDir } from './helpers.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

async function fresh(opts: Partial<LogOptions> = {}) {
  const t = await tempDir()
  const logs: Log[] = []
  cleanups.push(async () => {
    for (const l of logs) await l.close().catch(() => {})
    await t.cleanup()
  })
  const open = async (o: Partial<LogOptions> = {}) => {
    const l = await openLog({
      dir: t.dir,
      fsync: 'never',
      segmentBytes: 120,
      indexIntervalBytes: 40,
      ...opts,
      ...o,
    })
    logs.push(l)
    return l
  }
  return { log: await open(), dir: t.dir, reopen: open }
}

async function readAll(log: Log) {
  const out: ReturnType<typeof summary> = []
  let next = 0
  for (;;) {
    const rs = await log.read(next, { maxBytes: 100 })
    if (rs.length === 0) return out
    out.push(...summary(rs))
    next = rs[rs.length - 1]!.offset + 1
  }
}

describe('retention', () => {
  const cases: Array<{
    name: string
    retention: LogOptions['retention']
    expectEarliestAtLeast: number
    keepAtLeast: number
  }> = [
    { name: 'maxMessages', retention: { maxMessages: 10 }, expectEarliestAtLeast: 10, keepAtLeast: 10 },
    { name: 'maxBytes', retention: { maxBytes: 300 }, expectEarliestAtLeast: 10, keepAtLeast: 6 },
  ]
  for (const c of cases) {
    it(`deletes whole sealed segments by ${c.name}, never below the limit`, async () => {
      const { log, reopen } = await fresh({ retention: c.retention })
      for (let i = 0; i < 40; i++) await log.append([{ value: b(`v${i}`) }])
      const segsBefore = log.segments().length
      const res = await log.enforceRetention()
      expect(res.deletedSegments).toBeGreaterThan(0)
      expect(log.segments().length).toBe(segsBefore - res.deletedSegments)
      expect(log.earliestOffset()).toBeGreaterThanOrEqual(c.expectEarliestAtLeast)
      const all = await readAll(log)
      expect(all.length).toBeGreaterThanOrEqual(c.keepAtLeast)
      expect(all[all.length - 1]!.offset).toBe(39)
      expect(all[0]!.offset).toBe(log.earliestOffset())
      if (c.retention?.maxMessages)
        expect(40 - log.earliestOffset()).toBeGreaterThanOrEqual(c.retention.maxMessages)
      if (c.retention?.maxBytes) {
        expect(log.segments().reduce((a, s) => a + s.bytes, 0)).toBeGreaterThanOrEqual(c.retention.maxBytes)
      }
      await log.close()
      const again = await reopen()
      expect(await readAll(again)).toEqual(all)
      // reading below the earliest offset starts at the earliest
      expect((await again.read(0, { maxRecords: 1 }))[0]!.offset).toBe(again.earliestOffset())
    })
  }

  it('deletes by age using record timestamps and the injected clock, never the active segment', async () => {
    const c = clock(10_000)
    const { log } = await fresh({ retention: { maxAge: 1000 }, now: c.now })
    for (let i = 0; i < 20; i++) {
      await log.append([{ value: b(`v${i}`) }])
      c.advance(100)
    }
    // now = 12000: records with timestamp < 11000 are expired (the first ~10)
    await log.enforceRetention()
    const all = await readAll(log)
    expect(all[0]!.offset).toBeGreaterThan(0)
    expect(all[0]!.offset).toBeLessThanOrEqual(10)
    c.advance(100_000)
    await log.maintain()
    expect(log.segments().length).toBe(1)
    expect(log.segments()[0]!.sealed).toBe(false)
    expect((await readAll(log)).length).toBeGreaterThan(0)
  })
})

describe('compaction', () => {
  it('keeps the latest value per key, keyless records, and never touches the active segment', async () => {
    const { log, reopen, dir } = await fresh({ deleteRetentionMs: 1e12 })
    const model = new Map<string, number>()
    for (let i = 0; i < 60; i++) {
      const key = i % 7 === 0 ? undefined : `k${i % 5}`
      await log.append([{ key: key === undefined ? undefined : b(key), value: b(`v${i}`) }])
      if (key) model.set(key, i)
    }
    const activeBase = log.segments().at(-1)!.baseOffset
    const res = await log.compact()
    expect(res.recordsRemoved).toBeGreaterThan(0)
    const all = await readAll(log)
    // every keyless record survives
    for (let i = 0; i < 60; i += 7) expect(all.some((r) => r.offset === i)).toBe(true)
    // the latest per key survives, older ones in sealed segments do not
    for (const [k, off] of model) expect(all.find((r) => r.key === k && r.offset === off)).toBeDefined()
    for (const r of all) {
      if (r.key && r.offset < activeBase) expect(model.get(r.key)).toBe(r.offset)
    }
    // the active segment is untouched
    expect(all.filter((r) => r.offset >= activeBase).length).toBe(60 - activeBase)
    expect((await readdir(dir)).some((n) => n.endsWith('.cleaned'))).toBe(false)
    await log.close()
    const again = await reopen()
    expect(again.recovery.rebuiltIndexes).toEqual([])
    expect(await readAll(again)).toEqual(all)
    expect((await again.compact()).recordsRemoved).toBe(0)
  })

  it('keeps tombstones for deleteRetentionMs, then drops them', async () => {
    const c = clock(1_000_000)
    const { log } = await fresh({ deleteRetentionMs: 5000, now: c.now, segmentBytes: 100 })
    await log.append([{ key: b('a'), value: b('1') }])
    await log.append([{ key: b('a'), value: new Uint8Array(0) }])
    for (let i = 0; i < 8; i++) await log.append([{ key: b(`x${i}`), value: b('filler') }])
    await log.compact()
    let all = await readAll(log)
    expect(all.filter((r) => r.key === 'a')).toEqual([{ offset: 1, key: 'a', value: '' }])
    c.advance(10_000)
    await log.compact()
    all = await readAll(log)
    expect(all.filter((r) => r.key === 'a')).toEqual([])
  })

  it('removes leftovers of an interrupted compaction on open', async () => {
    const { log, reopen, dir } = await fresh()
    await log.append(recs(10, 'v', (i) => `k${i % 2}`))
    const before = await readAll(log)
    await log.close()
    await writeFile(join(dir, '00000000000000000000.log.cleaned'), 'garbage')
    await writeFile(join(dir, '00000000000000000000.index.cleaned'), 'garbage')
    await writeFile(join(dir, 'x.tmp'), 'garbage')
    const again = await reopen()
    expect(again.recovery.removedFiles.sort()).toEqual([
      '00000000000000000000.index.cleaned',
      '00000000000000000000.log.cleaned',
      'x.tmp',
    ])
    expect(await readAll(again)).toEqual(before)
  })

  it('deletes a sealed segment left empty and keeps reads and offsets right', async () => {
    const { log } = await fresh({ segmentBytes: 60, deleteRetentionMs: 1e12 })
    for (let i = 0; i < 6; i++) await log.append([{ key: b('same'), value: b(`v${i}`) }])
    const n = log.segments().length
    const res = await log.compact()
    expect(res.segmentsDeleted).toBeGreaterThan(0)
    expect(log.segments().length).toBeLessThan(n)
    const all = await readAll(log)
    expect(all.map((r) => r.value)).toEqual(['v5'])
    expect((await log.append(recs(1))).firstOffset).toBe(6)
  })
})

describe('compaction crash states', () => {
  it('every intermediate state of a segment swap opens to the old or the new segment', async () => {
    const { copyFile, cp, rm: rmf } = await import('node:fs/promises')
    const { log, dir } = await fresh({ segmentBytes: 200, deleteRetentionMs: 1e12 })
    for (let i = 0; i < 40; i++) {
      await log.append([{ key: i % 3 === 0 ? undefined : b(`k${i % 4}`), value: b(`v${i}`) }])
    }
    await log.close()
    const parent = join(dir, '..')
    const A = `${dir}-A`
    const B = `${dir}-B`
    cleanups.push(async () => {
      await rmf(A, { recursive: true, force: true })
      await rmf(B, { recursive: true, force: true })
    })
    await cp(dir, A, { recursive: true })
    await cp(dir, B, { recursive: true })
    const lb = await openLog({ dir: B, fsync: 'never' })
    const res = await lb.compact()
    expect(res.segmentsRewritten).toBeGreaterThan(0)
    const contentB = await readAll(lb)
    await lb.close()
    const la = await openLog({ dir: A, fsync: 'never' })
    const contentA = await readAll(la)
    await la.close()
    // The first segment that was rewritten (same name, different bytes) and the next base.
    const { readFile: rf } = await import('node:fs/promises')
    const logsA = (await readdir(A)).filter((f) => f.endsWith('.log')).sort()
    let x = ''
    for (const f of logsA) {
      const nb = await rf(join(B, f)).catch(() => undefined)
      if (nb && !nb.equals(await rf(join(A, f)))) {
        x = f.slice(0, 20)
        break
      }
    }
    expect(x).not.toBe('')
    const xBase = Number(x)
    const yBase = Number(logsA[logsA.indexOf(`${x}.log`) + 1]!.slice(0, 20))
    const after = [
      ...contentA.filter((r) => r.offset < xBase || r.offset >= yBase),
      ...contentB.filter((r) => r.offset >= xBase && r.offset < yBase),
    ].sort((p, q) => p.offset - q.offset)
    expect(after).not.toEqual(contentA)

    let k = 0
    const state = async (steps: (d: string) => Promise<void>) => {
      const d = join(parent, `state-${k++}-${Date.now()}`)
      cleanups.push(() => rmf(d, { recursive: true, force: true }))
      await cp(A, d, { recursive: true })
      await steps(d)
      const l = await openLog({ dir: d, fsync: 'never' })
      const got = await readAll(l)
      const rec = l.recovery
      await l.close()
      return { got, rec }
    }
    const cleaned = async (d: string, suffix: string) =>
      copyFile(join(B, x + suffix), join(d, `${x + suffix}.cleaned`))
    const allCleaned = async (d: string) => {
      for (const sfx of ['.log', '.index', '.timeindex']) await cleaned(d, sfx)
    }
    // 1. cleaned files written, nothing swapped
    let r = await state(allCleaned)
    expect(r.got).toEqual(contentA)
    expect(r.rec.removedFiles.length).toBe(3)
    // 2. old indexes deleted, log not yet renamed
    r = await state(async (d) => {
      await allCleaned(d)
      await rmf(join(d, `${x}.index`))
      await rmf(join(d, `${x}.timeindex`))
    })
    expect(r.got).toEqual(contentA)
    expect(r.rec.rebuiltIndexes.length).toBeGreaterThan(0)
    // 3. log renamed (commit), indexes not yet
    r = await state(async (d) => {
      await allCleaned(d)
      await rmf(join(d, `${x}.index`))
      await rmf(join(d, `${x}.timeindex`))
      await rmf(join(d, `${x}.log.cleaned`))
      await copyFile(join(B, `${x}.log`), join(d, `${x}.log`))
    })
    expect(r.got).toEqual(after)
    // 4. offset index renamed, time index not yet
    r = await state(async (d) => {
      await cleaned(d, '.timeindex')
      await rmf(join(d, `${x}.timeindex`))
      await copyFile(join(B, `${x}.log`), join(d, `${x}.log`))
      await copyFile(join(B, `${x}.index`), join(d, `${x}.index`))
    })
    expect(r.got).toEqual(after)
    // 5. done
    r = await state(async (d) => {
      for (const sfx of ['.log', '.index', '.timeindex']) await copyFile(join(B, x + sfx), join(d, x + sfx))
    })
    expect(r.got).toEqual(after)
    expect(r.rec.rebuiltIndexes).toEqual([])
  })
})

describe('concurrency', () => {
  it('reads racing compaction, retention and truncation never fail and never see wrong bytes', async () => {
    const { log } = await fresh({
      segmentBytes: 150,
      retention: { maxMessages: 150 },
      deleteRetentionMs: 1e12,
    })
    const overrides = new Map<number, string>()
    const expected = (o: number) => overrides.get(o) ?? `v${o}`
    for (let i = 0; i < 300; i += 10) {
      await log.append(
        Array.from({ length: 10 }, (_, j) => ({ key: b(`k${(i + j) % 7}`), value: b(expected(i + j)) })),
      )
    }
    const reads = async (until: Promise<unknown>) => {
      let done = false
      void until.finally(() => (done = true))
      let n = 0
      while (!done || n < 5) {
        const from = (n * 37) % 300
        const rs = await log.read(from, { maxBytes: 200 + (n % 5) * 100 })
        let prev = -1
        for (const r of rs) {
          expect(r.offset).toBeGreaterThan(prev)
          expect(r.offset).toBeGreaterThanOrEqual(Math.min(from, 300))
          expect(new TextDecoder().decode(r.value)).toBe(expected(r.offset))
          prev = r.offset
        }
        n++
        await new Promise((r) => setImmediate(r)) // let the maintenance task make progress
      }
      return n
    }
    const c = log.compact()
    expect(await Promise.all([reads(c), reads(c), c.then(() => 0)])).toBeDefined()
    const t = log.truncateAfter(250)
    await Promise.all([reads(t), reads(t), t])
    const e = log.enforceRetention()
    await Promise.all([reads(e), reads(e), e])
    const t2 = log.truncateAfter(120)
    overrides.set(121, 'x')
    const appended = log.append([{ value: b('x') }]) // queued after the truncation
    await Promise.all([reads(t2), t2])
    expect((await appended).firstOffset).toBe(121)
  })

  it('concurrent reads of a segment whose index files went missing rebuild them once, without failing', async () => {
    const { log, dir } = await fresh({ segmentBytes: 150 })
    for (let i = 0; i < 300; i += 10) {
      await log.append(Array.from({ length: 10 }, (_, j) => ({ value: b(`v${i + j}`) })))
    }
    const names = (await readdir(dir)).sort()
    const active = names
      .filter((n) => n.endsWith('.log'))
      .pop()!
      .slice(0, -'.log'.length)
    const doomed = names.filter((n) => /\.(index|timeindex)$/.test(n) && !n.startsWith(active))
    expect(doomed.length).toBeGreaterThan(40) // more sealed segments than the index cache holds
    for (const n of doomed) await rm(join(dir, n))
    // Every offset, one small read each (a read inside a segment looks its position up in
    // the offset index); four readers in step, so they ask for the same segment together.
    const readEach = async () => {
      const got: string[] = []
      for (let o = 0; o < 300; o++) {
        const rs = await log.read(o, { maxBytes: 1 })
        got.push(new TextDecoder().decode(rs[0]!.value))
      }
      return got
    }
    const all = Array.from({ length: 300 }, (_, i) => `v${i}`)
    for (const got of await Promise.all([readEach(), readEach(), readEach(), readEach()])) {
      expect(got).toEqual(all)
    }
    const after = await readdir(dir)
    expect(doomed.filter((n) => after.includes(n)).length).toBeGreaterThan(20) // rebuilt on disk
    expect(after.filter((n) => n.endsWith('.tmp'))).toEqual([])
  })

  it('close lets queued appends finish first', async () => {
    const { log, reopen } = await fresh({ fsync: 'always' })
    const ps = Array.from({ length: 20 }, (_, i) => log.append([{ value: b(`q${i}`) }]))
    await log.close()
    const res = await Promise.all(ps)
    expect(res.at(-1)!.lastOffset).toBe(19)
    const again = await reopen()
    expect(again.latestOffset()).toBe(19)
  })

  it('maintain() compacts when compact: true, and the maintenance timer runs it', async () => {
    const { log } = await fresh({ compact: true, deleteRetentionMs: 1e12, maintenanceIntervalMs: 10 })
    for (let i = 0; i < 30; i++) await log.append([{ key: b(`k${i % 2}`), value: b(`v${i}`) }])
    await new Promise((r) => setTimeout(r, 80))
    expect(log.stats().compactions).toBeGreaterThan(0) // the timer ran maintain()
    await log.maintain() // and one more pass now that the appends are done
    const all = await readAll(log)
    const sealedEnd = log.segments().at(-1)!.baseOffset
    expect(all.filter((r) => r.offset < sealedEnd).length).toBeLessThanOrEqual(2)
  })
})
