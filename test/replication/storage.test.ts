import { appendFile, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import {
  CompactedError,
  EntriesUnavailableError,
  type Entry,
  encodeConfChange,
} from '../../src/raft/index.js'
import { CorruptReplicaStateError, RaftLogStorage } from '../../src/replication/index.js'
import { frameState, StateKind, unframeState, writeStateFile } from '../../src/replication/statefile.js'
import { b, s, tempDir } from './helpers.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})

async function dir(): Promise<string> {
  const t = await tempDir('plexus-rstore-')
  cleanups.push(t.cleanup)
  return t.dir
}

function ents(from: number, to: number, term: number, tag = 'e'): Entry[] {
  const out: Entry[] = []
  for (let i = from; i <= to; i++) out.push({ index: i, term, type: 'normal', data: b(`${tag}${i}`) })
  return out
}

const view = (st: RaftLogStorage) => ({
  init: st.initialState(),
  first: st.firstIndex(),
  last: st.lastIndex(),
  ents: st.lastIndex() >= st.firstIndex() ? st.entries(st.firstIndex(), st.lastIndex() + 1, Infinity) : [],
  snap: st.snapshot(),
})

describe('RaftLogStorage', () => {
  it('starts empty with the bootstrap configuration, persisted', async () => {
    const d = await dir()
    const st = await RaftLogStorage.open({ dir: d, voters: ['a', 'b', 'c'] })
    expect(st.firstIndex()).toBe(1)
    expect(st.lastIndex()).toBe(0)
    expect(st.term(0)).toBe(0)
    expect(st.initialState()).toEqual({
      hardState: { term: 0, vote: null, commit: 0 },
      confState: { voters: ['a', 'b', 'c'] },
    })
    await st.close()
    const again = await RaftLogStorage.open({ dir: d, voters: ['x'] }) // bootstrap ignored now
    expect(again.initialState().confState.voters).toEqual(['a', 'b', 'c'])
    await again.close()
  })

  it('reopen round-trips hard state, conf state and entries exactly', async () => {
    const d = await dir()
    const st = await RaftLogStorage.open({ dir: d, voters: ['a', 'b', 'c'] })
    const cc: Entry = {
      index: 4,
      term: 2,
      type: 'confChange',
      data: encodeConfChange({ type: 'addNode', nodeId: 'd' }),
    }
    const all = [
      ...ents(1, 3, 1),
      cc,
      ...ents(5, 40, 2),
      { index: 41, term: 3, type: 'normal' as const, data: new Uint8Array(0) },
    ]
    await st.append(all.slice(0, 10))
    await st.append(all.slice(10))
    await st.setHardState({ term: 3, vote: 'b', commit: 39 })
    await st.setConfState({ voters: ['a', 'b', 'c', 'd'] }, 4)
    const before = view(st)
    expect(before.ents).toEqual(all)
    await st.close()
    const re = await RaftLogStorage.open({ dir: d })
    expect(view(re)).toEqual(before)
    expect(re.confState()).toEqual({ index: 4, voters: ['a', 'b', 'c', 'd'] })
    expect(re.term(4)).toBe(2)
    expect(re.entries(5, 41, 30).length).toBe(1) // byte budget, at least one
    await re.close()
  })

  it('one Ready = one log append (group commit path)', async () => {
    const st = await RaftLogStorage.open({ dir: await dir(), voters: ['a'] })
    const before = st.logStats().appends
    await st.append(ents(1, 200, 1))
    expect(st.logStats().appends - before).toBe(1)
    await st.close()
  })

  it('truncates a divergent tail through truncateAfter, durably', async () => {
    const d = await dir()
    const st = await RaftLogStorage.open({ dir: d, voters: ['a'] })
    await st.append(ents(1, 10, 1))
    await st.append(ents(6, 8, 2, 'new'))
    expect(st.lastIndex()).toBe(8)
    expect(st.term(5)).toBe(1)
    expect(st.term(6)).toBe(2)
    await st.append(ents(9, 9, 2, 'new'))
    const v = view(st)
    await st.close()
    const re = await RaftLogStorage.open({ dir: d })
    expect(view(re)).toEqual(v)
    expect(s(re.entries(9, 10, 1e9)[0]!.data)).toBe('new9')
    await re.close()
  })

  it('refuses gaps and appends below the snapshot', async () => {
    const st = await RaftLogStorage.open({ dir: await dir(), voters: ['a'] })
    await st.append(ents(1, 3, 1))
    await expect(st.append(ents(5, 6, 1))).rejects.toThrow(/gap/)
    await st.compact(2, { voters: ['a'] })
    await expect(st.append(ents(2, 3, 1))).rejects.toThrow(/snapshot/)
    await st.close()
  })

  it('writes term/vote changes at once, commit-only changes on flush', async () => {
    const d = await dir()
    const st = await RaftLogStorage.open({ dir: d, voters: ['a'] })
    await st.append(ents(1, 5, 1))
    await st.setHardState({ term: 1, vote: 'a', commit: 0 })
    await st.setHardState({ term: 1, vote: 'a', commit: 3 })
    expect(st.initialState().hardState.commit).toBe(3)
    await st.close()
    let re = await RaftLogStorage.open({ dir: d })
    expect(re.initialState().hardState).toEqual({ term: 1, vote: 'a', commit: 0 })
    await re.setHardState({ term: 1, vote: 'a', commit: 5 })
    await re.flushHardState()
    await re.close()
    re = await RaftLogStorage.open({ dir: d })
    expect(re.initialState().hardState).toEqual({ term: 1, vote: 'a', commit: 5 })
    await re.close()
  })

  it('clamps a commit index beyond the persisted entries', async () => {
    const d = await dir()
    const st = await RaftLogStorage.open({ dir: d, voters: ['a'] })
    await st.append(ents(1, 2, 1))
    await st.setHardState({ term: 1, vote: 'a', commit: 9 }) // entries 3..9 never became durable
    await st.close()
    const re = await RaftLogStorage.open({ dir: d })
    expect(re.initialState().hardState.commit).toBe(2)
    await re.close()
  })

  it('reopens with the commit index at the applied index when the file lags it (issue 19)', async () => {
    const d = await dir()
    const st = await RaftLogStorage.open({ dir: d, voters: ['a'], memoryBytes: 1 })
    await st.append(ents(1, 40, 1))
    await st.setHardState({ term: 1, vote: 'a', commit: 2 }) // written: the term changed
    await st.setHardState({ term: 1, vote: 'a', commit: 40 }) // commit-only: memory only
    await st.close() // a crash: the file says commit 2
    // The state machine applied up to 30; entries after it stay in memory, 31..40 are served.
    const re = await RaftLogStorage.open({ dir: d, memoryBytes: 1, applied: 30 })
    expect(re.initialState().hardState.commit).toBe(30)
    expect(re.memory()).toMatchObject({ first: 31, entries: 10 })
    expect(re.entries(31, 41, Infinity).map((e) => e.index)).toEqual(ents(31, 40, 1).map((e) => e.index))
    await re.close()
    // A state machine ahead of the raft log (its tail was lost): commit stops at the last entry,
    // and entries appended after it stay in memory until released.
    const ahead = await RaftLogStorage.open({ dir: d, memoryBytes: 1, applied: 45 })
    expect(ahead.initialState().hardState.commit).toBe(40)
    await ahead.append(ents(41, 45, 1))
    expect(ahead.entries(41, 46, Infinity).map((e) => e.index)).toEqual([41, 42, 43, 44, 45])
    await ahead.close()
  })

  it('rejects corrupt state files with a clear error and changes nothing', async () => {
    const d = await dir()
    const st = await RaftLogStorage.open({ dir: d, voters: ['a'] })
    await st.setHardState({ term: 4, vote: 'a', commit: 0 })
    await st.close()
    const file = join(d, 'hardstate')
    const good = await readFile(file)
    const flipped = Buffer.from(good)
    flipped[flipped.length - 3]! ^= 0x40
    await writeFile(file, flipped)
    await expect(RaftLogStorage.open({ dir: d })).rejects.toThrow(CorruptReplicaStateError)
    await expect(RaftLogStorage.open({ dir: d })).rejects.toThrow(/hardstate.*checksum/)
    expect(Buffer.compare(await readFile(file), flipped)).toBe(0)
    await writeFile(file, good.subarray(0, 9))
    await expect(RaftLogStorage.open({ dir: d })).rejects.toThrow(/shorter than/)
    await writeFile(join(d, 'confstate'), frameState(StateKind.hardState, new Uint8Array(3)))
    await writeFile(file, good)
    await expect(RaftLogStorage.open({ dir: d })).rejects.toThrow(/confstate.*kind/)
    // a well-framed payload that does not decode
    await writeFile(join(d, 'confstate'), frameState(StateKind.confState, new Uint8Array(3)))
    await expect(RaftLogStorage.open({ dir: d })).rejects.toThrow(/does not decode/)
  })

  it('state file framing round-trips and ignores a leftover temp file', async () => {
    const d = await dir()
    const payload = b('hello')
    expect(s(unframeState('x', StateKind.snapshot, frameState(StateKind.snapshot, payload)))).toBe('hello')
    const st = await RaftLogStorage.open({ dir: d, voters: ['a'] })
    await st.setHardState({ term: 2, vote: null, commit: 0 })
    await st.close()
    await writeFile(join(d, 'hardstate.tmp'), b('half-written'))
    const re = await RaftLogStorage.open({ dir: d })
    expect(re.initialState().hardState.term).toBe(2)
    expect((await readdir(d)).includes('hardstate.tmp')).toBe(false)
    await re.close()
  })

  it('repairs a torn tail of the raft log on open', async () => {
    const d = await dir()
    const st = await RaftLogStorage.open({ dir: d, voters: ['a'] })
    await st.append(ents(1, 20, 1))
    await st.close()
    const seg = join(d, 'log', (await readdir(join(d, 'log'))).find((f) => f.endsWith('.log'))!)
    const size = (await stat(seg)).size
    await truncate(seg, size - 5) // cut into the last record
    await appendFile(seg, Buffer.from([1, 2, 3])) // and some garbage
    const re = await RaftLogStorage.open({ dir: d })
    expect(re.recovery.truncated.length).toBe(1)
    expect(re.lastIndex()).toBe(19)
    expect(re.entries(1, 20, Infinity)).toEqual(ents(1, 19, 1))
    await re.append(ents(20, 21, 2))
    await re.close()
  })

  it('compaction moves firstIndex and persists the snapshot metadata', async () => {
    const d = await dir()
    const st = await RaftLogStorage.open({ dir: d, voters: ['a', 'b'] })
    await st.append([...ents(1, 5, 1), ...ents(6, 10, 2)])
    await st.compact(7, { voters: ['a', 'b'] }, b('state'))
    expect(st.firstIndex()).toBe(8)
    expect(st.term(7)).toBe(2)
    expect(() => st.term(6)).toThrow(CompactedError)
    expect(() => st.entries(7, 9, 1e9)).toThrow(CompactedError)
    const v = view(st)
    await st.close()
    const re = await RaftLogStorage.open({ dir: d })
    expect(view(re)).toEqual(v)
    expect(s(re.snapshot().data)).toBe('state')
    expect(re.snapshot()).toMatchObject({ index: 7, term: 2, confState: { voters: ['a', 'b'] } })
    await re.close()
  })

  it('installs a received snapshot: the log restarts after it', async () => {
    const d = await dir()
    const st = await RaftLogStorage.open({ dir: d, voters: ['a', 'b', 'c'] })
    await st.append([...ents(1, 3, 1), ...ents(4, 6, 2, 'old')]) // 4..6 divergent
    const snap = { index: 50, term: 5, confState: { voters: ['a', 'b', 'c', 'd'] }, data: new Uint8Array(0) }
    await st.applySnapshot(snap)
    expect([st.firstIndex(), st.lastIndex(), st.term(50)]).toEqual([51, 50, 5])
    expect(st.initialState().confState.voters).toEqual(['a', 'b', 'c', 'd'])
    expect(st.initialState().hardState.commit).toBe(50)
    await st.append(ents(51, 55, 5))
    const v = view(st)
    await st.close()
    const re = await RaftLogStorage.open({ dir: d })
    expect(view(re)).toEqual({ ...v, init: { ...v.init, hardState: { ...v.init.hardState, commit: 50 } } })
    await re.close()
  })

  it('finishes an install interrupted between the snapshot file and the log cut', async () => {
    const d = await dir()
    const st = await RaftLogStorage.open({ dir: d, voters: ['a'] })
    await st.append([...ents(1, 3, 1), ...ents(4, 9, 2, 'old')])
    await st.close()
    // As if a crash hit right after the snapshot file was written: index 5 has term 3 there.
    const snap = new Uint8Array([...u64(5), ...u64(3), 0, 0, 0, 7, 0, 0, 0, 1, 0, 1, 97, 0, 0, 0, 0])
    await writeStateFile(join(d, 'snapshot'), StateKind.snapshot, snap)
    const re = await RaftLogStorage.open({ dir: d })
    expect([re.firstIndex(), re.lastIndex(), re.term(5)]).toEqual([6, 5, 3])
    await re.append(ents(6, 7, 3))
    await re.close()
    const again = await RaftLogStorage.open({ dir: d })
    expect(again.entries(6, 8, Infinity)).toEqual(ents(6, 7, 3))
    await again.close()
  })
})

function u64(n: number): number[] {
  const out = new Array<number>(8).fill(0)
  for (let i = 7; i >= 0 && n > 0; i--) {
    out[i] = n % 256
    n = Math.floor(n / 256)
  }
  return out
}

describe('RaftLogStorage memory window', () => {
  it('keeps applied entries within memoryBytes and reads older ones back from disk', async () => {
    const d = await dir()
    const st = await RaftLogStorage.open({ dir: d, voters: ['a'], memoryBytes: 1 })
    cleanups.push(() => st.close())
    await st.append(ents(1, 30, 1))
    await st.append(ents(31, 50, 2))
    expect(st.memory().entries).toBe(50) // nothing applied yet: everything stays
    st.release(40)
    expect(st.memory()).toMatchObject({ entries: 10, first: 41 })
    // terms of every entry stay known
    expect(st.term(1)).toBe(1)
    expect(st.term(30)).toBe(1)
    expect(st.term(31)).toBe(2)
    expect(st.term(50)).toBe(2)
    expect(st.entries(41, 51, Infinity).map((e) => s(e.data))).toEqual(ents(41, 50, 2).map((e) => s(e.data)))
    let loaded = 0
    st.onLoaded = () => loaded++
    expect(() => st.entries(5, 51, Infinity)).toThrow(EntriesUnavailableError)
    await until(() => loaded === 1)
    const back = st.entries(5, 51, Infinity) // a prefix: the window read back from disk
    expect(back.length).toBeGreaterThan(0)
    expect(back.length).toBeLessThanOrEqual(36)
    expect(back.map((e) => [e.index, e.term, s(e.data)])).toEqual(
      [...ents(5, 30, 1), ...ents(31, 40, 2)].slice(0, back.length).map((e) => [e.index, e.term, s(e.data)]),
    )
    expect(st.windowLoads).toBe(1)
    // a byte limit still applies to the window
    expect(st.entries(5, 51, 1).length).toBe(1)
  })

  it('truncation, compaction and reopen keep terms and the window consistent', async () => {
    const d = await dir()
    const st = await RaftLogStorage.open({ dir: d, voters: ['a'], memoryBytes: 1 })
    await st.append(ents(1, 20, 1))
    st.release(10)
    await st.append(ents(15, 25, 3, 'x')) // divergent tail replaced from 15
    expect(st.lastIndex()).toBe(25)
    expect(st.term(14)).toBe(1)
    expect(st.term(15)).toBe(3)
    expect(s(st.entries(15, 16, Infinity)[0]!.data)).toBe('x15')
    await st.compact(5, { voters: ['a'] })
    expect(st.firstIndex()).toBe(6)
    expect(st.term(5)).toBe(1)
    expect(st.term(6)).toBe(1)
    expect(() => st.entries(4, 6, Infinity)).toThrow(CompactedError)
    await st.close()
    // reopened with applied 12: entries after it are in memory at once, older ones on demand
    const re = await RaftLogStorage.open({ dir: d, memoryBytes: 1, applied: 12 })
    cleanups.push(() => re.close())
    expect(re.memory()).toMatchObject({ first: 13, entries: 13 })
    expect(re.entries(13, 26, Infinity).map((e) => s(e.data))).toEqual([
      'e13',
      'e14',
      ...ents(15, 25, 3, 'x').map((e) => s(e.data)),
    ])
    expect(re.term(7)).toBe(1)
    expect(() => re.entries(6, 26, Infinity)).toThrow(EntriesUnavailableError)
  })
})

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 5))
  }
}
