/**
 * Scripted scenarios for the Raft core: election, pre-vote, check-quorum, replication with
 * batching and pipelining, the commit rule (Figure 8 of the Raft paper), truncation of a
 * divergent tail, catch-up from far behind, membership changes and leader transfer. Each
 * runs on the simulated network (no faults unless scripted), whose invariant checker runs
 * after every event.
 */
import { describe, expect, it } from 'vitest'
import { MemoryStorage, type Message, message, ProposalDroppedError, RawNode } from '../../src/raft/index.js'
import { Sim, type SimOptions } from './sim.js'

const enc = (s: string) => new TextEncoder().encode(s)

function sim(ids: string[], opts: Partial<SimOptions> = {}): Sim {
  return new Sim({ ids, seed: 1, fifo: true, ...opts })
}

function elect(s: Sim, id: string): void {
  s.rn(id).campaign()
  s.stabilize()
  expect(s.rn(id).raft.role).toBe('leader')
}

/** Replaces `id`'s persisted log with entries of the given terms and restarts it. */
function preload(s: Sim, id: string, terms: number[], term: number): void {
  s.crash(id)
  const st = s.n(id).storage
  st.append(
    terms.map((t, i) => ({ index: i + 1, term: t, type: 'normal' as const, data: enc(`${i + 1}@${t}`) })),
  )
  st.setHardState({ term, vote: null, commit: 0 })
  s.restart(id)
}

function tickAll(s: Sim, n: number, ids = s.alive().map((x) => x.id)): void {
  for (let i = 0; i < n; i++) {
    for (const id of ids) if (s.n(id).alive) s.rn(id).tick()
    s.stabilize()
  }
}

const terms = (s: Sim, id: string): number[] => {
  const log = s.rn(id).raft.log
  return Array.from({ length: log.lastIndex() }, (_, i) => log.term(i + 1)!)
}

describe('election', () => {
  it('elects one leader that every member follows', () => {
    const s = sim(['a', 'b', 'c'])
    tickAll(s, 30)
    const l = s.leader()!
    for (const n of s.alive()) {
      expect(n.node().raft.leader).toBe(l.id)
      expect(n.node().raft.term).toBe(l.node().raft.term)
    }
    expect(s.leaders.size).toBe(1)
  })

  it('a restarted member keeps its vote: no second vote in the same term', () => {
    const s = sim(['a', 'b', 'c'], { preVote: false, checkQuorum: false })
    elect(s, 'a')
    expect(s.n('b').storage.hardState.vote).toBe('a')
    s.crash('b')
    s.restart('b')
    const rn = s.rn('b')
    rn.step({
      recovering: false,
      type: 'MsgVote',
      from: 'c',
      to: 'b',
      term: 1,
      logTerm: 1,
      index: 1,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
      transfer: false,
    })
    const rd = rn.ready()
    const resp = rd.messages.find((m) => m.type === 'MsgVoteResp')!
    expect(resp.reject).toBe(true)
  })

  it('a candidate with a stale log cannot win', () => {
    const s = sim(['a', 'b', 'c'], { preVote: false, checkQuorum: false })
    preload(s, 'a', [1], 1)
    preload(s, 'b', [1, 1], 1)
    preload(s, 'c', [1, 1], 1)
    s.rn('a').campaign()
    s.stabilize()
    expect(s.rn('a').raft.role).not.toBe('leader')
  })
})

