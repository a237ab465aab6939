/**
 * Purge by key (`streams.purge(name, { key, before? })`) on real nodes over loopback: bad
 * input and a missing proof are refused; after it resolves, plain and durable consumers from
 * the earliest offset, `streams.get` and `streams.last` no longer return the key's messages
 * (only those below `before` when it is given), later messages of the key are seen again, and
 * a durable consumer's position passes purged messages at the partition's tail. A replica
 * stopped before a purge and restarted after it hides the messages in its own reads (the
 * entry replayed from its raft log; the earlier purge kept in its file).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import type { PlexusNode } from '../../src/index.js'
import { keyHash } from '../../src/streams/client.js'
import type { PartitionReplica } from '../../src/streams/partition/partition.js'
import { startNode, startStreamCluster, waitFor, waitForMembers } from '../helpers/nodes.js'
import { take } from '../helpers/take.js'

const roots: string[] = []
afterAll(async () => {
  for (const r of roots.splice(0)) await rm(r, { recursive: true, force: true })
})

const T = { timeout: 5000 }
const text = (b: Uint8Array | undefined) => (b === undefined ? '' : new TextDecoder().decode(b))

/** The replica `node` hosts of partition `p` of stream `name` (internal: tests only). */
function replicaOf(node: PlexusNode, name: string, p: number): PartitionReplica | undefined {
  const hosted = (node as unknown as { streamService?: { hosted: Map<string, HostedLike> } }).streamService
    ?.hosted
  return [...(hosted?.values() ?? [])].find((h) => h.meta.name === name && h.partition === p)?.replica
}
interface HostedLike {
  meta: { name: string }
  partition: number
  replica: PartitionReplica
}

