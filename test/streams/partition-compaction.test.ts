/**
 * Raft log compaction of partition replicas and snapshot catch-up: the raft log stays a short
 * window (its segments are deleted), and a replica behind the compaction point, or one whose
 * partition log was lost, copies the records it lacks from another replica and ends up with
 * exactly the same partition log.
 */
import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { LogRecord } from '../../src/log/index.js'
import { PartitionReplica, type PartitionReplicaOptions } from '../../src/streams/partition/index.js'
import type { CopySource } from '../../src/streams/partition/partition-copy.js'
import { mulberry32 } from '../helpers/rng.js'
import { MemNet, tempDir, until } from '../replication/helpers.js'

const SEED = Number(process.env.SEED ?? Date.now() % 1_000_000)

/** Small thresholds so a few MB of messages compact several times. */
const COMPACTING: Partial<PartitionReplicaOptions> = {
  raftCompactBytes: 256 * 1024,
  raftRetainBytes: 64 * 1024,
  maxBatchMessages: 32,
}

class Member {
  p!: PartitionReplica
  /** When set, copy calls served to others fail with this probability (seeded). */
  failRate = 0
  /** When set, copy calls served to others are slow and small (16 KiB after 20 ms). */
  slowCopy = false
  private rand: () => number
  constructor(
    readonly id: string,
    readonly dir: string,
    readonly net: MemNet,
    readonly voters: string[],
    readonly members: Map<string, Member>,
    private readonly extra: Partial<PartitionReplicaOptions> = {},
  ) {
    this.rand = mulberry32(SEED + id.charCodeAt(1))
  }

  async start(): Promise<void> {
    const copy: CopySource = async (peer, from, maxBytes) => {
      const m = this.members.get(peer)
      if (m === undefined || !this.net.nodes.has(peer)) throw new Error(`${peer} is down`)
      if (m.failRate > 0 && m.rand() < m.failRate) throw new Error(`${peer} failed (injected)`)
      if (m.slowCopy) {
        await new Promise((r) => setTimeout(r, 20))
        return m.p.copyOut(from, 16 * 1024)
      }
      return m.p.copyOut(from, maxBytes)
    }
    this.p = new PartitionReplica({
      id: this.id,
      dir: this.dir,
      voters: this.voters,
      send: (to, bytes) => this.net.send(this.id, to, bytes),
      copy,
      driver: {
        tickMs: 20,
        electionTick: 10,
        rand: mulberry32(SEED * 31 + this.id.charCodeAt(1)),
        segmentBytes: 64 * 1024,
        onError: (e) => errors.push(e),
      },
      ...COMPACTING,
      ...this.extra,
    })
    this.net.nodes.set(this.id, this.p)
    await this.p.start()
  }

  async kill(): Promise<void> {
    this.net.nodes.delete(this.id)
    await this.p.stop({ flush: false })
  }
}

const cleanups: Array<() => Promise<void>> = []
afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail') console.error(`partition-compaction seed: SEED=${SEED}`)
  for (const c of cleanups.splice(0)) await c()
})

/** Errors the replicas of the current test reported (`driver.onError`). */
let errors: unknown[] = []

async function cluster(extra: Partial<PartitionReplicaOptions> = {}) {
  errors = []
  const { dir: root, cleanup } = await tempDir('plexus-pcompact-')
  const net = new MemNet(SEED)
  const ids = ['n1', 'n2', 'n3']
  const members = new Map<string, Member>()
  const ms = ids.map((id) => new Member(id, join(root, id), net, ids, members, extra))
  for (const m of ms) members.set(m.id, m)
  for (const m of ms) await m.start()
  cleanups.push(async () => {
    for (const m of ms) await m.p.stop().catch(() => {})
    await cleanup()
  })
  return { net, ms, ids }
}

async function leaderOf(ms: Member[]): Promise<Member> {
  let found: Member | undefined
  await until(
    () => {
      const up = ms.filter((m) => m.net.nodes.has(m.id))
      const ls = up.filter((m) => m.p.role === 'leader')
      if (ls.length !== 1) return false
      found = ls[0]!
      return up.every((m) => m.p.leader === found!.id)
    },
    8000,
    'a leader',
  )
  return found!
}

