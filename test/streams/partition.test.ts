import { readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { InvalidArgumentError, OverloadedError } from '../../src/errors.js'
import { NotLeaderError } from '../../src/replication/index.js'
import {
  type PartitionMessage,
  PartitionReplica,
  type PartitionReplicaOptions,
} from '../../src/streams/partition/index.js'
import { mulberry32 } from '../helpers/rng.js'
import { MemNet, s, tempDir, until } from '../replication/helpers.js'

/** One member: a PartitionReplica that can be killed and restarted from its directory. */
class Member {
  p!: PartitionReplica
  constructor(
    readonly id: string,
    readonly dir: string,
    readonly net: MemNet,
    private readonly voters: string[],
    private readonly extra: Partial<PartitionReplicaOptions> = {},
  ) {}

  async start(): Promise<void> {
    this.p = new PartitionReplica({
      id: this.id,
      dir: this.dir,
      voters: this.voters,
      send: (to, bytes) => this.net.send(this.id, to, bytes),
      driver: { tickMs: 20, electionTick: 10, rand: mulberry32(this.id.charCodeAt(1) * 7919 + Date.now()) },
      ...this.extra,
    })
    this.net.nodes.set(this.id, this.p)
    await this.p.start()
  }

  /** A crash: nothing more sent or applied; only what reached the files survives. */
  async kill(): Promise<void> {
    this.net.nodes.delete(this.id)
    await this.p.stop({ flush: false })
  }
}

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})

async function cluster(extra: Partial<PartitionReplicaOptions> = {}) {
  const { dir: root, cleanup } = await tempDir('plexus-part-')
  const net = new MemNet()
  const ids = ['n1', 'n2', 'n3']
  const ms = ids.map((id) => new Member(id, join(root, id), net, ids, extra))
  for (const m of ms) await m.start()
  cleanups.push(async () => {
    for (const m of ms) await m.p.stop().catch(() => {})
    await cleanup()
  })
  return { net, ms, ids }
}

async function leaderOf(ms: Member[], ms_ = 8000): Promise<Member> {
  let found: Member | undefined
  await until(
    () => {
      const ls = ms.filter((m) => m.p.role === 'leader')
      if (ls.length !== 1) return false
      found = ls[0]!
      return ms.every((m) => m.p.leader === found!.id)
    },
    ms_,
    'a leader',
  )
  return found!
}

/** Publishes `values` one message per call, `concurrency` calls at a time; returns the offsets. */
async function publishAll(m: Member, values: string[], concurrency = 250): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < values.length; i += concurrency) {
    const chunk = values.slice(i, i + concurrency)
    const rs = await Promise.all(chunk.map((v) => m.p.publish([{ key: `k${v}`, value: v }], { ack: 'all' })))
    for (const r of rs) {
      expect(r.lastOffset).toBe(r.firstOffset)
      out.push(r.firstOffset)
    }
  }
  return out
}

async function readAll(p: PartitionReplica): Promise<PartitionMessage[]> {
  const out: PartitionMessage[] = []
  let next = p.earliest()
  for (;;) {
    const batch = await p.read(next, { maxBytes: 256 * 1024 })
    if (batch.length === 0) return out
    out.push(...batch)
    next = batch[batch.length - 1]!.offset + 1
  }
}

/** Offsets must be dense from 0; returns `offset:key:value` lines for comparison. */
async function contents(p: PartitionReplica): Promise<string[]> {
  const all = await readAll(p)
  expect(all.map((m) => m.offset)).toEqual(all.map((_, i) => i))
  return all.map((m) => `${m.offset}:${m.key ? s(m.key) : ''}:${s(m.value)}`)
}

const values = (from: number, n: number) => Array.from({ length: n }, (_, i) => `v${from + i}`)
const expected = (vs: string[]) => vs.map((v, i) => `${i}:k${v}:${v}`)

async function converged(ms: Member[], n: number): Promise<void> {
  await until(() => ms.every((m) => m.p.latest() === n - 1), 15_000, `every replica at offset ${n - 1}`)
}

