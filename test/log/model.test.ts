/**
 * Model-based property test: random appends, replica appends, reads, time lookups,
 * truncations, retention, compaction and reopens against a plain in-memory model. After a
 * compaction the model adopts what the log kept, once the kept set is checked against the
 * rules (keyless and latest-per-key records and the whole active segment survive).
 * Rerun a failure with LOG_TEST_SEED=<seed printed in the test name / error>.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Log, LogOptions } from '../../src/log/index.js'
import { openLog } from '../../src/log/index.js'
import { b, s, tempDir } from './helpers.js'

interface MRec {
  offset: number
  key: string | undefined
  value: string
  timestamp: number
  term: number
}
interface Model {
  recs: MRec[]
  next: number
  term: number
}
interface Real {
  log: Log
  opts: LogOptions
}

const seed = Number(process.env.LOG_TEST_SEED ?? Date.now() % 1_000_000)
const sizeOf = (r: MRec) =>
  44 + (r.key === undefined ? 0 : Buffer.byteLength(r.key)) + Buffer.byteLength(r.value)

async function dump(log: Log): Promise<MRec[]> {
  const out: MRec[] = []
  let next = 0
  for (;;) {
    const rs = await log.read(next, { maxBytes: 300 })
    if (rs.length === 0) return out
    for (const r of rs) {
      out.push({ offset: r.offset, key: s(r.key), value: s(r.value)!, timestamp: r.timestamp, term: r.term })
    }
    next = rs[rs.length - 1]!.offset + 1
  }
}

function checkSame(real: MRec[], model: Model, what: string): void {
  expect(real, what).toEqual(model.recs)
}

const recArb = fc.record({
  key: fc.option(fc.constantFrom('a', 'b', 'c', 'd'), { nil: undefined }),
  value: fc.oneof(fc.constant(''), fc.string({ maxLength: 24 })),
  timestamp: fc.integer({ min: 0, max: 50 }),
})

class Append implements fc.AsyncCommand<Model, Real> {
  constructor(readonly batch: Array<{ key: string | undefined; value: string; timestamp: number }>) {}
  check = () => true
  async run(m: Model, r: Real) {
    const res = await r.log.append(
      this.batch.map((x) => ({
        key: x.key === undefined ? undefined : b(x.key),
        value: b(x.value),
        timestamp: x.timestamp,
        term: m.term,
      })),
    )
    expect(res).toEqual({ firstOffset: m.next, lastOffset: m.next + this.batch.length - 1 })
    for (const x of this.batch) m.recs.push({ offset: m.next++, ...x, term: m.term })
    expect(r.log.latestOffset()).toBe(m.next - 1)
  }
  toString = () => `append(${JSON.stringify(this.batch)})`
}

class AppendAt implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly gap: number,
    readonly value: string,
  ) {}
  check = () => true
  async run(m: Model, r: Real) {
    m.term++
    const offset = m.next + this.gap
    await r.log.appendAt([{ offset, timestamp: 7, term: m.term, value: b(this.value) }])
    m.recs.push({ offset, key: undefined, value: this.value, timestamp: 7, term: m.term })
    m.next = offset + 1
    expect(r.log.lastTerm()).toBe(m.term)
  }
  toString = () => `appendAt(+${this.gap}, ${JSON.stringify(this.value)})`
}

class Read implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly from: number,
    readonly maxBytes: number,
  ) {}
  check = () => true
  async run(m: Model, r: Real) {
    const from = Math.min(this.from, m.next + 1)
    const got = await r.log.read(from, { maxBytes: this.maxBytes })
    const expected: MRec[] = []
    let bytes = 0
    for (const x of m.recs) {
      if (x.offset < from) continue
      if (expected.length > 0 && bytes + sizeOf(x) > this.maxBytes) break
      expected.push(x)
      bytes += sizeOf(x)
    }
    expect(
      got.map((x) => ({
        offset: x.offset,
        key: s(x.key),
        value: s(x.value),
        timestamp: x.timestamp,
        term: x.term,
      })),
    ).toEqual(expected)
  }
  toString = () => `read(${this.from}, ${this.maxBytes})`
}

class ForTime implements fc.AsyncCommand<Model, Real> {
  constructor(readonly t: number) {}
  check = () => true
  async run(m: Model, r: Real) {
    expect(await r.log.offsetForTime(this.t)).toBe(m.recs.find((x) => x.timestamp >= this.t)?.offset)
  }
  toString = () => `offsetForTime(${this.t})`
}

class Truncate implements fc.AsyncCommand<Model, Real> {
  constructor(readonly back: number) {}
  check = (m: Readonly<Model>) => m.next > 0
  async run(m: Model, r: Real) {
    const to = Math.max(-1, m.next - 1 - this.back)
    await r.log.truncateAfter(to)
    m.recs = m.recs.filter((x) => x.offset <= to)
    m.next = Math.min(m.next, to + 1)
    expect(r.log.latestOffset()).toBe(m.next - 1)
    expect(r.log.lastTerm()).toBe(m.recs.at(-1)?.term ?? -1)
  }
  toString = () => `truncateAfter(next-1-${this.back})`
}

class Retention implements fc.AsyncCommand<Model, Real> {
  check = () => true
  async run(m: Model, r: Real) {
    const before = r.log.earliestOffset()
    const res = await r.log.enforceRetention()
    const earliest = r.log.earliestOffset()
    expect(earliest).toBeGreaterThanOrEqual(before)
    if (res.deletedSegments > 0)
      expect(m.next - earliest).toBeGreaterThanOrEqual(r.opts.retention!.maxMessages!)
    m.recs = m.recs.filter((x) => x.offset >= earliest)
    checkSame(await dump(r.log), m, 'after retention')
  }
  toString = () => 'retention'
}

class Compact implements fc.AsyncCommand<Model, Real> {
  check = () => true
  async run(m: Model, r: Real) {
    const activeBase = r.log.segments().at(-1)!.baseOffset
    await r.log.compact()
    await this.verify(m, r, activeBase)
  }
  /** Checks the compaction rules against the model, then adopts what the log kept. */
  async verify(m: Model, r: Real, activeBase: number) {
    const got = await dump(r.log)
    const latest = new Map<string, number>()
    for (const x of m.recs) if (x.key !== undefined) latest.set(x.key, x.offset)
    const kept = new Set(got.map((x) => x.offset))
    for (const x of m.recs) {
      const mustKeep = x.key === undefined || latest.get(x.key) === x.offset || x.offset >= activeBase
      if (mustKeep) expect(kept.has(x.offset), `offset ${x.offset} must survive compaction`).toBe(true)
    }
    const byOffset = new Map(m.recs.map((x) => [x.offset, x]))
    for (const x of got) expect(byOffset.get(x.offset)).toEqual(x)
    m.recs = got
  }
  toString = () => 'compact'
}