/** Publishes `n` 1 KB messages (every 7th with a msgId), 64 calls in flight; returns their values. */
async function publish(m: Member, n: number, tag: string): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < n) {
      const i = next++
      const value = new Uint8Array(1024).fill(i % 251)
      value.set(new TextEncoder().encode(`${tag}-${i}`))
      await m.p.publish([{ value, msgId: i % 7 === 0 ? `${tag}-${i}` : undefined }], { ack: 'all' })
    }
  }
  await Promise.all(Array.from({ length: 64 }, worker))
}

/** Every record of `p` (waiting until its written log reaches its applied end). */
async function readAll(p: PartitionReplica): Promise<LogRecord[]> {
  for (let i = 0; (await p.copyOut(0, 1)).end < p.status().nextOffset; i++) {
    if (i > 1000) throw new Error('the partition log never caught up with its applied end')
    await new Promise((r) => setTimeout(r, 5))
  }
  const out: LogRecord[] = []
  let from = 0
  for (;;) {
    const recs = await p.copyOut(from, 1 << 20)
    if (recs.records.length === 0) break
    for (const r of recs.records)
      out.push({ ...r, value: r.value.slice(), key: r.key?.slice(), headers: copyHeaders(r.headers) })
    from = recs.records[recs.records.length - 1]!.offset + 1
  }
  return out
}

function copyHeaders(h: LogRecord['headers']): LogRecord['headers'] {
  if (h === undefined) return undefined
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k, v.slice()]))
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0
  for (const f of await readdir(dir)) {
    // A compaction may delete a segment between the listing and its stat: it counts 0.
    n += (await stat(join(dir, f)).catch(() => undefined))?.size ?? 0
  }
  return n
}

async function expectSameLogs(ms: Member[]): Promise<LogRecord[]> {
  const want = await readAll(ms[0]!.p)
  for (const m of ms.slice(1)) {
    const got = await readAll(m.p)
    expect(got.length, `${m.id} record count`).toBe(want.length)
    for (let i = 0; i < want.length; i++) expect(got[i], `${m.id} record ${i}`).toEqual(want[i])
  }
  return want
}

