/**
 * Stream administration beyond create/delete (docs/security.md, "Who may do what"), on real
 * nodes over loopback: consumer listing, info and delete; purge; update. Each change works
 * with the cluster key, and is refused with `UnauthorizedError` without it, with a capability
 * for another operation or stream, an expired one, or a forged one (signed with another key).
 * A purge survives a member's restart (data below stays gone, data above readable); a deleted
 * consumer name starts fresh, and a consumer running under it ends.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { generateKey, issueCapability } from '../../src/index.js'
import { openLog } from '../../src/log/index.js'
import { startNode, startStreamCluster, waitFor, waitForMembers } from '../helpers/nodes.js'
import { take } from '../helpers/take.js'

const roots: string[] = []
afterAll(async () => {
  for (const r of roots.splice(0)) await rm(r, { recursive: true, force: true })
})

async function tempRoot(): Promise<string> {
  const r = await mkdtemp(join(tmpdir(), 'plexus-admin-'))
  roots.push(r)
  return r
}

const T = { timeout: 5000 }
const hour = () => Date.now() + 3_600_000

/** The refusals every admin call must give a keyless node (`call` runs it with options). */
async function expectRefused(
  call: (options: { timeout: number; capability?: string; clusterKey?: string }) => Promise<unknown>,
  key: string,
  op: 'update' | 'purge' | 'consumer-delete',
  stream: string,
  network: string,
): Promise<void> {
  const unauthorized = { name: 'UnauthorizedError' }
  await expect(call(T)).rejects.toMatchObject(unauthorized)
  const other = op === 'purge' ? 'update' : 'purge'
  const wrongOp = issueCapability(key, { cluster: 'db', ops: [other], stream, expires: hour() }, network)
  await expect(call({ ...T, capability: wrongOp })).rejects.toMatchObject({
    ...unauthorized,
    message: expect.stringMatching(new RegExp(`does not grant ${op}`)),
  })
  const wrongStream = issueCapability(
    key,
    { cluster: 'db', ops: [op], stream: 'other', expires: hour() },
    network,
  )
  await expect(call({ ...T, capability: wrongStream })).rejects.toMatchObject({
    ...unauthorized,
    message: expect.stringMatching(/does not cover stream/),
  })
  const expired = issueCapability(
    key,
    { cluster: 'db', ops: [op], stream, expires: Date.now() - 1000 },
    network,
  )
  await expect(call({ ...T, capability: expired })).rejects.toMatchObject({
    ...unauthorized,
    message: expect.stringMatching(/expired/),
  })
  const forged = issueCapability(
    generateKey(),
    { cluster: 'db', ops: [op], stream, expires: hour() },
    network,
  )
  await expect(call({ ...T, capability: forged })).rejects.toMatchObject({
    ...unauthorized,
    message: expect.stringMatching(/not signed with the key of cluster db/),
  })
  await expect(call({ ...T, clusterKey: generateKey() })).rejects.toMatchObject(unauthorized)
}

