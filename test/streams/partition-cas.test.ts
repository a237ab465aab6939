/**
 * Conditional appends (`expectedRevision`, partition-cas.ts) and the key index
 * (key-index.ts) on an in-process three-replica partition: exactly one of concurrent
 * writers with the same expected revision wins, a key index survives a restart, tombstones
 * remove keys, and the bound turns misses into "unknown".
 */
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { InvalidArgumentError, WrongRevisionError } from '../../src/errors.js'
import { PartitionReplica, type PartitionReplicaOptions } from '../../src/streams/partition/index.js'
import { KeyIndex } from '../../src/streams/partition/key-index.js'
import { mulberry32 } from '../helpers/rng.js'
import { MemNet, tempDir, until } from '../replication/helpers.js'

const seed = Number(process.env.CAS_SEED ?? Date.now() % 1_000_000)
console.log(`partition-cas seed ${seed} (CAS_SEED to replay)`)

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})

async function group(extra: Partial<PartitionReplicaOptions> = {}) {
  const { dir: root, cleanup } = await tempDir('plexus-cas-')
  const net = new MemNet()
  const ids = ['n1', 'n2', 'n3']
  const make = (id: string, i: number) =>
    new PartitionReplica({
      id,
      dir: join(root, id),
      voters: ids,
      send: (to, bytes) => net.send(id, to, bytes),
      driver: { tickMs: 20, electionTick: 10, rand: mulberry32(seed + i) },
      ...extra,
    })
  const ps = ids.map(make)
  for (const [i, p] of ps.entries()) net.nodes.set(ids[i]!, p)
  await Promise.all(ps.map((p) => p.start()))
  cleanups.push(async () => {
    for (const p of ps) await p.stop().catch(() => {})
    await cleanup()
  })
  let leader!: PartitionReplica
  await until(
    () => {
      const l = ps.filter((p) => p.role === 'leader')
      if (l.length === 1) leader = l[0]!
      return l.length === 1
    },
    8000,
    'a leader',
  )
  const restart = async (i: number) => {
    await ps[i]!.stop()
    ps[i] = make(ids[i]!, i)
    net.nodes.set(ids[i]!, ps[i]!)
    await ps[i]!.start()
    return ps[i]!
  }
  return { ps, leader, restart }
}

const put = (p: PartitionReplica, key: string, value: string, expectedRevision?: number) =>
  p.publish([{ key, value, expectedRevision }], { ack: 'all' }).then((r) => r.firstOffset)