describe('partition raft log compaction', () => {
  it('compacts the raft log and deletes its old segments; every message stays readable', async () => {
    const { ms } = await cluster()
    const leader = await leaderOf(ms)
    await publish(leader, 3000, 'a')
    await until(() => ms.every((m) => m.p.latest() === 2999), 10_000, 'all replicas applied')
    // Compaction runs beside the applies (after an fdatasync): wait for it, not just the data.
    await until(
      () => ms.every((m) => m.p.compactions > 0 && m.p.raft!.storage!.firstIndex() > 1),
      10_000,
      'every replica compacted',
    )
    for (const m of ms) {
      // ~3.1 MB went through the raft log; it keeps the retained window plus a few segments.
      expect(await dirBytes(join(m.dir, 'raft', 'log')), `${m.id} raft log bytes`).toBeLessThan(1_200_000)
    }
    expect(errors).toEqual([])
    const recs = await expectSameLogs(ms)
    expect(recs.map((r) => r.offset)).toEqual(Array.from({ length: 3000 }, (_, i) => i))
  })

  it('a replica away past the compaction point installs a snapshot and copies what it lacks', async () => {
    const { ms } = await cluster()
    let leader = await leaderOf(ms)
    await publish(leader, 500, 'a')
    const away = ms.find((m) => m !== leader)!
    await away.kill()
    const rest = ms.filter((m) => m !== away)
    await publish(leader, 2500, 'b')
    await until(() => rest.every((m) => m.p.compactions > 0), 10_000, 'compaction on the others')
    const first = leader.p.raft!.storage!.firstIndex()
    expect(first).toBeGreaterThan(away.p.status().appliedIndex + 1) // entries it needs are gone
    rest[0]!.failRate = 0.3 // copies sometimes fail: it tries the other replica, then again
    await away.start()
    await until(() => away.p.latest() === leader.p.latest(), 15_000, 'the returning replica caught up')
    expect(away.p.raft!.storage!.snapshot().index).toBeGreaterThanOrEqual(first - 1)
    rest[0]!.failRate = 0
    // It keeps replicating normally afterwards, and holds the same log byte for byte.
    leader = await leaderOf(ms)
    await publish(leader, 300, 'c')
    await until(() => ms.every((m) => m.p.latest() === 3299), 10_000, 'all applied')
    await expectSameLogs(ms)
  })

  it('a replica whose partition log was lost rebuilds it from the other replicas', async () => {
    const { ms } = await cluster()
    const leader = await leaderOf(ms)
    await publish(leader, 2000, 'a')
    const victim = ms.find((m) => m !== leader)!
    await until(() => victim.p.compactions > 0 && victim.p.latest() === 1999, 10_000, 'victim compacted')
    await victim.kill()
    await rm(join(victim.dir, 'data'), { recursive: true, force: true })
    await victim.start()
    await until(() => victim.p.latest() === 1999, 15_000, 'partition log rebuilt')
    await expectSameLogs(ms)
  })

  it('a replica killed in the middle of its catch-up copy completes it when restarted', async () => {
    const { ms } = await cluster()
    const leader = await leaderOf(ms)
    const away = ms.find((m) => m !== leader)!
    await away.kill()
    await publish(leader, 2500, 'a')
    await until(() => leader.p.compactions > 0, 10_000, 'leader compacted')
    // Every source is slow and serves small chunks: the copy is still running when killed.
    for (const m of ms) if (m !== away) m.slowCopy = true
    await away.start()
    await until(() => away.p.latest() >= 300, 15_000, 'part of the copy done')
    expect(away.p.latest()).toBeLessThan(2499)
    await away.kill()
    for (const m of ms) m.slowCopy = false
    await away.start()
    await until(() => away.p.latest() === 2499, 15_000, 'copy completed after the restart')
    await expectSameLogs(ms)
  })

  it('a single replica whose compacted partition log was lost reports it instead of waiting forever', async () => {
    const { dir: root, cleanup } = await tempDir('plexus-pcompact-one-')
    cleanups.push(cleanup)
    const net = new MemNet(SEED)
    const reported: unknown[] = []
    const members = new Map<string, Member>()
    const only = new Member('n1', join(root, 'n1'), net, ['n1'], members, {
      driver: { tickMs: 20, electionTick: 10, segmentBytes: 64 * 1024, onError: (e) => reported.push(e) },
    })
    members.set('n1', only)
    await only.start()
    cleanups.push(() => only.p.stop())
    await until(() => only.p.role === 'leader', 5000, 'a leader')
    await publish(only, 1000, 'a')
    await until(() => only.p.compactions > 0, 10_000, 'compacted')
    await only.kill()
    await rm(join(only.dir, 'data'), { recursive: true, force: true })
    await only.start()
    await until(() => reported.length > 0, 5000, 'an error reported')
    expect(reported[0]).toMatchObject({ name: 'CorruptReplicaStateError' })
    expect(String((reported[0] as Error).message)).toMatch(/no other replica/)
  })

  it('message ids stored before a snapshot install are still recognised by the new replica', async () => {
    const { ms, net } = await cluster()
    const leader = await leaderOf(ms)
    const away = ms.find((m) => m !== leader)!
    await away.kill()
    await leader.p.publish([{ value: new Uint8Array([1]), msgId: 'once' }], { ack: 'all' })
    await publish(leader, 2000, 'a')
    await until(() => leader.p.compactions > 0, 10_000, 'leader compacted')
    await away.start()
    await until(() => away.p.latest() === leader.p.latest(), 15_000, 'caught up')
    // Make the caught-up replica the leader: the id is known to it from the copied log.
    leader.p.raft!.transferLeader(away.id)
    await until(() => away.p.role === 'leader', 8000, 'transfer')
    await leaderOf(ms)
    const again = await away.p.publish([{ value: new Uint8Array([2]), msgId: 'once' }], { ack: 'all' })
    expect(again.duplicate).toBe(true)
    expect(again.firstOffset).toBe(0)
    expect(net.delivered).toBeGreaterThan(0)
  })
})