describe('stream administration: consumers, purge, update', () => {
  it('lists, describes and deletes durable consumers; only with the key or a capability', async () => {
    const root = await tempRoot()
    const { members, outside, key } = await startStreamCluster(root, { keyless: true })
    const [m0] = members
    const keyless = outside[0]!
    const network = members[0]!.status().network
    await m0!.streams.create('jobs', { cluster: 'db', subject: 'jobs.>', replicas: 3, partitions: 2 })
    for (let i = 0; i < 10; i++) await m0!.publish('jobs.x', `j${i}`, { ack: 'all', key: `k${i}` })

    const c1 = keyless.consume('jobs', { durable: 'billing' })
    const got = await take(c1[Symbol.asyncIterator](), 4)
    for (const m of got) await m.ack()
    c1.close() // commits the acked prefix
    await waitFor(
      async () => {
        const list = await keyless.streams.consumers('jobs', T)
        return list[0]?.positions.reduce((n, p) => n + p.position, 0) === 4
      },
      5000,
      'positions committed',
    )
    const list = await keyless.streams.consumers('jobs', T)
    expect(list.map((c) => c.name)).toEqual(['billing'])
    expect(list[0]!.lastActive).toBeGreaterThan(Date.now() - 60_000)
    const info = await keyless.streams.consumerInfo('jobs', 'billing', T)
    expect(info.partitions).toHaveLength(2)
    expect(info.partitions.reduce((n, p) => n + p.pending, 0)).toBe(6)
    expect(info.partitions.reduce((n, p) => n + p.end, 0)).toBe(10)
    await expect(keyless.streams.consumerInfo('jobs', 'nobody', T)).rejects.toMatchObject({
      name: 'ConsumerNotFoundError',
    })

    await expectRefused(
      (o) => keyless.streams.deleteConsumer('jobs', 'billing', o),
      key,
      'consumer-delete',
      'jobs',
      network,
    )
    expect((await keyless.streams.consumers('jobs', T)).map((c) => c.name)).toEqual(['billing'])
    const cap = issueCapability(
      key,
      {
        cluster: 'db',
        ops: ['consumer-delete'],
        stream: 'jobs',
        expires: hour(),
      },
      network,
    )
    await keyless.streams.deleteConsumer('jobs', 'billing', { capability: cap })
    expect(await keyless.streams.consumers('jobs', T)).toEqual([])
    await expect(
      keyless.streams.deleteConsumer('jobs', 'billing', { clusterKey: key }),
    ).rejects.toMatchObject({
      name: 'ConsumerNotFoundError',
    })

    // A new consumer of the name starts fresh: every message again.
    const c2 = keyless.consume('jobs', { durable: 'billing' })
    const again = await take(c2[Symbol.asyncIterator](), 10)
    expect(again).toHaveLength(10)
    for (const m of again.slice(0, 3)) await m.ack()
    await waitFor(
      async () => (await keyless.streams.consumers('jobs', T))[0]?.positions.length !== undefined,
      5000,
      'c2 committed',
    )
    // Deleting it while it runs ends it with ConsumerNotFoundError.
    const ended = (async () => {
      for await (const m of c2) await m.ack()
    })()
    await m0!.streams.deleteConsumer('jobs', 'billing')
    await expect(ended).rejects.toMatchObject({ name: 'ConsumerNotFoundError' })
    expect(await keyless.streams.consumers('jobs', T)).toEqual([])
  }, 60_000)

  it('purges below an offset and everything, replicated, surviving a member restart', async () => {
    const root = await tempRoot()
    const { members, outside, key } = await startStreamCluster(root, { keyless: true })
    const keyless = outside[0]!
    const network = members[0]!.status().network
    await members[0]!.streams.create('p', { cluster: 'db', subject: 'p.>', replicas: 3 })
    for (let i = 0; i < 20; i++) await members[0]!.publish('p.x', `m${i}`, { ack: 'all' })

    await expectRefused((o) => keyless.streams.purge('p', { before: 5 }, o), key, 'purge', 'p', network)
    expect((await keyless.streams.info('p', T)).partitions[0]!.firstOffset).toBe(0)
    await expect(keyless.streams.purge('p', { partition: 1 }, { clusterKey: key })).rejects.toMatchObject({
      name: 'InvalidArgumentError',
      message: expect.stringMatching(/partition/),
    })

    const cap = issueCapability(
      key,
      { cluster: 'db', ops: ['purge'], stream: 'p*', expires: hour() },
      network,
    )
    expect(await keyless.streams.purge('p', { before: 5 }, { capability: cap })).toEqual([
      { partition: 0, firstOffset: 5 },
    ])
    expect((await keyless.streams.info('p', T)).partitions[0]!.firstOffset).toBe(5)
    // A consumer positioned below the start continues from it.
    const c = keyless.consume('p', { from: { offset: 2 } })
    const got = await take(c[Symbol.asyncIterator](), 3)
    c.close()
    expect(got.map((m) => m.offset)).toEqual([5, 6, 7])

    expect(await members[1]!.streams.purge('p', { before: 12 })).toEqual([{ partition: 0, firstOffset: 12 }])
    // Every replica applies it: once member 2 did, stop it and reopen its partition log.
    const stopped = members[2]!
    await waitFor(
      () => stopped.status().streams.find((x) => x.name === 'p')?.hosted[0]?.firstOffset === 12,
      5000,
      'member 2 applied the purge',
    )
    await stopped.stop()
    const dataDir = join(root, 'm2', 'streams', 'db', 's', `p-${await createdIndexOf(root)}`, '0', 'data')
    const log = await openLog({ dir: dataDir, fsync: 'never' })
    expect(log.earliestOffset()).toBe(12)
    expect((await log.read(0, { maxRecords: 1 }))[0]!.offset).toBe(12)
    await log.close()

    // Purge everything while it is down; publish more; restart it and let it catch up.
    expect(await members[0]!.streams.purge('p', {})).toEqual([{ partition: 0, firstOffset: 20 }])
    for (let i = 20; i < 25; i++) await members[0]!.publish('p.x', `m${i}`, { ack: 'all' })
    const back = await startNode({ network, dataDir: join(root, 'm2') })
    await back.join('db', { key })
    await waitForMembers(back, 'db', 3, 10_000)
    await waitFor(
      async () => {
        const own = back.status().streams.find((x) => x.name === 'p')?.hosted[0]
        return own?.firstOffset === 20 && own.nextOffset === 25
      },
      15_000,
      'restarted replica in sync',
    )
    const c3 = back.consume('p', { from: 'earliest' })
    const rest = await take(c3[Symbol.asyncIterator](), 5)
    c3.close()
    expect(rest.map((m) => m.offset)).toEqual([20, 21, 22, 23, 24])
    await back.stop()
    const log2 = await openLog({ dir: dataDir, fsync: 'never' })
    expect(log2.earliestOffset()).toBe(20)
    expect((await log2.read(0, { maxRecords: 10 })).map((r) => r.offset)).toEqual([20, 21, 22, 23, 24])
    await log2.close()
  }, 60_000)

  it('updates retention limits; refuses shape changes naming the field', async () => {
    const root = await tempRoot()
    const { members, outside, key } = await startStreamCluster(root, { keyless: true })
    const keyless = outside[0]!
    const network = members[0]!.status().network
    await members[0]!.streams.create('u', {
      cluster: 'db',
      subject: 'u.>',
      replicas: 3,
      retention: { maxAge: 60_000 },
    })
    await expectRefused((o) => keyless.streams.update('u', { retention: {} }, o), key, 'update', 'u', network)
    await expect(
      keyless.streams.update('u', { partitions: 4 } as never, { clusterKey: key }),
    ).rejects.toMatchObject({
      name: 'InvalidArgumentError',
      message: expect.stringMatching(/^partitions cannot be changed by update/),
    })
    await expect(
      keyless.streams.update('u', { retention: { maxBytes: -1 } }, { clusterKey: key }),
    ).rejects.toMatchObject({
      name: 'InvalidArgumentError',
      message: expect.stringMatching(/retention\.maxBytes/),
    })
    const info = await keyless.streams.update('u', { retention: { maxMessages: 1000 } }, { clusterKey: key })
    expect(info.retention).toEqual({ maxMessages: 1000 })
    await waitFor(() => members.every((m) => m.streams.list().length === 1), 5000, 'tables')
    const m1 = await members[1]!.streams.info('u', T)
    expect(m1.retention).toEqual({ maxMessages: 1000 })
  }, 60_000)
})

/** The createdIndex of stream `p` from the directory name on member 0. */
async function createdIndexOf(root: string): Promise<string> {
  const names = await readdir(join(root, 'm0', 'streams', 'db', 's'))
  return names.find((n) => n.startsWith('p-'))!.slice(2)
}
