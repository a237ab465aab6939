/**
 * Key-value buckets and `streams.get`/`streams.last` on real nodes over loopback: every
 * operation, compare-and-set conflicts between concurrent writers of two nodes (exactly one
 * wins), bad input named, and a watch that sees the current values first, then puts and
 * deletes in revision order.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import type { KvBucket, PlexusNode } from '../../src/index.js'
import { startStreamCluster, stopStartedNodes } from '../helpers/nodes.js'
import { mulberry32 } from '../helpers/rng.js'
import { take } from '../helpers/take.js'

const seed = Number(process.env.KV_SEED ?? Date.now() % 1_000_000)
console.log(`kv seed ${seed} (KV_SEED to replay)`)

let root: string
let members: PlexusNode[]
let outside: PlexusNode
let kv: KvBucket
let kvOut: KvBucket

/** Three storing members and a node outside the cluster (nodes stop after each test). */
async function setup(): Promise<void> {
  root ??= await mkdtemp(join(tmpdir(), 'plexus-kv-'))
  const c = await startStreamCluster(join(root, String(Date.now())), { members: 3, outside: 1 })
  members = c.members
  outside = c.outside[0]!
  kv = await members[0]!.kv('config', { cluster: 'db' })
  kvOut = await outside.kv('config', { cluster: 'db' }) // opens the existing bucket
}

afterAll(async () => {
  await stopStartedNodes()
  if (root !== undefined) await rm(root, { recursive: true, force: true })
})

describe('kv', () => {
  it('every operation, compare-and-set across nodes, bad input', async () => {
    await setup()
    expect(kv.stream).toBe('KV_config')
    const r1 = await kv.put('app.db.url', 'postgres://a')
    const got = await kvOut.get('app.db.url')
    expect(got).toMatchObject({ key: 'app.db.url', revision: r1, operation: 'put' })
    expect(got!.string()).toBe('postgres://a')
    expect(await kv.get('app.missing')).toBeNull()

    const c = await kvOut.create('app.flags', JSON.stringify({ beta: true }))
    expect((await kv.get('app.flags'))!.json()).toEqual({ beta: true })
    await expect(kv.create('app.flags', 'x')).rejects.toMatchObject({ name: 'KeyExistsError' })

    const u = await kv.update('app.flags', '{"beta":false}', c)
    expect(u).toBeGreaterThan(c)
    const stale = await kvOut.update('app.flags', 'y', c).catch((e) => e)
    expect(stale.name).toBe('WrongRevisionError')
    expect(stale.current).toBe(u)

    const d = await kv.delete('app.flags')
    expect(await kvOut.get('app.flags')).toBeNull()
    expect(await kv.keys()).toEqual(['app.db.url'])
    // a deleted key can be created again
    const again = await kv.create('app.flags', 'back')
    expect(again).toBeGreaterThan(d)
    const hist = await kvOut.history('app.flags')
    expect(hist.map((e) => [e.operation, e.revision])).toEqual([
      ['put', c],
      ['put', u],
      ['delete', d],
      ['put', again],
    ])
    expect(hist[1]!.string()).toBe('{"beta":false}')

    // exactly one of concurrent compare-and-set writers wins
    const rng = mulberry32(seed)
    let rev = await kv.put('counter', '0')
    for (let round = 0; round < 8; round++) {
      const n = 2 + Math.floor(rng() * 4)
      const outs = await Promise.allSettled(
        Array.from({ length: n }, (_, i) => (i % 2 ? kvOut : kv).update('counter', `${round}.${i}`, rev)),
      )
      const won = outs.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []))
      expect(won).toHaveLength(1)
      for (const o of outs) if (o.status === 'rejected') expect(o.reason.name).toBe('WrongRevisionError')
      rev = won[0]!
    }
    const creates = await Promise.allSettled([kv, kvOut, kv, kvOut].map((b, i) => b.create('once', `${i}`)))
    expect(creates.filter((o) => o.status === 'fulfilled')).toHaveLength(1)
    for (const o of creates) if (o.status === 'rejected') expect(o.reason.name).toBe('KeyExistsError')

    // bad input is refused by name
    const bad = { name: 'InvalidArgumentError' }
    await expect(kv.put('a..b', 'v')).rejects.toMatchObject(bad)
    await expect(kv.put('a.*', 'v')).rejects.toThrow(/key/)
    await expect(kv.put('', 'v')).rejects.toThrow(/key/)
    await expect(kv.put('ok', '')).rejects.toThrow(/value/)
    await expect(kv.update('ok', 'v', -1)).rejects.toThrow(/revision/)
    await expect(kv.get(42 as unknown as string)).rejects.toThrow(/key/)
    expect(() => kv.watch('a b')).toThrow(/pattern/)
    await expect(outside.kv('bad name', { cluster: 'db' })).rejects.toThrow(/bucket/)
    await expect(outside.kv('x', { cluster: 'db', replicas: 0 })).rejects.toThrow(/replicas/)
    await expect(outside.kv('x', {} as never)).rejects.toThrow(/cluster/)
  })

  it('watches: current values first, then puts and deletes in order; streams.get/last', async () => {
    await setup()
    const w = await members[1]!.kv('watched', { cluster: 'db', replicas: 3 })
    await w.put('svc.a', '1')
    await w.put('svc.b', '1')
    await w.put('svc.a', '2')
    await w.put('other', 'x')
    const watch = (await outside.kv('watched', { cluster: 'db' })).watch('svc.>')
    const it = watch[Symbol.asyncIterator]()
    const first = await take(it, 2)
    expect(first.map((e) => [e.key, e.string()])).toEqual([
      ['svc.b', '1'],
      ['svc.a', '2'],
    ])
    const r1 = await w.put('svc.c', '1')
    const r2 = await w.delete('svc.a')
    await w.put('other', 'y') // not matching
    const r3 = await w.put('svc.b', '2')
    const live = await take(it, 3)
    expect(live.map((e) => [e.key, e.operation, e.revision])).toEqual([
      ['svc.c', 'put', r1],
      ['svc.a', 'delete', r2],
      ['svc.b', 'put', r3],
    ])
    watch.stop()
    expect((await it.next()).done).toBe(true)

    // streams.get / streams.last on a plain stream
    const n = members[0]!
    await n.streams.create('events', { cluster: 'db', subject: 'ev.>', partitions: 2 }, { timeout: 10_000 })
    const a = await outside.publish('ev.x', 'one', { key: 'k1', ack: 'all' })
    await outside.publish('ev.x', 'two', { key: 'k1', ack: 'all', headers: { h: 'v' } })
    const m = await n.streams.get('events', { partition: a!.partition, offset: a!.offset })
    expect(m.string()).toBe('one')
    expect(m.topic).toBe('ev.x')
    const last = await outside.streams.last('events', { key: 'k1' })
    expect(last.string()).toBe('two')
    expect(last.headers).toEqual({ h: 'v' })
    await expect(n.streams.last('events', { key: 'nope' })).rejects.toMatchObject({
      name: 'MessageNotFoundError',
    })
    await expect(n.streams.get('events', { partition: a!.partition, offset: 999 })).rejects.toMatchObject({
      name: 'MessageNotFoundError',
    })
    await expect(n.streams.get('events', { partition: 5, offset: 0 })).rejects.toThrow(/partition/)
    await expect(n.streams.get('events', { offset: -1 })).rejects.toThrow(/offset/)
    await expect(n.streams.last('events', {} as never)).rejects.toThrow(/key/)
    await expect(n.streams.get('nope', { offset: 0 })).rejects.toMatchObject({ name: 'StreamNotFoundError' })
  })
})
