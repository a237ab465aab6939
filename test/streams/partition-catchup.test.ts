/**
 * Raft log compaction and snapshot catch-up on real nodes over loopback: the raft log of a
 * partition stays a window of `streams.raftLogBytes`, and a replica that needs entries that
 * were compacted (a replacement member, a member back from a long absence) copies the
 * partition log from the other replicas over the `s.copy` call.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { PlexusNode } from '../../src/index.js'
import { startStreamCluster, uniqueNetwork, waitFor } from '../helpers/nodes.js'

const dirs: string[] = []
const mine: PlexusNode[] = []
afterEach(async () => {
  await Promise.all(mine.splice(0).map((n) => n.stop()))
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

const RAFT_LOG_BYTES = 64 * 1024

/** Publishes `n` 1 KB messages with ack 'all', 32 in flight, from `node`. */
async function publishMany(node: PlexusNode, topic: string, n: number, tag: string): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < n) {
      const i = next++
      const data = new Uint8Array(1024).fill(65 + (i % 26))
      data.set(new TextEncoder().encode(`${tag}${i}:`))
      await node.publish(topic, data, { ack: 'all' })
    }
  }
  await Promise.all(Array.from({ length: 32 }, worker))
}

function hosted(node: PlexusNode, stream: string) {
  return node.status().streams.find((s) => s.name === stream)?.hosted[0]
}

describe('partition snapshot catch-up on real nodes', () => {
  it('a replacement replica for a dead member copies the compacted partition from the others', async () => {
    const _network = uniqueNetwork()
    const root = await mkdtemp(join(tmpdir(), 'plexus-catchup-'))
    dirs.push(root)
    const {
      members,
      outside: [outside],
    } = await startStreamCluster(root, {
      members: 4,
      // Frames of 256 KiB + overhead: the ~630 KB copy must come in several replies (a copy
      // asking for more than one frame holds resets the link and never finishes).
      options: {
        maxMessageSize: 256 * 1024,
        streams: { replaceReplicaAfter: 1000, raftLogBytes: RAFT_LOG_BYTES },
      },
    })
    mine.push(...members, outside!)
    const info = await outside.streams.create('big', { cluster: 'db', subject: 'big.>', replicas: 3 })
    const placed = info.partitions[0]!.replicas
    await publishMany(outside, 'big.x', 600, 'a')
    const replicas = members.filter((m) => placed.includes(m.id))
    // Every replica compacted its raft log: it holds a window, not the ~630 KB published.
    await waitFor(
      () => replicas.every((m) => (hosted(m, 'big')?.snapshotIndex ?? 0) > 0),
      10_000,
      'raft logs compacted',
    )
    for (const m of replicas) expect(hosted(m, 'big')!.raftLogBytes).toBeLessThan(600 * 1024)

    const leader = (await outside.streams.info('big')).partitions[0]!.leader
    const victim = replicas.find((m) => m.id !== leader)!
    const spare = members.find((m) => !placed.includes(m.id))!
    await victim.stop()
    await waitFor(
      async () => {
        const p = (await outside.streams.info('big', { timeout: 3000 })).partitions[0]!
        return p.replicas.includes(spare.id) && p.inSync.length === 3 && p.inSync.includes(spare.id)
      },
      30_000,
      'the spare replacing the dead replica, in sync',
    )
    // The spare could only have got the first messages by copying: their raft entries are gone.
    await waitFor(() => hosted(spare, 'big')?.nextOffset === 600, 10_000, 'the spare holds all 600')
    expect(hosted(spare, 'big')!.snapshotIndex).toBeGreaterThan(0)
    await publishMany(outside, 'big.x', 50, 'b')
    await waitFor(() => hosted(spare, 'big')?.nextOffset === 650, 10_000, 'the spare keeps replicating')
    // Reading from the start sees every message once, in order.
    let n = 0
    for await (const m of outside.consume('big', { from: 'earliest' })) {
      expect(m.offset).toBe(n)
      expect(m.data.length).toBe(1024)
      if (++n === 650) break
    }
  }, 90_000)
})