describe('PartitionReplica (3 replicas, in-memory transport, real disks)', () => {
  it('2,000 messages with ack all: identical dense offsets 0..1999 everywhere, batched', async () => {
    const { ms } = await cluster()
    const leader = await leaderOf(ms)
    const vs = values(0, 2000)
    const offsets = await publishAll(leader, vs)
    expect(offsets).toEqual(vs.map((_, i) => i)) // in call order, dense
    await converged(ms, 2000)
    for (const m of ms) expect(await contents(m.p)).toEqual(expected(vs))
    const st = leader.p.status()
    expect(st.raft.stats.proposals).toBeLessThan(100) // concurrent publishes share an entry
    // a multi-message publish gets consecutive offsets; headers and timestamps round-trip
    const r = await leader.p.publish(
      [{ value: 'a', headers: { h: new Uint8Array([7]) }, timestamp: 42 }, { value: 'b' }],
      { ack: 'leader' },
    )
    expect(r).toEqual({ firstOffset: 2000, lastOffset: 2001 })
    await converged(ms, 2002)
    for (const m of ms) {
      const [a, b] = await m.p.read(2000)
      expect(Object.keys(a!.headers!)).toEqual(['h']) // position header hidden
      expect([...a!.headers!.h!]).toEqual([7])
      expect(a!.timestamp).toBe(42)
      expect(a!.key).toBeUndefined()
      expect(s(b!.value)).toBe('b')
      expect(b!.timestamp).toBe((await leader.p.read(2001))[0]!.timestamp) // leader-fixed
    }
  })

  it('errors: NotLeaderError with hint, bad input, bounded pending', async () => {
    const { ms } = await cluster({ maxPendingMessages: 10 })
    const leader = await leaderOf(ms)
    const follower = ms.find((m) => m !== leader)!
    const err = await follower.p.publish([{ value: 'x' }], { ack: 'all' }).catch((e) => e)
    expect(err).toBeInstanceOf(NotLeaderError)
    expect(err.leader).toBe(leader.id)
    await expect(leader.p.publish([], { ack: 'all' })).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(leader.p.publish([{ value: 1 as never }], { ack: 'all' })).rejects.toThrow(/value/)
    await expect(
      leader.p.publish([{ value: 'x', headers: { 'px.ri': new Uint8Array(1) } }], { ack: 'all' }),
    ).rejects.toThrow(/reserved/)
    await expect(leader.p.publish([{ value: 'x' }], { ack: 'none' as never })).rejects.toThrow(/ack/)
    const ps = Array.from({ length: 12 }, (_, i) =>
      leader.p.publish([{ value: `o${i}` }], { ack: 'all' }).catch((e) => e),
    )
    const out = await Promise.all(ps)
    expect(out.filter((o) => o instanceof OverloadedError).length).toBe(2)
    expect(out.filter((o) => !(o instanceof Error)).length).toBe(10)
  })

  it('kill + restart a follower, then the leader: nothing acknowledged lost, no duplicates', async () => {
    const { ms } = await cluster()
    let leader = await leaderOf(ms)
    const acked = values(0, 500)
    await publishAll(leader, acked)
    const follower = ms.find((m) => m !== leader)!
    await follower.kill()
    const more = values(500, 500)
    await publishAll(leader, more)
    acked.push(...more)
    await follower.start() // replays its raft log past the partition log's last raft index
    await converged(ms, acked.length)

    await leader.kill()
    const next = await leaderOf(
      ms.filter((m) => m !== leader),
      10_000,
    )
    const after = values(1000, 300)
    await publishAll(next, after)
    acked.push(...after)
    await leader.start()
    leader = await leaderOf(ms, 10_000)
    const fin = values(1300, 10)
    await publishAll(leader, fin)
    acked.push(...fin)
    await converged(ms, acked.length)
    for (const m of ms) expect(await contents(m.p)).toEqual(expected(acked))
    // restarted replicas skipped re-delivered entries instead of applying them twice
    for (const m of ms) expect(m.p.latest()).toBe(acked.length - 1)
  })

  it('every replica killed and restarted: data intact, appending continues densely', async () => {
    const { ms } = await cluster()
    const leader = await leaderOf(ms)
    const acked = values(0, 400)
    await publishAll(leader, acked)
    await converged(ms, 400)
    for (const m of ms) await m.kill()
    for (const m of ms) await m.start()
    for (const m of ms) expect(m.p.recovery.rebuilt).toBeUndefined()
    const l2 = await leaderOf(ms, 10_000)
    const more = values(400, 100)
    await publishAll(l2, more)
    acked.push(...more)
    await converged(ms, acked.length)
    for (const m of ms) expect(await contents(m.p)).toEqual(expected(acked))
  })

  it('a deleted or corrupted partition log is rebuilt from the raft log on restart', async () => {
    const { ms } = await cluster({ segmentBytes: 16 * 1024 })
    const leader = await leaderOf(ms)
    const acked = values(0, 600)
    await publishAll(leader, acked)
    await converged(ms, 600)
    const [a, b] = ms.filter((m) => m !== leader) as [Member, Member]

    // a: partition log deleted
    await a.kill()
    await rm(join(a.dir, 'data'), { recursive: true, force: true })
    await a.start()
    await until(() => a.p.latest() === 599, 10_000, 'rebuild of a')
    expect(a.p.recovery.appliedIndex).toBe(0)

    // b: a byte flipped inside the last segment (torn tail: cut there, the rest re-applied)
    await b.kill()
    const dataDir = join(b.dir, 'data')
    const logs = (await readdir(dataDir)).filter((f) => f.endsWith('.log')).sort()
    expect(logs.length).toBeGreaterThan(2) // several segments
    const tail = join(dataDir, logs[logs.length - 1]!)
    const bytes = await readFile(tail)
    bytes[Math.floor(bytes.length / 3)]! ^= 0xff
    await writeFile(tail, bytes)
    await b.start()
    await until(() => b.p.latest() === 599, 10_000, 'repair of b')
    expect(b.p.recovery.appliedIndex).toBeGreaterThan(0)

    // b again: a sealed segment damaged, found by verifyOnStart, whole log rebuilt
    await b.kill()
    const first = join(dataDir, logs[0]!)
    const fb = await readFile(first)
    fb[100]! ^= 0xff
    await writeFile(first, fb)
    const bv = new Member(b.id, b.dir, b.net, ['n1', 'n2', 'n3'], {
      segmentBytes: 16 * 1024,
      verifyOnStart: true,
    })
    ms[ms.indexOf(b)] = bv
    await bv.start()
    expect(bv.p.recovery.rebuilt).toMatch(/.+/)
    await until(() => bv.p.latest() === 599, 10_000, 'rebuild of b')

    const more = values(600, 50)
    await publishAll(leader, more)
    acked.push(...more)
    await converged(ms, acked.length)
    for (const m of ms) expect(await contents(m.p)).toEqual(expected(acked))
  })

  it('read and waitForNew see committed messages only', async () => {
    const { ms, net, ids } = await cluster()
    const old = await leaderOf(ms)
    await publishAll(old, values(0, 10))
    await converged(ms, 10)
    net.isolate(old.id, ids)
    const doomed = old.p.publish([{ key: 'kx', value: 'uncommitted' }], { ack: 'all' }).catch((e) => e)
    const ac = new AbortController()
    const waiting = old.p.waitForNew(9, ac.signal).catch((e) => e)
    await new Promise((r) => setTimeout(r, 150))
    expect(old.p.latest()).toBe(9) // appended to its raft log, not committed: invisible
    expect(await old.p.read(10)).toEqual([])
    const rest = ms.filter((m) => m !== old)
    const next = await leaderOf(rest, 10_000)
    await publishAll(next, values(10, 5))
    net.heal()
    const err = await doomed
    expect(err).toBeInstanceOf(Error) // LeadershipLostError (or overwritten): never acked
    await converged(ms, 15)
    expect(await waiting).toBe(14)
    ac.abort()
    for (const m of ms) expect(await contents(m.p)).toEqual(expected(values(0, 15)))
  })
})
