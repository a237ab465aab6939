/**
 * A stream partition replicated by Raft across three real overlay nodes: the raft
 * messages travel as frames on the nodes' links (TCP loopback, noise, yamux), only
 * between the group's voters.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { PlexusNode } from '../../src/index.js'
import { nodeInternals } from '../../src/node.js'
import { PartitionReplica } from '../../src/streams/partition/index.js'
import { startJoinedNodes, startNodes, waitFor } from '../helpers/nodes.js'
import { mulberry32, testSeed } from '../helpers/rng.js'

const dirs: string[] = []
const replicas: PartitionReplica[] = []
afterEach(async () => {
  for (const r of replicas.splice(0)) await r.stop().catch(() => {})
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function replicaOn(
  node: PlexusNode,
  voters: string[],
  root: string,
  seed: number,
): Promise<PartitionReplica> {
  const { raft } = nodeInternals(node)
  const group = 'orders/0'
  const r: PartitionReplica = new PartitionReplica({
    id: node.id,
    dir: join(root, node.id),
    voters,
    send: (to, bytes) => raft.send(group, to, bytes),
    driver: { tickMs: 20, electionTick: 10, rand: mulberry32(seed + node.id.charCodeAt(10)) },
  })
  raft.register(
    group,
    (from, bytes) => r.receive(from, bytes),
    (peer) => voters.includes(peer),
  )
  await r.start()
  replicas.push(r)
  return r
}

describe('partition replicated over the overlay', () => {
  it('commits with ack all on a majority of real nodes and survives the leader node stopping', async () => {
    const seed = testSeed()
    const root = await mkdtemp(join(tmpdir(), 'plexus-overlay-'))
    dirs.push(root)
    const nodes = await startJoinedNodes(3)
    const voters = nodes.map((n) => n.id)
    const reps = await Promise.all(nodes.map((n) => replicaOn(n, voters, root, seed)))
    await waitFor(() => reps.some((r) => r.role === 'leader'), 10_000, 'a leader')
    const leader = reps.find((r) => r.role === 'leader')!
    const enc = new TextEncoder()
    const acks = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        leader.publish([{ key: enc.encode(`k${i % 7}`), value: enc.encode(`m${i}`) }], { ack: 'all' }),
      ),
    )
    expect(acks.map((a) => a.firstOffset).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 300 }, (_, i) => i),
    )
    await waitFor(() => reps.every((r) => r.latest() === 299), 5000, 'all replicas applied')
    const views = await Promise.all(
      reps.map(async (r) =>
        (await r.read(0, { maxRecords: 1000 })).map((m) => new TextDecoder().decode(m.value)),
      ),
    )
    expect(views[1]).toEqual(views[0])
    expect(views[2]).toEqual(views[0])

    // Stop the leader's node: the other two elect a new leader over their links and go on.
    const li = reps.indexOf(leader)
    await leader.stop()
    await nodes[li]!.stop()
    const rest = reps.filter((_, i) => i !== li)
    await waitFor(() => rest.some((r) => r.role === 'leader'), 10_000, 'a new leader')
    const next = rest.find((r) => r.role === 'leader')!
    const more = await next.publish([{ value: enc.encode('after') }], { ack: 'all' })
    expect(more.firstOffset).toBe(300)
    expect(nodeInternals(nodes[(li + 1) % 3]!).members('db').length).toBeGreaterThanOrEqual(2)
  }, 40_000)

  it('drops raft frames from peers that are not voters of the group', async () => {
    const [a, b] = await startNodes(2)
    const got: string[] = []
    nodeInternals(a).raft.register(
      'g',
      (from) => void got.push(from),
      () => false,
    )
    await waitFor(() => a.status().peers.length === 1)
    nodeInternals(b).raft.send('g', a.id, new Uint8Array([1, 2, 3]))
    await waitFor(() => (a.status().counters['raft.refused'] ?? 0) === 1)
    expect(got).toEqual([])
  })
})