describe('pre-vote and check-quorum', () => {
  it('a partitioned member that rejoins does not depose a healthy leader', () => {
    const s = sim(['a', 'b', 'c'])
    elect(s, 'a')
    const term = s.rn('a').raft.term
    s.isolate('c')
    tickAll(s, 100)
    expect(s.rn('c').raft.term).toBe(term) // pre-votes failed: term never raised
    expect(s.rn('a').raft.role).toBe('leader')
    s.heal()
    tickAll(s, 50)
    expect(s.rn('a').raft.role).toBe('leader')
    expect(s.rn('a').raft.term).toBe(term)
    expect(s.rn('c').raft.leader).toBe('a')
  })

  it('members in contact with a leader ignore vote requests (leader lease)', () => {
    const s = sim(['a', 'b', 'c'])
    elect(s, 'a')
    const rn = s.rn('b')
    rn.step({
      recovering: false,
      type: 'MsgVote',
      from: 'c',
      to: 'b',
      term: 9,
      logTerm: 9,
      index: 99,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
      transfer: false,
    })
    expect(rn.raft.term).toBe(1)
    expect(rn.raft.leader).toBe('a')
  })

  it('a leader that loses quorum contact steps down; the majority elects a new one', () => {
    const s = sim(['a', 'b', 'c'])
    elect(s, 'a')
    s.isolate('a')
    tickAll(s, 25)
    expect(s.rn('a').raft.role).toBe('follower')
    const l = s.leader()!
    expect(['b', 'c']).toContain(l.id)
    expect(l.node().raft.term).toBeGreaterThan(1)
  })
})

describe('replication', () => {
  it('batches entries up to maxSizePerMsg when a follower catches up', () => {
    const s = sim(['a', 'b', 'c'], { maxSizePerMsg: 300 })
    elect(s, 'a')
    s.isolate('c')
    for (let i = 0; i < 20; i++) s.propose('a', 'x'.repeat(100))
    s.stabilize()
    const sizes: number[] = []
    s.onDeliver = (m) => {
      if (m.type === 'MsgApp' && m.to === 'c' && m.entries.length > 0) sizes.push(m.entries.length)
    }
    s.heal()
    tickAll(s, 3)
    expect(Math.max(...sizes)).toBe(2) // 2 x (100 + 24) <= 300 < 3 x 124
    expect(s.rn('c').raft.log.committed).toBe(s.rn('a').raft.log.committed)
    expect(s.n('c').applied.filter((k) => k.startsWith('x')).length).toBe(20)
  })

  it('pipelines at most maxInflightMsgs unacknowledged appends per follower', () => {
    const s = sim(['a', 'b', 'c'], { maxSizePerMsg: 1, maxInflightMsgs: 3 })
    elect(s, 'a')
    const toB: Message[] = []
    for (let i = 0; i < 10; i++) s.propose('a', `p${i}`)
    const rd = s.rn('a').ready()
    for (const m of rd.messages) if (m.type === 'MsgApp' && m.to === 'b') toB.push(m)
    expect(toB.length).toBe(3)
    expect(s.rn('a').status().progress.b!.inflight).toBe(3)
    // Put the batch back through the normal path and let the window slide.
    s.n('a').storage.append(rd.entries)
    if (rd.hardState) s.n('a').storage.setHardState(rd.hardState)
    s.rn('a').advance(rd)
    for (const m of rd.messages) s.rn(m.to).step(m)
    s.stabilize()
    tickAll(s, 5)
    for (const id of ['a', 'b', 'c']) expect(s.n(id).applied.filter((k) => k.startsWith('p')).length).toBe(10)
  })

  it('commits only by a majority, and a single member commits alone', () => {
    const s = sim(['a', 'b', 'c'])
    elect(s, 'a')
    s.isolate('b')
    s.isolate('c')
    s.propose('a', 'lonely')
    s.stabilize()
    expect(s.n('a').applied).not.toContain('lonely')
    s.heal()
    tickAll(s, 2)
    expect(s.n('a').applied).toContain('lonely')

    const one = sim(['solo'])
    elect(one, 'solo')
    one.propose('solo', 'v')
    one.stabilize()
    expect(one.n('solo').applied).toContain('v')
  })
})

