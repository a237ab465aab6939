import { open, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { INLINE_WRITE_BYTES } from '../../src/log/constants.js'
import type { Log, LogOptions } from '../../src/log/index.js'
import { LogClosedError, openLog } from '../../src/log/index.js'
import { SYNC_WRITES } from '../../src/log/segment.js'
import { waitFor } from '../helpers/nodes.js'
import { b, clock, recs, s, summary, tempDir } from './helpers.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

async function fresh(
  opts: Partial<LogOptions> = {},
): Promise<{ log: Log; dir: string; reopen: (o?: Partial<LogOptions>) => Promise<Log> }> {
  const t = await tempDir()
  const logs: Log[] = []
  cleanups.push(async () => {
    for (const l of logs) await l.close().catch(() => {})
    await t.cleanup()
  })
  const open = async (o: Partial<LogOptions> = {}) => {
    const l = await openLog({ dir: t.dir, fsync: 'never', ...opts, ...o })
    logs.push(l)
    return l
  }
  return { log: await open(), dir: t.dir, reopen: open }
}

async function readAll(log: Log, from = 0): Promise<ReturnType<typeof summary>> {
  const out: ReturnType<typeof summary> = []
  let next = from
  for (;;) {
    const rs = await log.read(next, { maxBytes: 200 })
    if (rs.length === 0) return out
    out.push(...summary(rs))
    next = rs[rs.length - 1]!.offset + 1
  }
}

describe('commit log basics', () => {
  it('appends, assigns dense offsets, reads back everything across tiny segments', async () => {
    const { log, dir } = await fresh({ segmentBytes: 200, indexIntervalBytes: 64 })
    expect(log.latestOffset()).toBe(-1)
    expect(log.earliestOffset()).toBe(0)
    const r1 = await log.append(recs(5))
    expect(r1).toEqual({ firstOffset: 0, lastOffset: 4 })
    const r2 = await log.append(recs(20, 'w'))
    expect(r2).toEqual({ firstOffset: 5, lastOffset: 24 })
    expect(log.latestOffset()).toBe(24)
    const all = await readAll(log)
    expect(all.map((r) => r.offset)).toEqual(Array.from({ length: 25 }, (_, i) => i))
    expect(all[7]!.value).toBe('w2')
    expect(log.segments().length).toBeGreaterThan(3)
    const names = await readdir(dir)
    expect(names).toContain('00000000000000000000.log')
    expect(names).toContain('00000000000000000000.index')
    expect(names).toContain('00000000000000000000.timeindex')
  })

  const readCases: Array<{
    name: string
    from: number
    maxBytes?: number
    maxRecords?: number
    expect: number[]
  }> = [
    { name: 'from the start, one record budget', from: 0, maxBytes: 1, expect: [0] },
    { name: 'from the middle', from: 13, maxRecords: 3, expect: [13, 14, 15] },
    { name: 'last record', from: 29, expect: [29] },
    { name: 'past the end', from: 30, expect: [] },
    { name: 'far past the end', from: 1000, expect: [] },
  ]
  for (const c of readCases) {
    it(`read: ${c.name}`, async () => {
      const { log } = await fresh({ segmentBytes: 256, indexIntervalBytes: 50 })
      await log.append(recs(30))
      const rs = await log.read(c.from, { maxBytes: c.maxBytes, maxRecords: c.maxRecords })
      expect(rs.map((r) => r.offset)).toEqual(c.expect)
    })
  }

  it('keeps keys, headers, timestamps and terms', async () => {
    const { log, reopen } = await fresh()
    await log.append([
      { key: b('k'), value: b('v'), headers: { a: b('1'), ü: new Uint8Array(0) }, timestamp: 42, term: 7 },
      { key: new Uint8Array(0), value: new Uint8Array(0) },
      { value: b('nokey') },
    ])
    const check = async (l: Log) => {
      const [r0, r1, r2] = await l.read(0)
      expect(r0!.timestamp).toBe(42)
      expect(r0!.term).toBe(7)
      expect(s(r0!.key)).toBe('k')
      expect(Object.keys(r0!.headers!)).toEqual(['a', 'ü'])
      expect(s(r0!.headers!.a)).toBe('1')
      expect(r1!.key?.length).toBe(0)
      expect(r1!.value.length).toBe(0)
      expect(r2!.key).toBeUndefined()
      expect(r2!.headers).toBeUndefined()
      expect(l.lastTerm()).toBe(0)
      expect(await l.termAt(0)).toBe(7)
      expect(await l.termAt(3)).toBeUndefined()
    }
    await check(log)
    await log.close()
    await check(await reopen())
  })

  it('rejects bad input naming the field', async () => {
    const { log } = await fresh({ maxRecordBytes: 100 })
    await expect(log.append([])).rejects.toThrow(/non-empty/)
    await expect(log.append([{ value: 'x' as unknown as Uint8Array }])).rejects.toThrow(/records\[0\]\.value/)
    await expect(log.append([{ value: new Uint8Array(200) }])).rejects.toThrow(/maxRecordBytes/)
    await expect(log.read(-1)).rejects.toThrow(/fromOffset/)
    await expect(openLog({ dir: '' })).rejects.toThrow(/dir/)
    expect(log.latestOffset()).toBe(-1)
  })

  it('reopens with the same content and continues offsets', async () => {
    const { log, reopen } = await fresh({ segmentBytes: 150 })
    await log.append(recs(12))
    const before = await readAll(log)
    await log.close()
    const again = await reopen()
    expect(again.recovery.truncated).toEqual([])
    expect(await readAll(again)).toEqual(before)
    expect((await again.append(recs(1, 'z'))).firstOffset).toBe(12)
  })

  it('appendAt keeps given offsets, allows gaps, refuses going backwards', async () => {
    const { log } = await fresh({ segmentBytes: 200 })
    await log.appendAt([
      { offset: 0, timestamp: 5, term: 1, value: b('a') },
      { offset: 3, timestamp: 6, term: 2, value: b('b') },
    ])
    expect(log.latestOffset()).toBe(3)
    expect(log.lastTerm()).toBe(2)
    await expect(log.appendAt([{ offset: 3, timestamp: 1, term: 2, value: b('c') }])).rejects.toThrow(
      /must exceed 3/,
    )
    expect((await log.append(recs(1))).firstOffset).toBe(4)
    expect((await readAll(log)).map((r) => r.offset)).toEqual([0, 3, 4])
  })

  it('offsetForTime finds the first record at or after a timestamp, even with non-monotonic times', async () => {
    const { log } = await fresh({ segmentBytes: 300, indexIntervalBytes: 40 })
    const times = [10, 20, 15, 30, 30, 25, 40, 50, 45, 60, 70, 65, 80]
    for (const t of times) await log.append([{ value: b(`t${t}`), timestamp: t }])
    const expected = (target: number) => {
      const i = times.findIndex((t) => t >= target)
      return i < 0 ? undefined : i
    }
    for (let target = 0; target <= 85; target += 1) {
      expect(await log.offsetForTime(target), `target ${target}`).toBe(expected(target))
    }
  })

  it('truncateAfter drops the tail across segments and continues from there', async () => {
    const { log, reopen } = await fresh({ segmentBytes: 150, indexIntervalBytes: 30 })
    await log.append(recs(30).map((r, i) => ({ ...r, term: i < 10 ? 1 : 2 })))
    await log.truncateAfter(7)
    expect(log.latestOffset()).toBe(7)
    expect(log.lastTerm()).toBe(1)
    expect((await readAll(log)).map((r) => r.offset)).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    expect((await log.append([{ value: b('new'), term: 3 }])).firstOffset).toBe(8)
    await log.close()
    const again = await reopen()
    const all = await readAll(again)
    expect(all.length).toBe(9)
    expect(all[8]!.value).toBe('new')
    await again.truncateAfter(-1)
    expect(again.latestOffset()).toBe(-1)
    expect(await again.read(0)).toEqual([])
    expect((await again.append(recs(1))).firstOffset).toBe(0)
  })

  it('waitForNew resolves on append without polling and honours AbortSignal', async () => {
    const { log } = await fresh()
    const p = log.waitForNew(-1)
    let done = false
    void p.then(() => (done = true))
    await new Promise((r) => setTimeout(r, 10))
    expect(done).toBe(false)
    await log.append(recs(2))
    expect(await p).toBe(1)
    expect(await log.waitForNew(0)).toBe(1)
    const ac = new AbortController()
    const w = log.waitForNew(1, ac.signal)
    ac.abort()
    await expect(w).rejects.toMatchObject({ name: 'AbortedError' })
    const w2 = log.waitForNew(5).catch((e: unknown) => e)
    await log.close()
    expect(await w2).toBeInstanceOf(LogClosedError)
    await expect(log.append(recs(1))).rejects.toBeInstanceOf(LogClosedError)
  })

  it('rolls by age with an injected clock', async () => {
    const c = clock()
    const { log } = await fresh({ segmentMs: 1000, now: c.now })
    await log.append(recs(1))
    c.advance(500)
    await log.append(recs(1))
    expect(log.segments().length).toBe(1)
    c.advance(600)
    await log.append(recs(1))
    expect(log.segments().length).toBe(2)
    expect(log.segments()[1]!.baseOffset).toBe(2)
    c.advance(2000)
    await log.maintain()
    expect(log.segments().length).toBe(3)
  })

  it('group commit: concurrent appends share fsyncs under fsync always', async () => {
    const { log } = await fresh({ fsync: 'always' })
    await Promise.all(Array.from({ length: 50 }, (_, i) => log.append([{ value: b(`c${i}`) }])))
    const st = log.stats()
    expect(st.appends).toBe(50)
    expect(st.fsyncs).toBeLessThan(50)
    expect(st.appendsPerFsync).toBeGreaterThan(1)
    expect(log.durableOffset()).toBe(49)
    expect((await readAll(log)).length).toBe(50)
  })

  it('fsync always: one synced write per round (no separate fdatasync where O_DSYNC exists)', async () => {
    const { log, dir } = await fresh({ fsync: 'always' })
    const probe = await open(join(dir, 'probe'), 'w')
    const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> }
    await probe.close()
    const original = proto.datasync
    let datasyncs = 0
    proto.datasync = function (this: unknown) {
      datasyncs++
      return original.call(this)
    }
    try {
      for (let i = 0; i < 5; i++) await log.append([{ value: b(`d${i}`) }])
    } finally {
      proto.datasync = original
    }
    expect(log.stats().fsyncs).toBe(5)
    expect(log.durableOffset()).toBe(4)
    expect(datasyncs).toBe(SYNC_WRITES ? 0 : 5)
  })

  it('without fsync always, small rounds are written inline (no thread-pool write), large ones through it', async () => {
    const { log, dir, reopen } = await fresh({ fsync: 'never' })
    const probe = await log.append([{ value: b('probe') }]) // opens the segment
    expect(probe.firstOffset).toBe(0)
    const fh = await open(join(dir, 'probe'), 'w')
    const proto = Object.getPrototypeOf(fh) as { write: (...a: unknown[]) => Promise<unknown> }
    await fh.close()
    const original = proto.write
    let writes = 0
    proto.write = function (this: unknown, ...a: unknown[]) {
      writes++
      return original.apply(this, a)
    }
    try {
      for (let i = 0; i < 5; i++) await log.append([{ value: b(`i${i}`) }])
      expect(writes).toBe(0) // one small round each, written with a blocking pwrite
      await log.append([{ value: new Uint8Array(INLINE_WRITE_BYTES) }]) // over the bound
      expect(writes).toBe(1)
    } finally {
      proto.write = original
    }
    expect((await readAll(log)).slice(0, 6).map((r) => r.value)).toEqual([
      'probe',
      'i0',
      'i1',
      'i2',
      'i3',
      'i4',
    ])
    await log.close()
    const again = await reopen()
    expect(again.latestOffset()).toBe(6)
  })

  it('eagerWrites: a round starts right after the appending turn; appends of one turn still share it', async () => {
    const { log } = await fresh({ fsync: 'always', eagerWrites: true })
    const offsets = await Promise.all(
      Array.from({ length: 10 }, (_, i) => log.append([{ value: b(`e${i}`) }])),
    )
    expect(offsets.map((o) => o.firstOffset)).toEqual(Array.from({ length: 10 }, (_, i) => i))
    expect(log.stats().fsyncs).toBe(1) // the ten appends of one turn went out together
    for (let i = 10; i < 15; i++) await log.append([{ value: b(`e${i}`) }])
    expect(log.stats().fsyncs).toBe(6)
    expect((await readAll(log)).map((r) => r.value)).toEqual(Array.from({ length: 15 }, (_, i) => `e${i}`))
  })

  it('index files of the active segment are written when it is sealed, not on every append', async () => {
    const { log, reopen } = await fresh({ indexIntervalBytes: 64 })
    for (let i = 0; i < 20; i++) await log.append([{ value: b(`value-${i}`.padEnd(80, 'x')) }])
    const active = log.segments()[0]!
    const index = active.file.replace(/\.log$/, '.index')
    expect((await stat(index)).size).toBe(0) // a cache: recovery rebuilds the tail's
    await log.roll()
    expect((await stat(index)).size).toBeGreaterThan(0)
    expect((await readAll(log, 10)).map((r) => r.offset)).toEqual(
      Array.from({ length: 10 }, (_, i) => 10 + i),
    )
    await log.append([{ value: b('after') }])
    await log.close()
    const again = await reopen()
    expect((await readAll(again, 15)).length).toBe(6)
  })

  it('fsync interval syncs in the background', async () => {
    const { log } = await fresh({ fsync: { intervalMs: 5 } })
    await log.append(recs(3))
    expect(log.latestOffset()).toBe(2)
    await new Promise((r) => setTimeout(r, 50))
    expect(log.durableOffset()).toBe(2)
    expect(log.stats().fsyncs).toBeGreaterThan(0)
  })

  it('large records bigger than the read budget and chunk come back whole', async () => {
    const { log } = await fresh({ segmentBytes: 4096 })
    const big = new Uint8Array(3 * 1024 * 1024).fill(7)
    await log.append([{ value: b('small') }, { value: big }, { value: b('after') }])
    const rs = await log.read(1, { maxBytes: 10 })
    expect(rs.length).toBe(1)
    expect(rs[0]!.value.length).toBe(big.length)
    expect((await log.read(0, { maxBytes: 10 })).length).toBe(1)
    const st = await stat(log.segments()[0]!.file)
    expect(st.size).toBeGreaterThan(0)
  })

  it('keeps file handles and cached indexes bounded with many segments, under concurrent reads', async () => {
    const { readdirSync } = await import('node:fs')
    const fds = () => readdirSync('/proc/self/fd').length
    const { log } = await fresh({ segmentBytes: 120, indexIntervalBytes: 30 })
    for (let i = 0; i < 200; i += 4) await log.append(recs(4, `v${i}-`))
    expect(log.segments().length).toBeGreaterThan(60)
    const base = fds()
    const froms = Array.from({ length: 300 }, (_, i) => (i * 7919) % 200)
    await Promise.all(
      froms.map(async (from) => {
        const [r] = await log.read(from, { maxRecords: 1 })
        expect(r!.offset).toBe(from)
        expect(s(r!.value)).toBe(`v${from - (from % 4)}-${from % 4}`)
      }),
    )
    // Handles evicted while a read still used them close when it lets go (asynchronously):
    // the count comes back under the bound, it does not grow with the reads.
    const bounded = () => waitFor(() => fds() - base <= 20, 5000, `open files within 20 of ${base}`)
    await bounded()
    for (let from = 0; from < 200; from += 3)
      expect((await log.read(from, { maxRecords: 1 }))[0]!.offset).toBe(from)
    await bounded()
  })
})
