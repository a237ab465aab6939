/**
 * Idempotent publish: a message id is stored once within the stream's duplicate window,
 * across retries, a leader change and a restart of every replica.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { generateKey, type NodeOptions, type PlexusNode } from '../../src/index.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from '../helpers/nodes.js'

const dirs: string[] = []
const mine: PlexusNode[] = []
afterEach(async () => {
  await Promise.all(mine.splice(0).map((n) => n.stop()))
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function readAll(node: PlexusNode, stream: string, n: number): Promise<string[]> {
  const got: string[] = []
  if (n === 0) return got
  for await (const m of node.consume(stream, { from: 'earliest' })) {
    got.push(new TextDecoder().decode(m.data))
    if (got.length === n) break
  }
  return got
}

describe('publish with msgId', () => {
  it('stores a message once across retries, a leader change and a restart of every replica', async () => {
    const network = uniqueNetwork()
    const root = await mkdtemp(join(tmpdir(), 'plexus-msgid-'))
    dirs.push(root)
    const key = generateKey()
    const opts = (i: number): NodeOptions => ({ network, dataDir: join(root, `m${i}`) })
    const start = async (i: number) => {
      const n = await startNode(opts(i))
      mine.push(n)
      await n.join('db', { key })
      return n
    }
    let members = await Promise.all([0, 1, 2].map(start))
    const pub = await startNode({ network, credentials: { clusterKeys: { db: key } } })
    mine.push(pub)
    for (const n of [...members, pub]) await waitForMembers(n, 'db', 3, 10_000)
    await pub.streams.create('pay', { cluster: 'db', subject: 'pay.>', replicas: 3, partitions: 2 })

    const a = await pub.publish('pay.x', 'first', { ack: 'all', msgId: 'p-1' })
    const again = await pub.publish('pay.x', 'first (retry)', { ack: 'all', msgId: 'p-1' })
    expect(again).toEqual({ ...a, duplicate: true })
    const b = await pub.publish('pay.x', 'second', { ack: 'leader', msgId: 'p-2' })
    expect(b!.duplicate).toBeUndefined()
    await Promise.all([
      pub.publish('pay.x', 'third', { ack: 'all', msgId: 'p-3' }),
      pub.publish('pay.x', 'third (concurrent retry)', { ack: 'all', msgId: 'p-3' }),
    ])

    // leader change: the retry reaches the new leader, which knows the id from the log
    const part = a!.partition
    const leader = (await pub.streams.info('pay')).partitions[part]!.leader
    const li = members.findIndex((m) => m.id === leader)
    await members[li]!.stop()
    const afterFailover = await pub.publish('pay.x', 'first (after failover)', {
      ack: 'all',
      msgId: 'p-1',
      timeout: 15_000,
    })
    expect(afterFailover).toEqual({ ...a, duplicate: true })

    // restart every replica: the window is rebuilt from the partition logs
    await Promise.all(members.map((m) => m.stop()))
    members = await Promise.all([0, 1, 2].map(start))
    await waitFor(() => pub.streams.list().length === 1, 10_000)
    const afterRestart = await pub.publish('pay.x', 'second (after restart)', {
      ack: 'all',
      msgId: 'p-2',
      timeout: 20_000,
    })
    expect(afterRestart).toMatchObject({ offset: b!.offset, partition: b!.partition, duplicate: true })
    const info = await pub.streams.info('pay')
    const total = info.partitions.reduce((n, p) => n + p.nextOffset, 0)
    expect(total).toBe(3)
    expect((await readAll(pub, 'pay', 3)).sort()).toEqual(['first', 'second', 'third'])
  }, 90_000)

  it('a stream option sets the window; ids past it are stored again', async () => {
    const network = uniqueNetwork()
    const root = await mkdtemp(join(tmpdir(), 'plexus-msgid-'))
    dirs.push(root)
    const key = generateKey()
    const m = await startNode({ network, dataDir: join(root, 'm0') })
    mine.push(m)
    await m.join('db', { key })
    const info = await m.streams.create('short', {
      cluster: 'db',
      subject: 'short.>',
      replicas: 1,
      duplicateWindow: 200,
    })
    expect(info.duplicateWindow).toBe(200)
    const x = await m.publish('short.a', 'one', { ack: 'all', msgId: 'same' })
    expect((await m.publish('short.a', 'two', { ack: 'all', msgId: 'same' }))!.duplicate).toBe(true)
    await new Promise((r) => setTimeout(r, 300))
    const z = await m.publish('short.a', 'three', { ack: 'all', msgId: 'same' })
    expect(z!.duplicate).toBeUndefined()
    expect(z!.offset).toBe(x!.offset + 1)
    await expect(m.publish('short.a', 'x', { msgId: '' })).rejects.toThrow(/msgId/)
  }, 60_000)
})