describe('commit rule (Raft §5.4.2, Figure 8)', () => {
  function figure8(): Sim {
    // s1 led term 2 and replicated index 2 to s2; s5 led term 3 and wrote its own index 2.
    const s = sim(['s1', 's2', 's3', 's4', 's5'], { preVote: false, checkQuorum: false, maxSizePerMsg: 1 })
    preload(s, 's1', [1, 2], 3)
    preload(s, 's2', [1, 2], 3)
    preload(s, 's3', [1], 3)
    preload(s, 's4', [1], 3)
    preload(s, 's5', [1, 3], 3)
    return s
  }

  it('an old-term entry on a majority is not committed and may be overwritten', () => {
    const s = figure8()
    s.isolate('s5')
    // s1 leads term 4 and copies index 2 (term 2) to s3 and s4, but its term-4 entry is lost
    // (appends that carry it are dropped unless the receiver would reject them anyway).
    s.filter = (m) =>
      !(
        m.type === 'MsgApp' &&
        m.entries.some((e) => e.term === 4) &&
        s.rn(m.to).raft.log.matchTerm(m.index, m.logTerm)
      )
    elect(s, 's1')
    tickAll(s, 3)
    expect(s.rn('s1').raft.term).toBe(4)
    for (const id of ['s2', 's3', 's4']) expect(terms(s, id)).toEqual([1, 2])
    expect(s.rn('s1').raft.log.committed).toBeLessThan(2) // on 4 of 5, still not committed
    // s1 crashes; s5 (last term 3) wins term 5 and overwrites index 2 everywhere.
    s.crash('s1')
    s.filter = null
    s.heal()
    s.rn('s5').campaign() // term 4: everyone already voted
    s.stabilize()
    s.rn('s5').campaign() // term 5
    s.stabilize()
    expect(s.rn('s5').raft.role).toBe('leader')
    for (const id of ['s2', 's3', 's4', 's5']) expect(terms(s, id)).toEqual([1, 3, 5])
    s.restart('s1')
    tickAll(s, 3)
    expect(terms(s, 's1')).toEqual([1, 3, 5])
  })

  it('an old-term entry is committed once an entry of the current term is', () => {
    const s = figure8()
    s.isolate('s5')
    elect(s, 's1')
    expect(s.rn('s1').raft.log.committed).toBe(3)
    s.heal()
    tickAll(s, 3)
    expect(terms(s, 's5')).toEqual([1, 2, 4]) // s5's uncommitted term-3 entry was truncated
    expect(s.n('s5').applied).toEqual(['1@1', '2@2', ''])
  })
})

describe('log repair', () => {
  it('truncates a divergent follower tail', () => {
    const s = sim(['a', 'b', 'c'], { preVote: false, checkQuorum: false })
    preload(s, 'a', [1, 1, 3, 3], 3)
    preload(s, 'b', [1, 1, 3], 3)
    preload(s, 'c', [1, 1, 2, 2, 2, 2], 3)
    elect(s, 'a')
    tickAll(s, 2)
    expect(terms(s, 'c')).toEqual([1, 1, 3, 3, 4])
    expect(s.n('c').storage.lastIndex()).toBe(5)
  })

  it('catches up a follower from far behind with few round trips', () => {
    const s = sim(['a', 'b', 'c'], { maxSizePerMsg: 64 * 1024, maxInflightMsgs: 4 })
    elect(s, 'a')
    s.crash('c')
    for (let i = 0; i < 500; i++) {
      s.propose('a', `e${i}`)
      if (i % 50 === 49) s.stabilize()
    }
    s.stabilize()
    let rejects = 0
    let apps = 0
    s.onDeliver = (m) => {
      if (m.type === 'MsgAppResp' && m.from === 'c' && m.reject) rejects++
      if (m.type === 'MsgApp' && m.to === 'c' && m.entries.length > 0) apps++
    }
    s.restart('c')
    tickAll(s, 3)
    expect(s.n('c').applied.length).toBe(s.n('a').applied.length)
    expect(rejects).toBeLessThanOrEqual(1)
    expect(apps).toBeLessThanOrEqual(3)
  })

  it('skips a whole divergent term per round trip (fast backtracking)', () => {
    const s = sim(['a', 'b', 'c'], { preVote: false, checkQuorum: false, maxSizePerMsg: 1 })
    const shared = Array(10).fill(1)
    preload(s, 'a', [...shared, ...Array(200).fill(3)], 3)
    preload(s, 'b', [...shared, ...Array(200).fill(3)], 3)
    preload(s, 'c', [...shared, ...Array(150).fill(2)], 3)
    let rejects = 0
    s.onDeliver = (m) => {
      if (m.type === 'MsgAppResp' && m.from === 'c' && m.reject) rejects++
    }
    elect(s, 'a')
    tickAll(s, 3)
    expect(terms(s, 'c')).toEqual(terms(s, 'a'))
    expect(rejects).toBe(1) // one hint jumps over all 150 term-2 entries
  })
})