describe('conditional appends', () => {
  it('creates only when absent, updates only at the current revision, and says the current one', async () => {
    const { leader } = await group()
    const r0 = await put(leader, 'a', 'one', -1)
    expect(r0).toBe(0)
    const dup = await put(leader, 'a', 'again', -1).catch((e) => e)
    expect(dup).toBeInstanceOf(WrongRevisionError)
    expect(dup.current).toBe(0)
    const r1 = await put(leader, 'a', 'two', r0)
    expect(r1).toBe(1)
    const stale = await put(leader, 'a', 'three', r0).catch((e) => e)
    expect(stale.name).toBe('WrongRevisionError')
    expect(stale.current).toBe(1)
    // a plain write moves the revision too
    const r2 = await put(leader, 'a', 'plain')
    await expect(put(leader, 'a', 'x', r1)).rejects.toThrow(/current revision 2/)
    expect(await put(leader, 'a', 'y', r2)).toBe(3)
    // a tombstone (empty value) makes the key absent again
    await put(leader, 'a', '')
    expect((await leader.last(new TextEncoder().encode('a'))).message).toBeUndefined()
    expect(await put(leader, 'a', 'reborn', -1)).toBe(5)
    await until(() => leader.latest() >= 5, 5000, 'written') // pipelined apply
    expect(leader.latest()).toBe(5) // refused writes stored nothing
  })

  it('lets exactly one of concurrent writers with the same expected revision win', async () => {
    const { leader } = await group()
    const rng = mulberry32(seed)
    const base = await put(leader, 'k', 'base', -1)
    let current = base
    for (let round = 0; round < 20; round++) {
      const writers = 2 + Math.floor(rng() * 6)
      const outs = await Promise.allSettled(
        Array.from({ length: writers }, (_, w) => put(leader, 'k', `r${round}w${w}`, current)),
      )
      const won = outs.filter((o) => o.status === 'fulfilled')
      expect(won).toHaveLength(1)
      for (const o of outs)
        if (o.status === 'rejected') expect((o.reason as Error).name).toBe('WrongRevisionError')
      current = (won[0] as PromiseFulfilledResult<number>).value
    }
    // concurrent creates of a fresh key: one wins
    const creates = await Promise.allSettled([1, 2, 3].map((i) => put(leader, 'fresh', `c${i}`, -1)))
    expect(creates.filter((o) => o.status === 'fulfilled')).toHaveLength(1)
  })

  it('refuses bad expected revisions by name', async () => {
    const { leader } = await group()
    const bad = (m: object[]) => leader.publish(m as never, { ack: 'all' })
    await expect(bad([{ key: 'a', value: 'v', expectedRevision: -2 }])).rejects.toThrow(InvalidArgumentError)
    await expect(bad([{ value: 'v', expectedRevision: 0 }])).rejects.toThrow(/expectedRevision/)
    await expect(
      bad([
        { key: 'a', value: 'v', expectedRevision: 0 },
        { key: 'b', value: 'v' },
      ]),
    ).rejects.toThrow(/alone/)
  })

  it('rebuilds the key index on restart and serves last from it', async () => {
    const { ps, leader, restart } = await group()
    for (let i = 0; i < 50; i++) await put(leader, `k${i % 10}`, `v${i}`)
    await put(leader, 'k3', '') // tombstone
    const i = ps.findIndex((p) => p !== leader)
    await until(() => ps[i]!.latest() === 50, 5000, 'replica caught up')
    const again = await restart(i)
    const enc = new TextEncoder()
    expect(again.keyIndex.size).toBe(9)
    const last = await again.last(enc.encode('k7'))
    expect(new TextDecoder().decode(last.message!.value)).toBe('v47')
    expect(last.message!.offset).toBe(47)
    expect((await again.last(enc.encode('k3'))).message).toBeUndefined()
  })
})

describe('KeyIndex', () => {
  it('keeps the most recently written keys and calls misses unknown after dropping one', () => {
    const ix = new KeyIndex(3)
    const k = (s: string) => new TextEncoder().encode(s)
    ix.record(k('a'), 0, false)
    ix.record(k('b'), 1, false)
    ix.record(k('c'), 2, false)
    expect(ix.check(k('d'), -1)).toBeUndefined()
    ix.record(k('a'), 3, false) // a is now newest
    ix.record(k('d'), 4, false) // drops b
    expect(ix.get(k('b'))).toBeUndefined()
    expect(ix.get(k('a'))).toBe(3)
    expect(ix.check(k('b'), -1)).toEqual({ current: undefined })
    expect(ix.check(k('a'), 3)).toBeUndefined()
    ix.dropBelow(4)
    expect([...ix.keys()].map((b) => new TextDecoder().decode(b))).toEqual(['d'])
  })

  it('matches a plain model under random writes, tombstones and purges (seeded)', () => {
    const rand = mulberry32(seed)
    const ix = new KeyIndex(50)
    const model = new Map<string, number>() // key -> latest live offset, insertion = write order
    const enc = new TextEncoder()
    let evicted = 0
    for (let offset = 0; offset < 20_000; offset++) {
      const k = `k${Math.floor(rand() * 200)}`
      const tomb = rand() < 0.1
      ix.record(enc.encode(k), offset, tomb)
      model.delete(k)
      if (!tomb) model.set(k, offset)
      if (model.size > 50) {
        model.delete(model.keys().next().value as string)
        evicted++
      }
      if (rand() < 0.001) {
        const below = offset - Math.floor(rand() * 100)
        ix.dropBelow(below)
        for (const [mk, mo] of model) if (mo < below) model.delete(mk)
      }
    }
    expect(ix.evicted).toBe(evicted)
    expect([...ix.keys()].map((b) => new TextDecoder().decode(b))).toEqual([...model.keys()])
    for (const [mk, mo] of model) expect(ix.get(enc.encode(mk))).toBe(mo)
  })
})
