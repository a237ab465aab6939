/**
 * Unit tests of the fault runner's pure parts: seeded schedules, the power-loss journal
 * replay, and the check of the members' dumps.
 */
import { describe, expect, it } from 'vitest'
import { checkDumps } from '../../faults/check.js'
import type { ReplicaDump } from '../../faults/cluster.js'
import { durableState } from '../../faults/powerloss.js'
import { DEFAULTS_FIRST_FAULT_BYTES, generateSchedule } from '../../faults/schedule.js'
import type { Acked } from '../../faults/workload.js'

describe('generateSchedule', () => {
  it('is a pure function of the seed and options', () => {
    for (let seed = 0; seed < 50; seed++) expect(generateSchedule(seed)).toEqual(generateSchedule(seed))
    expect(generateSchedule(1)).not.toEqual(generateSchedule(2))
  })

  it('orders faults by bytes, within the total, one kind from the allowed set', () => {
    for (let seed = 0; seed < 500; seed++) {
      const s = generateSchedule(seed, { kinds: ['kill', 'pause'], size: '16k' })
      expect(s.messageBytes).toBe(16 * 1024)
      expect(s.faults.length).toBeGreaterThan(0)
      for (const [k, f] of s.faults.entries()) {
        expect(['kill', 'pause']).toContain(f.kind)
        expect(f.atBytes).toBeLessThan(s.totalBytes)
        if (k > 0) expect(f.atBytes).toBeGreaterThan(s.faults[k - 1]!.atBytes)
      }
    }
  })

  it('defaults schedules write past 56 MiB before the first fault, with the default raft window', () => {
    let seen = 0
    for (let seed = 0; seed < 200; seed++) {
      const s = generateSchedule(seed, { size: 'mixed' })
      if (s.profile !== 'defaults') continue
      seen++
      expect(s.raftLogBytes).toBeUndefined()
      expect(s.faults[0]!.atBytes).toBeGreaterThanOrEqual(DEFAULTS_FIRST_FAULT_BYTES)
      expect(DEFAULTS_FIRST_FAULT_BYTES).toBeGreaterThan(56 * 1024 * 1024)
    }
    expect(seen).toBeGreaterThan(10)
  })
})

describe('durableState (power-loss journal)', () => {
  it('keeps synced sizes, drops unsynced creations, follows renames and unlinks', () => {
    const j = [
      'O 100 /d/old', // existing: 100 bytes durable
      'C /d/new', // created, never synced: removed
      'C /d/log',
      'W 4096 /d/log', // O_DSYNC writes
      'W 8192 /d/log',
      'W 2048 /d/log', // an earlier range again: the durable end stays
      'C /d/f.tmp',
      'S 10 /d/f.tmp',
      'R /d/f.tmp /d/f',
      'O 50 /d/gone',
      'U /d/gone',
      'O 70 /d/cut',
      'T 20 /d/cut',
      'O 5 /d/old', // a later open does not move the baseline
      '',
    ].join('\n')
    const s = durableState(j)
    expect(s.get('/d/old')).toEqual({ durable: 100, created: false })
    expect(s.get('/d/new')).toEqual({ durable: undefined, created: true })
    expect(s.get('/d/log')!.durable).toBe(8192)
    expect(s.get('/d/f')).toEqual({ durable: 10, created: true })
    expect(s.has('/d/f.tmp')).toBe(false)
    expect(s.has('/d/gone')).toBe(false)
    expect(s.get('/d/cut')!.durable).toBe(20)
  })
})

describe('checkDumps', () => {
  const acked: Acked[] = [0, 1, 2].map((i) => ({ msgId: `s-${i}`, offset: i, length: 10, digest: `d${i}` }))
  const rec = (i: number, id = `s-${i}`) => ({ offset: i, msgId: id, length: 10, digest: `d${i}` })
  const dump = (records: ReplicaDump['records'], unreadable: number[] = []): ReplicaDump => ({
    records,
    unreadable,
    nextOffset: Math.max(-1, ...records.map((r) => r.offset), ...unreadable) + 1,
  })

  it('passes identical complete replicas', () => {
    const d = dump([rec(0), rec(1), rec(2)])
    const r = checkDumps(acked, new Set(), [d, d, d])
    expect(r).toMatchObject({ lost: 0, unreadable: 0, duplicates: 0, gaps: 0, divergent: 0, strangers: 0 })
  })

  it('counts lost, unreadable, duplicate, stranger and divergent records', () => {
    const good = dump([rec(0), rec(1), rec(2)])
    const bad = dump([rec(0), { ...rec(2), offset: 1 }, rec(2), { ...rec(3, 'x'), digest: 'dx' }], [])
    const unread = dump([rec(0), rec(2)], [1])
    const r = checkDumps(acked, new Set(), [good, bad, unread])
    expect(r.lost).toBe(1) // s-1: other content at offset 1 on member 1
    expect(r.duplicates).toBe(1) // s-2 twice on member 1
    expect(r.strangers).toBe(1) // x never published
    expect(r.divergent).toBeGreaterThan(0)
    const r2 = checkDumps(acked, new Set(), [good, good, unread])
    expect(r2).toMatchObject({ lost: 0, unreadable: 1, gaps: 0 })
  })

  it('allows unknown-outcome publishes once, and reports gaps', () => {
    const d = dump([rec(0), rec(1), rec(2), { ...rec(3, 'u'), digest: 'du' }])
    expect(checkDumps(acked, new Set(['u']), [d, d, d])).toMatchObject({ strangers: 0, unknownStored: 1 })
    const gap = dump([rec(0), rec(2)])
    expect(checkDumps(acked, new Set(), [gap, gap, gap])).toMatchObject({ gaps: 3, lost: 1 })
  })
})