describe('snapshots', () => {
  it('catches up a follower whose next entries were compacted away', () => {
    const s = sim(['a', 'b', 'c'])
    elect(s, 'a')
    s.crash('c')
    for (let i = 0; i < 100; i++) s.propose('a', `e${i}`)
    s.stabilize()
    s.compact('a')
    s.compact('b')
    expect(s.n('a').storage.firstIndex()).toBe(102)
    const types: string[] = []
    s.onDeliver = (m) => {
      if (m.to === 'c' || m.from === 'c') types.push(m.type)
    }
    s.restart('c')
    tickAll(s, 3)
    expect(types).toContain('MsgSnap')
    expect(s.n('c').storage.firstIndex()).toBe(102) // installed, log restarts after it
    expect(s.n('c').applied).toEqual(s.n('a').applied)
    s.propose('a', 'after')
    s.stabilize()
    expect(s.n('c').applied.at(-1)).toBe('after')
    expect(s.rn('a').status().progress.c!.state).toBe('replicate')
  })

  it('a snapshot replaces a divergent log; a lost one is sent again', () => {
    const s = sim(['a', 'b', 'c'], { preVote: false, checkQuorum: false, electionTick: 5 })
    preload(s, 'a', [1, 1, 3, 3, 3], 3)
    preload(s, 'b', [1, 1, 3, 3, 3], 3)
    preload(s, 'c', [1, 1, 2, 2, 2, 2, 2, 2], 3)
    s.isolate('c')
    elect(s, 'a')
    s.propose('a', 'x')
    s.stabilize()
    s.compact('a')
    let dropped = 0
    s.filter = (m) => !(m.type === 'MsgSnap' && dropped++ === 0) // lose the first snapshot
    s.heal()
    tickAll(s, 12, ['a', 'b'])
    expect(dropped).toBeGreaterThan(1)
    expect(terms(s, 'a').slice(s.n('c').storage.firstIndex() - 1)).toEqual(
      terms(s, 'c').slice(s.n('c').storage.firstIndex() - 1),
    )
    expect(s.n('c').applied).toEqual(s.n('a').applied)
    expect(s.rn('c').raft.log.lastIndex()).toBe(s.rn('a').raft.log.lastIndex())
  })

  it('a member holding an unpersisted snapshot can still tick and campaign', () => {
    const rn = new RawNode({
      id: 'c',
      storage: new MemoryStorage({ voters: ['a', 'b', 'c'] }),
      rand: () => 0,
    })
    const snapshot = { index: 50, term: 2, confState: { voters: ['a', 'b', 'c'] }, data: new Uint8Array() }
    rn.step(message({ type: 'MsgSnap', from: 'a', to: 'c', term: 2, snapshot }))
    expect(rn.status()).toMatchObject({ commit: 50, applied: 0, lastIndex: 50 })
    for (let i = 0; i < 25; i++) rn.tick()
    const rd = rn.ready()
    expect(rd.snapshot?.index).toBe(50)
    expect(rd.messages.some((m) => m.type === 'MsgPreVote' && m.index === 50 && m.logTerm === 2)).toBe(true)
    rn.advance(rd)
    expect(rn.status().applied).toBe(50)
  })
})

