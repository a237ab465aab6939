/** The log: MemoryStorage writes, the stable/unstable split, size limits and conflict search. */
import { describe, expect, it } from 'vitest'
import { CompactedError, type Entry, MemoryStorage, RaftInvariantError } from '../../src/raft/index.js'
import { RaftLog } from '../../src/raft/log.js'

const ent = (index: number, term: number, size = 0): Entry => ({
  index,
  term,
  type: 'normal',
  data: new Uint8Array(size),
})

describe('MemoryStorage', () => {
  it('appends, replaces a conflicting tail, and compacts', () => {
    const st = new MemoryStorage({ voters: ['a'] })
    st.append([ent(1, 1), ent(2, 1), ent(3, 1)])
    st.append([ent(2, 2)])
    expect(st.lastIndex()).toBe(2)
    expect(st.term(2)).toBe(2)
    expect(() => st.append([ent(5, 2)])).toThrow(RaftInvariantError) // gap
    st.compact(1, { voters: ['a'] }, new Uint8Array())
    expect(st.firstIndex()).toBe(2)
    expect(st.term(1)).toBe(1) // the compaction point keeps its term
    expect(() => st.term(0)).toThrow(CompactedError)
    expect(() => st.entries(1, 2, 100)).toThrow(CompactedError)
  })
})

describe('RaftLog', () => {
  function log(): { st: MemoryStorage; l: RaftLog } {
    const st = new MemoryStorage({ voters: ['a'] })
    st.append([ent(1, 1, 10), ent(2, 1, 10), ent(3, 2, 10)])
    const l = new RaftLog(st, 0, 0)
    l.append([ent(4, 2, 10), ent(5, 3, 10)])
    return { st, l }
  }

  it('reads across the stable/unstable boundary with a byte budget', () => {
    const { l } = log()
    expect(l.lastIndex()).toBe(5)
    expect(l.slice(2, 6, Number.POSITIVE_INFINITY).map((e) => e.index)).toEqual([2, 3, 4, 5])
    expect(l.slice(2, 6, 2 * 34).map((e) => e.index)).toEqual([2, 3]) // 34 bytes per entry
    expect(l.slice(2, 6, 1).map((e) => e.index)).toEqual([2]) // always at least one
    expect(l.term(6)).toBeUndefined()
  })

  it('truncates a conflicting tail, in storage or in memory', () => {
    const { l } = log()
    expect(l.maybeAppend(2, 1, 0, [ent(3, 4), ent(4, 4)])).toBe(4)
    expect(l.lastIndex()).toBe(4)
    expect(l.unstableEntries().map((e) => `${e.index}@${e.term}`)).toEqual(['3@4', '4@4'])
    expect(l.maybeAppend(4, 9, 0, [])).toBeUndefined() // term mismatch: reject
  })

  it('never rewrites committed entries', () => {
    const { l } = log()
    l.commitTo(3)
    expect(() => l.append([ent(3, 5)])).toThrow(RaftInvariantError)
    expect(() => l.commitTo(9)).toThrow(RaftInvariantError)
  })

  it('finds the last index whose term is at most a given term', () => {
    const { l } = log()
    expect(l.findConflictByTerm(5, 2)).toEqual({ index: 4, term: 2 })
    expect(l.findConflictByTerm(5, 1)).toEqual({ index: 2, term: 1 })
    expect(l.findConflictByTerm(5, 0)).toEqual({ index: 0, term: 0 })
  })

  it('marks entries stable only if they are still the same entries', () => {
    const { l } = log()
    l.stableTo(5, 2) // wrong term: ignored
    expect(l.unstableEntries().length).toBe(2)
    l.stableTo(4, 2)
    expect(l.unstableEntries().map((e) => e.index)).toEqual([5])
  })

  it('hands out committed entries once, in order', () => {
    const { l } = log()
    l.commitTo(4)
    expect(l.nextCommittedEnts(Number.POSITIVE_INFINITY).map((e) => e.index)).toEqual([1, 2, 3, 4])
    expect(l.hasNextCommittedEnts()).toBe(false)
    l.appliedTo(4)
    expect(l.applied).toBe(4)
  })
})
