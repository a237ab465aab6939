import { existsSync } from 'node:fs'
import { appendFile, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { AbortedError, InvalidArgumentError, OverloadedError } from '../../src/errors.js'
import { decodeMessage, encodeMessage, message } from '../../src/raft/index.js'
import {
  CorruptReplicaStateError,
  LeadershipLostError,
  NotLeaderError,
  ReplicaDriver,
  resetReplicaLog,
} from '../../src/replication/index.js'
import { b, leaderOf, makeCluster, proposeAll, Replica, s, until } from './helpers.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})

async function cluster(...args: Parameters<typeof makeCluster>) {
  const c = await makeCluster(...args)
  cleanups.push(c.cleanup)
  return c
}

const range = (from: number, n: number, tag = 'p') => Array.from({ length: n }, (_, i) => `${tag}${from + i}`)

describe('ReplicaDriver (3 members, in-memory transport, real disks)', () => {
  it('elects a leader and commits 1,000 proposals applied in the same order everywhere', async () => {
    const { reps } = await cluster()
    const leader = await leaderOf(reps)
    const payloads = range(0, 1000)
    const results = await proposeAll(leader, payloads, 100)
    // resolved in order, dense, one term
    for (let i = 1; i < results.length; i++) expect(results[i]!.index).toBe(results[i - 1]!.index + 1)
    await until(() => reps.every((r) => r.applied.length === 1000), 10_000, 'everyone applies')
    for (const r of reps) expect(r.payloads()).toEqual(payloads)
    for (const r of reps) expect(r.applied.map((e) => e.index)).toEqual(results.map((x) => x.index))
    const st = leader.driver.status()
    expect(st.stats.proposals).toBe(1000)
    expect(st.stats.batches).toBeLessThan(100) // concurrent proposals go out as one proposeBatch
    expect(leader.driver.storage!.logStats().appendsPerFsync).toBeGreaterThanOrEqual(1)
  })

  it('commits through 10% message loss', async () => {
    const { reps, net } = await cluster()
    const leader = await leaderOf(reps)
    net.dropRate = 0.1
    const payloads = range(0, 200)
    const results = await Promise.allSettled(payloads.map((p) => leader.driver.propose(b(p))))
    net.dropRate = 0
    const ok = results.flatMap((r, i) => (r.status === 'fulfilled' ? [payloads[i]!] : []))
    expect(ok.length).toBeGreaterThan(0)
    const l2 = await leaderOf(reps, 10_000)
    await proposeAll(l2, ['end'])
    await until(() => reps.every((r) => r.payloads().at(-1) === 'end'), 10_000, 'all applied')
    const ref = reps[0]!.payloads()
    for (const r of reps) expect(r.payloads()).toEqual(ref)
    for (const p of ok) expect(ref).toContain(p) // every acknowledged proposal is there
  })

  it('rejects proposals on a follower with the leader hint, and beyond maxPending', async () => {
    const { reps } = await cluster(3, { maxPending: 8 })
    const leader = await leaderOf(reps)
    const follower = reps.find((r) => r !== leader)!
    const err = await follower.driver.propose(b('x')).catch((e) => e)
    expect(err).toBeInstanceOf(NotLeaderError)
    expect(err.leader).toBe(leader.id)
    const ps = Array.from({ length: 10 }, (_, i) => leader.driver.propose(b(`o${i}`)).catch((e) => e))
    const out = await Promise.all(ps)
    expect(out.filter((o) => o instanceof OverloadedError).length).toBe(2)
    expect(out.filter((o) => !(o instanceof Error)).length).toBe(8)
    await expect(leader.driver.propose(new Uint8Array(0))).rejects.toThrow(/non-empty/)
  })

  it('a killed follower and then a killed leader restart from disk; nothing committed is lost', async () => {
    const { reps, net } = await cluster()
    let leader = await leaderOf(reps)
    const committed: string[] = range(0, 200)
    await proposeAll(leader, committed)
    const follower = reps.find((r) => r !== leader)!
    await follower.kill()
    const more = range(200, 200)
    await proposeAll(leader, more) // a majority is still up
    committed.push(...more)
    await follower.start() // replays its disk, catches up from the leader
    await until(() => follower.applied.length === committed.length, 10_000, 'follower catch-up')
    expect(follower.payloads()).toEqual(committed)

    await leader.kill()
    const rest = reps.filter((r) => r !== leader)
    const next = await leaderOf(rest, 10_000)
    expect(next).not.toBe(leader)
    const after = range(400, 100)
    await proposeAll(next, after)
    committed.push(...after)
    await leader.start()
    leader = await leaderOf(reps, 10_000)
    await proposeAll(leader, ['final'])
    committed.push('final')
    await until(() => reps.every((r) => r.applied.length === committed.length), 10_000, 'all applied')
    for (const r of reps) expect(r.payloads()).toEqual(committed)
    expect(net.delivered).toBeGreaterThan(0)
  })

  it('restarting every member keeps all committed entries', async () => {
    const { reps } = await cluster()
    const leader = await leaderOf(reps)
    const committed = range(0, 300)
    await proposeAll(leader, committed)
    for (const r of reps) await r.kill()
    for (const r of reps) await r.start()
    const l2 = await leaderOf(reps, 10_000)
    await proposeAll(l2, ['after'])
    await until(() => reps.every((r) => r.applied.length === 301), 10_000, 'replay')
    for (const r of reps) expect(r.payloads()).toEqual([...committed, 'after'])
  })

  it("a partitioned old leader's uncommitted tail is truncated on rejoin", async () => {
    const { reps, net, ids } = await cluster()
    const old = await leaderOf(reps)
    await proposeAll(old, range(0, 50))
    net.isolate(old.id, ids)
    const doomed = Array.from({ length: 5 }, (_, i) => old.driver.propose(b(`lost${i}`)).catch((e) => e))
    const rest = reps.filter((r) => r !== old)
    const next = await leaderOf(rest, 10_000)
    const fresh = range(50, 20, 'q')
    const res = await proposeAll(next, fresh)
    // check-quorum makes the old leader step down; its proposals fail with an unknown outcome
    const outcomes = await Promise.all(doomed)
    for (const o of outcomes) expect(o).toBeInstanceOf(LeadershipLostError)
    const oldStore = old.driver.storage!
    const lostIndex = res[0]!.index
    expect(s(oldStore.entries(lostIndex, lostIndex + 1, 1e9)[0]!.data)).not.toBe('q50')
    net.heal()
    await until(() => old.applied.length === 70, 10_000, 'old leader catches up')
    expect(old.payloads()).toEqual([...range(0, 50), ...fresh])
    for (const r of reps) expect(r.payloads().some((p) => p.startsWith('lost'))).toBe(false)
    // on disk too: the divergent entries were replaced
    expect(s(oldStore.entries(lostIndex, lostIndex + 1, 1e9)[0]!.data)).toBe('q50')
    expect(oldStore.term(lostIndex)).toBe(res[0]!.term)
  })

  it('a torn tail in a follower raft log is repaired on open and the node rejoins', async () => {
    const { reps } = await cluster()
    const leader = await leaderOf(reps)
    await proposeAll(leader, range(0, 100))
    const f = reps.find((r) => r !== leader)!
    await until(() => f.applied.length === 100, 5000, 'follower applied')
    await f.kill()
    const logDir = join(f.dir, 'log')
    const seg = (await readdir(logDir))
      .filter((x) => x.endsWith('.log'))
      .sort()
      .at(-1)!
    await appendFile(join(logDir, seg), Buffer.from([0, 0, 0, 90, 1, 2, 3, 4, 5, 6, 7])) // a torn record
    await f.start()
    expect(f.driver.storage!.recovery.truncated.length).toBe(1)
    await proposeAll(leader, ['after-tear'])
    await until(() => f.applied.length === 101, 10_000, 'rejoined')
    expect(f.payloads()).toEqual([...range(0, 100), 'after-tear'])
  })

  it('drops malformed or spoofed inbound bytes, counts them, keeps working', async () => {
    const { reps } = await cluster()
    const leader = await leaderOf(reps)
    const f = reps.find((r) => r !== leader)!
    const good = encodeMessage(message({ type: 'MsgHeartbeat', from: leader.id, to: f.id, term: 1 }))
    f.driver.receive(leader.id, new Uint8Array([1, 2, 3]))
    f.driver.receive(leader.id, good.subarray(0, good.length - 1))
    f.driver.receive(leader.id, new Uint8Array(0))
    for (let i = 0; i < 50; i++)
      f.driver.receive(leader.id, crypto.getRandomValues(new Uint8Array(1 + i * 3)))
    f.driver.receive('intruder', good) // sender does not match the transport's peer
    f.driver.receive(
      leader.id,
      encodeMessage(
        message({
          type: 'MsgProp',
          from: leader.id,
          to: f.id,
          entries: [{ index: 0, term: 0, type: 'normal', data: b('injected') }],
        }),
      ),
    )
    const st = f.driver.status().stats
    expect(st.malformed).toBeGreaterThanOrEqual(50)
    expect(st.misrouted).toBe(2)
    expect(st.stepErrors).toBe(0)
    await proposeAll(leader, ['still-fine'])
    await until(() => f.applied.length === 1, 5000, 'follower applies')
  })

  it('catches up a wiped follower (new disk) by snapshot after compaction', async () => {
    const { reps, net, ids } = await cluster()
    const leader = await leaderOf(reps)
    await proposeAll(leader, range(0, 50))
    const f = reps.find((r) => r !== leader)!
    await f.kill()
    await proposeAll(leader, range(50, 50))
    await leader.driver.compact()
    expect(leader.driver.storage!.firstIndex()).toBeGreaterThan(50)
    await rm(f.dir, { recursive: true, force: true }) // a replacement disk: bootstrap config, empty log
    await f.start()
    await proposeAll(leader, ['tail'])
    await until(() => f.applied.some((e) => s(e.data) === 'tail'), 10_000, 'snapshot catch-up')
    expect(f.restored.length).toBeGreaterThan(0)
    expect(f.driver.storage!.firstIndex()).toBe(leader.driver.storage!.firstIndex())
    expect(net.delivered).toBeGreaterThan(0)
    expect(ids.length).toBe(3)
  })

  it('membership change: adds a fourth member that replays the log', async () => {
    const { reps, net, root, ids } = await cluster()
    const leader = await leaderOf(reps)
    await proposeAll(leader, range(0, 20))
    const d = new Replica('n4', join(root, 'n4'), net, ids)
    await d.start()
    cleanups.unshift(() => d.driver.stop())
    await leader.driver.proposeConfChange({ type: 'addNode', nodeId: 'n4' })
    await until(() => d.applied.length === 20, 10_000, 'n4 replays')
    expect(leader.driver.status().voters).toEqual(['n1', 'n2', 'n3', 'n4'])
    expect(d.driver.storage!.confState().voters).toEqual(['n1', 'n2', 'n3', 'n4'])
  })

  it('a throwing state machine stops the driver and reports it', async () => {
    const errors: unknown[] = []
    const { reps } = await cluster(3, {
      apply: (ents) => {
        if (ents.some((e) => e.data.length > 0 && new TextDecoder().decode(e.data) === 'boom'))
          throw new Error('sm')
      },
      onError: (e) => errors.push(e),
    })
    const leader = await leaderOf(reps)
    const boom = leader.driver.status().lastIndex
    await expect(leader.driver.propose(b('boom'))).rejects.toThrow('sm')
    // The leader and the follower whose ack committed the entry learn the commit and fail.
    // The third may not: on a loaded machine it can still be a probe target (sent nothing
    // until the next heartbeat) when the leader stops, and two stopped members cannot elect
    // the leader that would tell it. Every member that learned the commit reports.
    await until(() => errors.length >= 2, 5000, 'the leader and a follower report')
    const learned = () => reps.filter((r) => r.driver.status().commit > boom).length
    await until(() => errors.length === learned(), 5000, 'every member that learned the commit reports')
    expect(errors.every((e) => (e as Error).message === 'sm')).toBe(true)
    await expect(leader.driver.propose(b('x'))).rejects.toBeInstanceOf(AbortedError)
  })

  it('refuses to start over a corrupt hard state file', async () => {
    const { reps } = await cluster()
    await leaderOf(reps)
    const f = reps[0]!
    await f.kill()
    await writeFile(join(f.dir, 'hardstate'), b('garbage that is not a state file'))
    await expect(f.start()).rejects.toBeInstanceOf(CorruptReplicaStateError)
  })

  it('stop rejects pending proposals with AbortedError', async () => {
    const { reps, net, ids } = await cluster()
    const leader = await leaderOf(reps)
    net.isolate(leader.id, ids) // nothing can commit
    const p = leader.driver.propose(b('never')).catch((e) => e)
    await new Promise((r) => setTimeout(r, 20))
    await leader.driver.stop()
    expect(await p).toBeInstanceOf(AbortedError)
    await expect(leader.driver.propose(b('x'))).rejects.toBeInstanceOf(AbortedError)
  })
})

describe('ReplicaDriver.proposeWithPersist', () => {
  it('persisted resolves on the leader alone; committed waits for a quorum', async () => {
    const { reps, net, ids } = await cluster()
    const leader = await leaderOf(reps)
    const ok = leader.driver.proposeWithPersist(b('q0'))
    const p0 = await ok.persisted
    expect(await ok.committed).toEqual(p0)

    net.isolate(leader.id, ids)
    const { persisted, committed } = leader.driver.proposeWithPersist(b('q1'))
    let done = false
    committed.then(() => (done = true)).catch(() => {})
    const p1 = await persisted
    expect(p1).toEqual({ index: p0.index + 1, term: p0.term })
    expect(leader.driver.storage!.lastIndex()).toBeGreaterThanOrEqual(p1.index) // fsynced here
    await new Promise((r) => setTimeout(r, 40))
    expect(done).toBe(false)
    net.heal()
    expect(await committed).toEqual(p1)

    const follower = reps.find((r) => r !== leader)!
    const nl = follower.driver.proposeWithPersist(b('x'))
    await expect(nl.persisted).rejects.toBeInstanceOf(NotLeaderError)
    await expect(nl.committed).rejects.toBeInstanceOf(NotLeaderError)
  })
})

describe('ReplicaDriver commit-only appends', () => {
  /** Counts appends without entries (commit-only) the leader sends, and all appends. */
  function countAppends(net: { send(from: string, to: string, bytes: Uint8Array): void }) {
    const c = { empty: 0, withEntries: 0 }
    const send = net.send.bind(net)
    net.send = (from, to, bytes) => {
      const m = decodeMessage(bytes)
      if (m.type === 'MsgApp') m.entries.length === 0 ? c.empty++ : c.withEntries++
      send(from, to, bytes)
    }
    return c
  }

  it('a later append carries the commit; an idle leader sends it when the hold ends', async () => {
    // heartbeats (which carry the commit too) only every 2 s: they play no part here
    // commits held up to 1 s: "at once" below (within 500 ms) cannot be a held one
    const { reps, net } = await cluster(3, { commitDelayMs: 1000, electionTick: 200, heartbeatTick: 100 })
    reps[0]!.driver.campaign()
    const leader = await leaderOf(reps, 10_000)
    await proposeAll(leader, ['warm'])
    const c = countAppends(net)
    // overlapping proposals: commits happen while later entries are still in flight. Whether
    // a commit falls while an append is in flight depends on scheduling (a loaded machine may
    // finish each round trip before the next proposal): up to 5 rounds of 30.
    let last = ''
    const saved = () => leader.driver.status().stats.commitOnlySaved
    const saved0 = saved()
    for (let round = 0; round < 5 && saved() === saved0; round++) {
      const ps: Promise<unknown>[] = []
      for (const p of range(round * 30, 30)) {
        ps.push(leader.driver.propose(b(p)))
        last = p
        await new Promise((r) => setImmediate(r))
      }
      await Promise.all(ps)
    }
    expect(c.withEntries).toBeGreaterThanOrEqual(2)
    expect(saved()).toBeGreaterThan(saved0)
    expect(c.empty).toBeLessThan(c.withEntries)
    await until(() => reps.every((r) => r.payloads().at(-1) === last), 2000, 'followers apply the last entry')
    // idle: the commit is held (up to commitDelayMs, 1 s here) instead of sent at once;
    // followers still learn it, from the held append or a heartbeat
    await new Promise((r) => setTimeout(r, 1100)) // earlier holds released
    const before = c.empty
    await leader.driver.propose(b('idle'))
    await new Promise((r) => setTimeout(r, 200))
    expect(c.empty - before).toBe(0)
    await until(
      () => reps.every((r) => r.payloads().at(-1) === 'idle'),
      5000,
      'followers apply after the hold',
    )
  })

  it('one proposal at a time, each within the hold of the last commit: no commit-only append leaves', async () => {
    // The next proposal's append (carrying the commit) always comes 20 ms after the commit,
    // well within the 200 ms hold. A hold timer shared by successive commits (before issue
    // 17's fix) fired 200 ms after the first hold and sent whatever was held at that moment,
    // a commit held a few ms earlier: about one pair of empty appends per 200 ms here.
    const { reps, net } = await cluster(3, { commitDelayMs: 200, electionTick: 200, heartbeatTick: 100 })
    reps[0]!.driver.campaign()
    const leader = await leaderOf(reps, 10_000)
    await proposeAll(leader, ['warm'])
    await new Promise((r) => setTimeout(r, 250)) // the warm-up commit's hold has ended
    const c = countAppends(net)
    for (const p of range(0, 20)) {
      await leader.driver.propose(b(p))
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(c.withEntries).toBeGreaterThanOrEqual(40)
    expect(c.empty).toBe(0)
    // idle after the last one: its commit still reaches the followers when the hold ends
    await until(
      () => reps.every((r) => r.payloads().at(-1) === 'p19'),
      2000,
      'followers apply the last entry',
    )
    expect(c.empty).toBe(2)
  })

  it('commitDelayMs: 0 sends every commit at once', async () => {
    const { reps, net } = await cluster(3, { commitDelayMs: 0, electionTick: 200, heartbeatTick: 100 })
    reps[0]!.driver.campaign()
    const leader = await leaderOf(reps, 10_000)
    await proposeAll(leader, ['warm'])
    const c = countAppends(net)
    for (const p of range(0, 10)) await leader.driver.propose(b(p))
    expect(c.empty).toBeGreaterThanOrEqual(18) // each commit, to both followers (give or take one)
    expect(leader.driver.status().stats.commitOnlySaved).toBe(0)
    await until(() => reps.every((r) => r.payloads().at(-1) === 'p9'), 2000, 'followers apply the last entry')
  })

  it('rejects a bad commitDelayMs', () => {
    const opts = { id: 'x', dir: '/nonexistent', send: () => {}, apply: () => {} }
    expect(() => new ReplicaDriver({ ...opts, commitDelayMs: -1 })).toThrow(InvalidArgumentError)
    expect(() => new ReplicaDriver({ ...opts, commitDelayMs: 1.5 })).toThrow(InvalidArgumentError)
  })
})

describe('ReplicaDriver memory window', () => {
  it('a follower far behind catches up from entries the leader reads back from disk', async () => {
    // memoryBytes 1: every applied entry leaves the leader's memory at once
    const { reps } = await cluster(3, { memoryBytes: 1 })
    const leader = await leaderOf(reps)
    const committed = range(0, 50)
    await proposeAll(leader, committed)
    const follower = reps.find((r) => r !== leader)!
    await follower.kill()
    const more = range(50, 300)
    await proposeAll(leader, more, 20)
    committed.push(...more)
    const store = leader.driver.storage!
    expect(store.memory().entries).toBeLessThan(20) // applied entries left memory
    await follower.start()
    await until(() => follower.applied.length === committed.length, 10_000, 'follower catch-up')
    expect(follower.payloads()).toEqual(committed)
    expect(store.windowLoads).toBeGreaterThan(0) // served from disk
    for (const r of reps) expect(r.payloads()).toEqual(committed)
  })
})

describe('ReplicaDriver restart with a durable state machine', () => {
  // The state machine keeps what it applied across restarts (as a partition log does) and the
  // driver starts with `applied` = its last index. The hard state on disk keeps the commit
  // index of the last election only, so after a crash it lags `applied` by everything since;
  // with a small memory window those entries are no longer in memory when the node restarts.
  it('a crashed follower, then a second member, then all three restart and keep serving', async () => {
    const errors: unknown[] = []
    const { reps } = await cluster(3, { memoryBytes: 4096, onError: (e) => errors.push(e) }, true)
    const big = (i: number) => `${i}:${'x'.repeat(1024)}`
    const committed: string[] = []
    const round = async (n: number) => {
      const leader = await leaderOf(reps, 10_000)
      const batch = Array.from({ length: n }, (_, k) => big(committed.length + k))
      await proposeAll(leader, batch, 16)
      committed.push(...batch)
      await until(
        () => errors.length > 0 || reps.every((r) => r.applied.length === committed.length),
        10_000,
        'all applied',
      )
      expect(errors).toEqual([])
      return leader
    }
    let leader = await round(200)
    const first = reps.find((r) => r !== leader)!
    await first.kill()
    await first.start()
    leader = await round(50)
    expect(errors).toEqual([])
    const second = reps.find((r) => r !== first)!
    await second.kill()
    await second.start()
    await round(50)
    expect(errors).toEqual([])
    for (const r of reps) await r.kill()
    for (const r of reps) await r.start()
    await round(50)
    expect(errors).toEqual([])
    for (const r of reps) expect(r.payloads()).toEqual(committed)
  })
})

describe('ReplicaDriver with a log rebuilt by resetReplicaLog', () => {
  it('votes for no one until a leader caught it up, then holds every committed entry', async () => {
    const { reps } = await cluster()
    const leader = await leaderOf(reps)
    const committed = range(0, 100)
    await proposeAll(leader, committed)
    const [rebuilt, other] = reps.filter((r) => r !== leader) as [Replica, Replica]
    await until(() => rebuilt.applied.length === committed.length, 5000, 'follower applied')
    await rebuilt.kill()
    await resetReplicaLog(rebuilt.dir)
    expect((await readdir(rebuilt.dir)).sort()).toEqual(['hardstate', 'recovering'])
    await leader.kill()
    // The rebuilt member and the other follower alone: the rebuilt one grants no vote, so no
    // leader can be elected without the old leader's log.
    await rebuilt.start()
    expect(rebuilt.driver.status().recovering).toBe(true)
    await new Promise((r) => setTimeout(r, 1500)) // about 3 election timeouts (tickMs 20)
    expect([rebuilt.driver.role, other.driver.role]).not.toContain('leader')
    expect(rebuilt.driver.status().recovering).toBe(true)
    await leader.start()
    const l2 = await leaderOf(reps, 10_000)
    expect(l2).not.toBe(rebuilt)
    await proposeAll(l2, ['after'])
    await until(() => rebuilt.applied.length === committed.length + 1, 10_000, 'rebuilt replica caught up')
    expect(rebuilt.payloads()).toEqual([...committed, 'after'])
    expect(rebuilt.driver.status().recovering).toBe(false)
    await until(() => !existsSync(join(rebuilt.dir, 'recovering')), 5000, 'marker removed')
  })

  it('the same leader catches a rebuilt follower up (entries, or a snapshot once compacted)', async () => {
    for (const compacted of [false, true]) {
      const { reps } = await cluster()
      const leader = await leaderOf(reps)
      const committed = range(0, 100)
      await proposeAll(leader, committed)
      const rebuilt = reps.find((r) => r !== leader)!
      await until(() => rebuilt.applied.length === committed.length, 5000, 'follower applied')
      await rebuilt.kill()
      if (compacted) await leader.driver.compact()
      await resetReplicaLog(rebuilt.dir)
      await rebuilt.start()
      await proposeAll(leader, ['after'])
      // The leader had it at match ~101: only its `recovering` rejection makes it look back.
      await until(
        () => rebuilt.driver.applied >= leader.driver.applied && !rebuilt.driver.status().recovering,
        10_000,
        `rebuilt follower caught up (compacted: ${compacted})`,
      )
      if (compacted) expect(rebuilt.restored.length).toBe(1)
      else expect(rebuilt.payloads()).toEqual([...committed, 'after'])
    }
  })
})