describe('membership', () => {
  it('adds a member, which catches up and becomes a voter', () => {
    const s = sim(['a', 'b', 'c'], { joiners: ['d'] })
    elect(s, 'a')
    s.propose('a', 'before')
    s.rn('a').proposeConfChange({ type: 'addNode', nodeId: 'd' })
    s.stabilize()
    tickAll(s, 2)
    for (const id of ['a', 'b', 'c', 'd'])
      expect(s.rn(id).raft.tracker.confState().voters).toEqual(['a', 'b', 'c', 'd'])
    expect(s.n('d').applied).toContain('before')
    expect(s.n('d').storage.confState.voters).toContain('d')
    // With four voters, losing the leader still leaves a quorum of three.
    s.crash('a')
    tickAll(s, 40)
    expect(s.leader()?.id).not.toBe('a')
    expect(s.leader()).toBeDefined()
  })

  it('allows one pending change at a time', () => {
    const s = sim(['a', 'b', 'c'], { joiners: ['d'] })
    elect(s, 'a')
    s.rn('a').proposeConfChange({ type: 'addNode', nodeId: 'd' })
    expect(() => s.rn('a').proposeConfChange({ type: 'removeNode', nodeId: 'c' })).toThrow(
      ProposalDroppedError,
    )
    s.stabilize()
    s.rn('a').proposeConfChange({ type: 'removeNode', nodeId: 'c' })
    s.stabilize()
    expect(s.rn('a').raft.tracker.confState().voters).toEqual(['a', 'b', 'd'])
  })

  it('a removed leader steps down and the rest elect a new one', () => {
    const s = sim(['a', 'b', 'c'])
    elect(s, 'a')
    s.rn('a').proposeConfChange({ type: 'removeNode', nodeId: 'a' })
    s.stabilize()
    expect(s.rn('a').raft.role).toBe('follower')
    tickAll(s, 40)
    const l = s.leader()!
    expect(['b', 'c']).toContain(l.id)
    expect(l.node().raft.tracker.confState().voters).toEqual(['b', 'c'])
    s.propose(l.id, 'after')
    s.stabilize()
    expect(s.n('b').applied).toContain('after')
  })

  it('refuses to remove the last voter, and ignores such an entry when applying it', () => {
    const s = sim(['a'])
    elect(s, 'a')
    expect(() => s.rn('a').proposeConfChange({ type: 'removeNode', nodeId: 'a' })).toThrow(/last voter/)
    const cc = s.rn('a').raft.applyConfChange({ type: 'removeNode', nodeId: 'a' })
    expect(cc.voters).toEqual(['a'])
    expect(s.rn('a').raft.role).toBe('leader')
  })
})

describe('leader transfer', () => {
  it('hands leadership to a caught-up member', () => {
    const s = sim(['a', 'b', 'c'])
    elect(s, 'a')
    s.rn('a').transferLeader('b')
    s.stabilize()
    expect(s.rn('b').raft.role).toBe('leader')
    expect(s.rn('a').raft.leader).toBe('b')
  })

  it('a transfer to the leader itself cancels a pending one; asking again does not extend it', () => {
    const s = sim(['a', 'b', 'c'], { electionTick: 10 })
    elect(s, 'a')
    s.isolate('b') // b cannot catch up: the transfer stays pending
    s.propose('a', 'x')
    s.stabilize()
    const a = s.rn('a')
    a.transferLeader('b')
    expect(a.raft.leadTransferee).toBe('b')
    expect(() => a.propose(enc('refused'))).toThrow(ProposalDroppedError)
    a.transferLeader('a')
    expect(a.raft.leadTransferee).toBeNull()
    a.propose(enc('accepted'))
    // Asked again halfway through: still abandoned one election timeout after the first ask.
    a.transferLeader('b')
    for (let i = 0; i < 5; i++) a.tick()
    a.transferLeader('b')
    for (let i = 0; i < 5; i++) a.tick()
    expect(a.raft.leadTransferee).toBeNull()
  })
})