it('purges one key: consumers, get and last skip it; before bounds it; a restarted replica hides it', async () => {
  const root = await mkdtemp(join(tmpdir(), 'plexus-purge-key-'))
  roots.push(root)
  const { members, outside, key } = await startStreamCluster(root, { keyless: true })
  const keyless = outside[0]!
  const m0 = members[0]!
  await m0.streams.create('kp', { cluster: 'db', subject: 'kp.>', replicas: 3, partitions: 2 })
  const pa = keyHash(new TextEncoder().encode('a')) % 2
  const pb = keyHash(new TextEncoder().encode('b')) % 2
  // 30 messages of keys a, b, c, then 3 more of a: the tail of a's partition is purged below.
  const sent: Array<{ key: string; value: string; partition: number; offset: number }> = []
  const keys = [...Array.from({ length: 30 }, (_, i) => ['a', 'b', 'c'][i % 3]!), 'a', 'a', 'a']
  for (const [i, k] of keys.entries()) {
    const ack = (await m0.publish('kp.x', `${k}${i}`, { ack: 'all', key: k }))!
    sent.push({ key: k, value: `${k}${i}`, partition: ack.partition, offset: ack.offset })
  }

  await expect(m0.streams.purge('kp', { key: '' })).rejects.toMatchObject({
    name: 'InvalidArgumentError',
    message: expect.stringMatching(/^key must be 1-1024 bytes/),
  })
  await expect(m0.streams.purge('kp', { key: 5 as never })).rejects.toMatchObject({
    name: 'InvalidArgumentError',
    message: expect.stringMatching(/^key must be a string or a Uint8Array/),
  })
  await expect(m0.streams.purge('kp', { key: 'x'.repeat(1025) })).rejects.toMatchObject({
    name: 'InvalidArgumentError',
    message: expect.stringMatching(/^key must be 1-1024 bytes, got 1025/),
  })
  await expect(keyless.streams.purge('kp', { key: 'a' }, T)).rejects.toMatchObject({
    name: 'UnauthorizedError',
  })

  // b below its 5th message's offset: the first four b messages go, the rest stay.
  const bs = sent.filter((s) => s.key === 'b')
  const bCut = bs[4]!.offset
  expect(await keyless.streams.purge('kp', { key: 'b', before: bCut }, { clusterKey: key })).toEqual([
    { partition: pb, firstOffset: 0 },
  ])

  // Member 2 misses the purge of a: stopped now, restarted after it.
  const network = m0.status().network
  const m2 = members[2]!.id
  await members[2]!.stop()
  await waitFor(
    async () =>
      (await m0.streams.info('kp', T)).partitions.every((p) => p.leader !== null && p.leader !== m2),
    15_000,
    'leaders other than the stopped member',
  )
  expect(await m0.streams.purge('kp', { key: 'a' })).toEqual([{ partition: pa, firstOffset: 0 }])

  const gone = (s: (typeof sent)[number]) => s.key === 'a' || (s.key === 'b' && s.offset < bCut)
  const visible = sent.filter((s) => !gone(s))
  const c = keyless.consume('kp', { from: 'earliest' })
  const it = c[Symbol.asyncIterator]()
  const got = await take(it, visible.length)
  expect(got.map((m) => text(m.data)).sort()).toEqual(visible.map((s) => s.value).sort())
  // A purged message would arrive before this one: the next message is the sentinel.
  await m0.publish('kp.x', 'sentinel', { ack: 'all', key: 'c' })
  expect(text((await take(it, 1))[0]!.data)).toBe('sentinel')
  c.close()

  const anA = sent.find((s) => s.key === 'a')!
  await expect(keyless.streams.get('kp', { partition: pa, offset: anA.offset }, T)).rejects.toMatchObject({
    name: 'MessageNotFoundError',
  })
  await expect(keyless.streams.last('kp', { key: 'a' }, T)).rejects.toMatchObject({
    name: 'MessageNotFoundError',
  })
  expect(text((await keyless.streams.last('kp', { key: 'b' }, T)).data)).toBe(bs.at(-1)!.value)
  await expect(keyless.streams.get('kp', { partition: pb, offset: bs[0]!.offset }, T)).rejects.toMatchObject({
    name: 'MessageNotFoundError',
  })
  expect(text((await keyless.streams.get('kp', { partition: pb, offset: bCut }, T)).data)).toBe(bs[4]!.value)

  // A durable consumer passes the purged tail of a's partition: nothing left pending.
  const d = keyless.consume('kp', { durable: 'd', from: 'earliest' })
  const dit = d[Symbol.asyncIterator]()
  for (const m of await take(dit, visible.length + 1)) {
    expect(gone({ key: text(m.key), value: '', partition: m.partition, offset: m.offset })).toBe(false)
    await m.ack()
  }
  await waitFor(
    async () => (await keyless.streams.consumerInfo('kp', 'd', T)).partitions.every((p) => p.pending === 0),
    10_000,
    'durable consumer past the purged tail',
  )
  d.close()

  // Later messages of the key are seen again.
  const late = (await m0.publish('kp.x', 'a-late', { ack: 'all', key: 'a' }))!
  expect(text((await keyless.streams.last('kp', { key: 'a' }, T)).data)).toBe('a-late')
  expect(text((await keyless.streams.get('kp', { partition: pa, offset: late.offset }, T)).data)).toBe(
    'a-late',
  )

  // The restarted replica applies the purge it missed and hides both in its own reads.
  const back = await startNode({ network, dataDir: join(root, 'm2') })
  await back.join('db', { key })
  await waitForMembers(back, 'db', 3, 10_000)
  const end = late.offset + 1
  await waitFor(() => (replicaOf(back, 'kp', pa)?.latest() ?? -1) + 1 >= end, 15_000, 'm2 caught up')
  const r = replicaOf(back, 'kp', pa)!
  const own = await r.read(0, { maxBytes: 1 << 20 })
  const pc = keyHash(new TextEncoder().encode('c')) % 2
  const expected = visible.filter((s) => s.partition === pa).map((s) => s.value)
  if (pc === pa) expected.push('sentinel')
  expect(own.filter((m) => text(m.key) !== 'a').map((m) => text(m.value))).toEqual(expected)
  expect(own.filter((m) => text(m.key) === 'a').map((m) => text(m.value))).toEqual(['a-late'])
  expect((await r.last(new TextEncoder().encode('a'))).message?.offset).toBe(late.offset)
  // Partition pb got no entry after the purge of b: the restarted replica applies it once it
  // hears the leader's commit index, so wait for its reads to show it.
  const bKept = bs.filter((s) => s.offset >= bCut).map((s) => s.offset)
  const ownB = async () =>
    (await (replicaOf(back, 'kp', pb)?.read(0, { maxBytes: 1 << 20 }) ?? Promise.resolve([])))
      .filter((m) => text(m.key) === 'b')
      .map((m) => m.offset)
  await waitFor(
    async () => JSON.stringify(await ownB()) === JSON.stringify(bKept),
    15_000,
    'm2 hides the purged b messages',
  )
  await back.stop()
}, 60_000)
