/**
 * The metadata group of a cluster forming over three real overlay nodes: one member
 * bootstraps, the others find the running group and are added one at a time, and a create
 * proposed on the leader reaches every member's catalog.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { nodeInternals } from '../../src/node.js'
import { MetaGroup } from '../../src/streams/meta/meta-group.js'
import { encodeCommand, placeStream, StreamCatalog } from '../../src/streams/partition/index.js'
import { startJoinedNodes, waitFor } from '../helpers/nodes.js'

const groups: MetaGroup[] = []
const dirs: string[] = []
afterEach(async () => {
  for (const g of groups.splice(0)) await g.stop().catch(() => {})
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

describe('MetaGroup over the overlay', () => {
  it('forms one group with all three members as voters and replicates a create', async () => {
    const root = await mkdtemp(join(tmpdir(), 'plexus-meta-group-'))
    dirs.push(root)
    const nodes = await startJoinedNodes(3)
    const errors: unknown[] = []
    const members = nodes.map((n) => {
      const catalog = new StreamCatalog()
      const g = new MetaGroup({
        host: nodeInternals(n),
        id: n.id,
        cluster: 'db',
        dir: join(root, n.id),
        catalog,
        driver: { tickMs: 20, electionTick: 10, onError: (e) => errors.push(e) },
      })
      groups.push(g)
      return { g, catalog }
    })
    await Promise.all(members.map((m) => m.g.start()))
    const ids = nodes.map((n) => n.id).sort()
    await waitFor(
      () =>
        members.every((m) => [...m.g.voters].sort().join() === ids.join()) &&
        members.filter((m) => m.g.role === 'leader').length === 1,
      10_000,
      'one group of three voters with one leader',
    )
    const leaders = members.filter((m) => m.g.role === 'leader')
    expect(leaders).toHaveLength(1)
    const leader = leaders[0]!
    for (const m of members) {
      expect([...m.g.voters].sort()).toEqual(ids)
      expect(m.g.leader).toBe(leader.g.leader)
    }

    const cmd = encodeCommand({
      type: 'create',
      requestId: 'req-1',
      name: 'orders',
      subject: 'orders.>',
      partitions: 2,
      replicas: 3,
      retention: {},
      compact: false,
      duplicateWindow: 120_000,
      placement: placeStream(ids, new Map(), 2, 3, 1),
    })
    const follower = members.find((m) => m !== leader)!
    await expect(follower.g.propose(cmd)).rejects.toMatchObject({ name: 'NotLeaderError' })
    const { index } = await leader.g.propose(cmd)
    expect(leader.catalog.resultAt(index)).toMatchObject({ ok: true, op: 'created' })
    await waitFor(
      () => members.every((m) => m.catalog.get('orders') !== undefined),
      5000,
      'applied everywhere',
    )
    for (const m of members) expect(m.catalog.get('orders')).toEqual(leader.catalog.get('orders'))
    expect(errors).toEqual([])
  }, 20_000)
})