describe('RawNode Ready loop', () => {
  it('hands out entries, hard state and committed entries once, then is idle', () => {
    const storage = new MemoryStorage({ voters: ['x'] })
    const rn = new RawNode({ id: 'x', storage, rand: () => 0.5 })
    rn.campaign()
    rn.propose(enc('hello'))
    expect(rn.hasReady()).toBe(true)
    const rd = rn.ready()
    expect(rd.softState).toEqual({ leader: 'x', role: 'leader' })
    expect(rd.hardState).toEqual({ term: 1, vote: 'x', commit: 2 })
    expect(rd.entries.map((e) => e.index)).toEqual([1, 2])
    expect(rd.committedEntries.map((e) => e.index)).toEqual([1, 2])
    expect(rd.mustSync).toBe(true)
    storage.append(rd.entries)
    storage.setHardState(rd.hardState!)
    rn.advance(rd)
    expect(rn.hasReady()).toBe(false)
    expect(rn.status()).toMatchObject({ commit: 2, applied: 2, lastIndex: 2, role: 'leader' })
    // Restart: committed entries after `applied` are delivered again.
    const again = new RawNode({ id: 'x', storage, applied: 1, rand: () => 0.5 })
    expect(again.ready().committedEntries.map((e) => e.index)).toEqual([2])
  })

  it('proposes a batch as consecutive entries in one append per follower', () => {
    const s = sim(['a', 'b', 'c'])
    elect(s, 'a')
    const apps: number[] = []
    s.onDeliver = (m) => {
      if (m.type === 'MsgApp' && m.to === 'b' && m.entries.length > 0) apps.push(m.entries.length)
    }
    const at = s.rn('a').proposeBatch(['x', 'y', 'z'].map(enc))
    expect(at).toEqual({ index: 2, term: 1 })
    s.stabilize()
    expect(apps).toEqual([3])
    expect(s.n('c').applied.slice(-3)).toEqual(['x', 'y', 'z'])
    expect(s.rn('b').proposeBatch(['w'].map(enc))).toBeNull() // forwarded to the leader
    s.stabilize()
    expect(s.n('a').applied.at(-1)).toBe('w')
  })

  it('rejects proposals without a leader', () => {
    const rn = new RawNode({ id: 'x', storage: new MemoryStorage({ voters: ['x', 'y'] }), rand: () => 0 })
    expect(() => rn.propose(enc('x'))).toThrow(ProposalDroppedError)
  })
})

describe('a recovering (rebuilt) member', () => {
  const ent = (index: number, term: number) => ({
    index,
    term,
    type: 'normal' as const,
    data: enc(`e${index}`),
  })
  const storage = new MemoryStorage({ voters: ['a', 'b', 'c'] })
  const drain = (rn: RawNode): Message[] => {
    const out: Message[] = []
    while (rn.hasReady()) {
      const rd = rn.ready()
      storage.append(rd.entries)
      if (rd.hardState) storage.setHardState(rd.hardState)
      out.push(...rd.messages)
      rn.advance(rd)
    }
    return out
  }

  it('neither campaigns nor votes until a leader has caught its log up to its commit', () => {
    const rn = new RawNode({
      id: 'c',
      storage,
      rand: () => 0,
      checkQuorum: false, // the vote at the end is not ignored as within a leader's lease
      recovering: true,
    })
    for (let i = 0; i < 50; i++) rn.tick()
    expect(drain(rn).filter((m) => m.type === 'MsgPreVote' || m.type === 'MsgVote')).toEqual([])
    rn.step(message({ type: 'MsgVote', from: 'b', to: 'c', term: 3, index: 9, logTerm: 3 }))
    expect(drain(rn).find((m) => m.type === 'MsgVoteResp')?.reject).toBe(true)
    // A leader's append that leaves us short of its commit (3 of 5): still recovering.
    rn.step(
      message({
        type: 'MsgApp',
        from: 'a',
        to: 'c',
        term: 3,
        index: 0,
        logTerm: 0,
        commit: 5,
        entries: [1, 2, 3].map((i) => ent(i, 3)),
      }),
    )
    drain(rn)
    expect(rn.status().recovering).toBe(true)
    rn.step(
      message({
        type: 'MsgApp',
        from: 'a',
        to: 'c',
        term: 3,
        index: 3,
        logTerm: 3,
        commit: 5,
        entries: [4, 5].map((i) => ent(i, 3)),
      }),
    )
    drain(rn)
    expect(rn.status()).toMatchObject({ recovering: false, commit: 5 })
    // Caught up: a later election counts on it again.
    rn.step(message({ type: 'MsgVote', from: 'b', to: 'c', term: 4, index: 5, logTerm: 3 }))
    expect(drain(rn).find((m) => m.type === 'MsgVoteResp')?.reject).toBe(false)
  })
})