/** Appends racing a compaction pass: offsets follow call order, compaction rules still hold. */
class AppendsDuringCompaction implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly batches: Array<Array<{ key: string | undefined; value: string; timestamp: number }>>,
  ) {}
  check = () => true
  async run(m: Model, r: Real) {
    const activeBase = r.log.segments().at(-1)!.baseOffset
    const toRecs = (batch: (typeof this.batches)[number]) =>
      batch.map((x) => ({
        key: x.key === undefined ? undefined : b(x.key),
        value: b(x.value),
        timestamp: x.timestamp,
        term: m.term,
      }))
    const [first, ...rest] = this.batches
    const p1 = r.log.append(toRecs(first!))
    const c = r.log.compact()
    const ps = [p1, ...rest.map((x) => r.log.append(toRecs(x)))]
    const results = await Promise.all(ps)
    await c
    for (let i = 0; i < this.batches.length; i++) {
      expect(results[i]!.firstOffset).toBe(m.next)
      for (const x of this.batches[i]!) m.recs.push({ offset: m.next++, ...x, term: m.term })
    }
    await new Compact().verify(m, r, activeBase)
  }
  toString = () => `appendsDuringCompaction(${JSON.stringify(this.batches)})`
}

class Reopen implements fc.AsyncCommand<Model, Real> {
  check = () => true
  async run(m: Model, r: Real) {
    await r.log.close()
    r.log = await openLog(r.opts)
    expect(r.log.recovery.truncated).toEqual([])
    expect(r.log.latestOffset()).toBe(m.recs.at(-1)?.offset ?? r.log.earliestOffset() - 1)
    checkSame(await dump(r.log), m, 'after reopen')
    // A log whose tail was truncated (or compacted) may end below `next`; offsets continue
    // from the last record after a reopen, as documented.
    m.next = r.log.latestOffset() + 1
  }
  toString = () => 'reopen'
}

const commands = [
  fc.array(recArb, { minLength: 1, maxLength: 6 }).map((x) => new Append(x)),
  fc.array(recArb, { minLength: 1, maxLength: 6 }).map((x) => new Append(x)),
  fc.tuple(fc.integer({ min: 0, max: 3 }), fc.string({ maxLength: 8 })).map(([g, v]) => new AppendAt(g, v)),
  fc
    .tuple(fc.integer({ min: 0, max: 80 }), fc.integer({ min: 1, max: 400 }))
    .map(([f, mb]) => new Read(f, mb)),
  fc.integer({ min: 0, max: 55 }).map((t) => new ForTime(t)),
  fc.integer({ min: 0, max: 12 }).map((k) => new Truncate(k)),
  fc.constant(new Retention()),
  fc.constant(new Compact()),
  fc.constant(new Reopen()),
  fc
    .array(fc.array(recArb, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 4 })
    .map((x) => new AppendsDuringCompaction(x)),
]

describe(`commit log model test (seed ${seed}; rerun with LOG_TEST_SEED=${seed})`, () => {
  it('matches an in-memory model under random operations', async () => {
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.commands(commands, { maxCommands: 40 }),
          fc.integer({ min: 70, max: 400 }),
          fc.constantFrom<'never' | 'always'>('never', 'never', 'always'),
          fc.integer({ min: 8, max: 60 }),
          async (cmds, segmentBytes, fsync, maxMessages) => {
            const t = await tempDir('plexus-log-model-')
            const opts: LogOptions = {
              dir: t.dir,
              fsync,
              segmentBytes,
              indexIntervalBytes: 50,
              retention: { maxMessages },
              deleteRetentionMs: 1000,
              now: () => 100, // tombstones (timestamps <= 50) stay within deleteRetentionMs
            }
            const real: Real = { log: await openLog(opts), opts }
            try {
              await fc.asyncModelRun(() => ({ model: { recs: [], next: 0, term: 0 }, real }), cmds)
            } finally {
              await real.log.close().catch(() => {})
              await t.cleanup()
            }
          },
        ),
        { seed, numRuns: Number(process.env.LOG_TEST_RUNS ?? 60) },
      )
    } catch (err) {
      throw new Error(`model test failed with LOG_TEST_SEED=${seed}: ${(err as Error).message}`, {
        cause: err,
      })
    }
  })
})
