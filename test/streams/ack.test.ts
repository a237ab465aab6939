import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { LeadershipLostError } from '../../src/replication/index.js'
import {
  PartitionReplica,
  type PartitionReplicaOptions,
  type PublishResult,
} from '../../src/streams/partition/index.js'
import { mulberry32 } from '../helpers/rng.js'
import { MemNet, s, tempDir, until } from '../replication/helpers.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})

/** Three partition replicas on one MemNet; `electionTick` at 20 ms per tick. */
async function cluster(electionTick: number) {
  const { dir: root, cleanup } = await tempDir('plexus-ack-')
  const net = new MemNet()
  const ids = ['n1', 'n2', 'n3']
  const ps = ids.map((id) => {
    const opts: PartitionReplicaOptions = {
      id,
      dir: join(root, id),
      voters: ids,
      send: (to, bytes) => net.send(id, to, bytes),
      driver: { tickMs: 20, electionTick, rand: mulberry32(id.charCodeAt(1) * 7919 + Date.now()) },
    }
    const p = new PartitionReplica(opts)
    net.nodes.set(id, p)
    return p
  })
  for (const p of ps) await p.start()
  cleanups.push(async () => {
    for (const p of ps) await p.stop().catch(() => {})
    await cleanup()
  })
  return { net, ps, ids }
}

async function leaderOf(ps: PartitionReplica[], ms = 10_000): Promise<PartitionReplica> {
  let found: PartitionReplica | undefined
  await until(
    () => {
      const ls = ps.filter((p) => p.role === 'leader')
      if (ls.length !== 1) return false
      found = ls[0]!
      return ps.every((p) => p.leader === found!.id)
    },
    ms,
    'a leader',
  )
  return found!
}

/** Every message as `offset → value`, checking density. */
async function byOffset(p: PartitionReplica): Promise<string[]> {
  const out: string[] = []
  for (;;) {
    const batch = await p.read(out.length, { maxBytes: 1 << 20 })
    if (batch.length === 0) return out
    for (const m of batch) {
      expect(m.offset).toBe(out.length)
      out.push(s(m.value))
    }
  }
}

const tick = () => new Promise((r) => setTimeout(r, 1))

/** Tracks whether a promise settled yet. */
function track<T>(p: Promise<T>): { p: Promise<T>; settled: () => boolean } {
  let done = false
  p.then(
    () => (done = true),
    () => (done = true),
  )
  return { p, settled: () => done }
}

describe("PartitionReplica publish with ack: 'leader'", () => {
  it("resolves without a quorum ('all' does not); predicted offsets are the applied ones", async () => {
    // long election timeout: cutting the followers off for a moment changes no leadership
    const { net, ps, ids } = await cluster(50)
    ps[0]!.raft!.campaign()
    let leader = await leaderOf(ps)
    const got = new Map<string[], Promise<PublishResult>>() // values of a publish → its result
    const pub = (vs: string[], ack: 'leader' | 'all') => {
      const r = leader.publish(
        vs.map((value) => ({ value })),
        { ack },
      )
      got.set(vs, r)
      return r
    }
    await Promise.all([pub(['a0', 'a1'], 'all'), pub(['a2'], 'leader')])

    // acks precede the partition log write (pipelined apply): wait until it is visible
    await until(() => leader.latest() === 2, 5000, 'first messages visible')
    net.isolate(leader.id, ids) // no quorum: nothing can commit
    const latest = leader.latest()
    const all1 = track(pub(['b0', 'b1', 'b2'], 'all'))
    const l1 = pub(['b3'], 'leader') // same entry as b0..b2
    await tick()
    const l2 = pub(['c0', 'c1'], 'leader') // next entries: predicted past uncommitted ones
    const all2 = track(pub(['c2'], 'all'))
    await tick()
    const l3 = pub(['d0', 'd1', 'd2', 'd3'], 'leader')
    const [r1, r2, r3] = await Promise.all([l1, l2, l3])
    expect(r1.firstOffset).toBe(r1.lastOffset)
    expect(r2.firstOffset).toBeGreaterThan(r1.lastOffset)
    expect(r3).toEqual({ firstOffset: r3.lastOffset - 3, lastOffset: r3.lastOffset })
    await new Promise((r) => setTimeout(r, 50))
    expect(all1.settled()).toBe(false) // 'all' waits for a quorum
    expect(all2.settled()).toBe(false)
    expect(leader.latest()).toBe(latest) // nothing committed or visible
    net.heal()
    await Promise.all([all1.p, all2.p])

    // a new term: its no-op takes a raft index but no offset; publish at once after election
    const next = ps.find((p) => p !== leader)!
    leader.raft!.transferLeader(next.id)
    await until(() => next.role === 'leader', 10_000, 'transfer')
    leader = next
    net.isolate(leader.id, ids)
    const e0 = pub(['e0'], 'leader')
    const e1 = pub(['e1', 'e2'], 'all')
    await e0
    net.heal()
    await e1
    await leaderOf(ps)

    const total = 17 // a0..a2, b0..b3, c0..c2, d0..d3, e0..e2
    await until(() => ps.every((p) => p.latest() === total - 1), 10_000, 'convergence')
    const logs = await Promise.all(ps.map(byOffset))
    for (const l of logs) expect(l).toEqual(logs[0])
    expect(logs[0]!.length).toBe(total)
    for (const [vs, r] of got) {
      const { firstOffset, lastOffset } = await r // predicted for 'leader', applied for 'all'
      expect(logs[0]!.slice(firstOffset, lastOffset + 1)).toEqual(vs)
    }
  })

  it('rejects with LeadershipLostError when leadership ends before the fsync', async () => {
    const { net, ps, ids } = await cluster(10)
    const old = await leaderOf(ps)
    await old.publish([{ value: 'x0' }], { ack: 'all' })
    // hold the leader's next raft log append until it has lost leadership
    const store = old.raft!.storage!
    const append = store.append.bind(store)
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    let held = false
    store.append = async (entries) => {
      if (!held) {
        held = true
        await gate
      }
      return append(entries)
    }
    const pl = old.publish([{ value: 'lost?' }], { ack: 'leader' }).catch((e) => e)
    const pa = old.publish([{ value: 'lost?' }], { ack: 'all' }).catch((e) => e)
    await until(() => held, 5000, 'the append to start')
    net.isolate(old.id, ids)
    const rest = ps.filter((p) => p !== old)
    const next = await leaderOf(rest)
    net.heal()
    await until(() => old.role !== 'leader', 10_000, 'the old leader to step down')
    release()
    expect(await pl).toBeInstanceOf(LeadershipLostError)
    expect(await pa).toBeInstanceOf(Error)
    await next.publish([{ value: 'x1' }], { ack: 'all' })
    await until(() => ps.every((p) => p.latest() === next.latest()), 10_000, 'convergence')
    const logs = await Promise.all(ps.map(byOffset))
    for (const l of logs) expect(l).toEqual(logs[0])
  })
})
